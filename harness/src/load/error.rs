//! Errors that stop a load run before it produces a report.

use std::net::SocketAddr;

/// Reason why [`run_open_loop`](super::run_open_loop) returned no report.
///
/// Failures of single requests during a run are no `LoadError`. They are counted by
/// kind in [`LoadReport::errors`](super::LoadReport::errors) instead.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A field of the [`LoadSpec`](super::LoadSpec) is out of range.
    #[error("cannot run load: invalid {field} {value}: {reason}")]
    InvalidSpec {
        /// Name of the field, such as `rate_per_s`.
        field: &'static str,
        /// The rejected value as written by `Debug` or `Display`.
        value: String,
        /// Description of a valid value.
        reason: String,
    },

    /// No connection to the target opened before the run, so no request could be sent.
    #[error(
        "cannot connect to {target}: {cause} (all {connections} connections failed), \
         so check that the instance is listening on that address"
    )]
    Unreachable {
        target: SocketAddr,
        connections: usize,
        /// Error of the first failed connect.
        cause: std::io::Error,
    },

    /// A worker task panicked or was cancelled, so its samples are lost.
    #[error("cannot collect the samples of load worker {index}: {cause}")]
    Worker {
        index: usize,
        cause: tokio::task::JoinError,
    },
}
