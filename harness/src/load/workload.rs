//! Workload models: the arrival process of requests and the use of connections.

use std::fmt;

use serde::Serialize;

/// When each worker sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arrival {
    /// Open loop with evenly spaced sends at `rate_per_s`, as wrk2 sends them.
    #[default]
    Constant,
    /// Open loop whose sends form a Poisson process of rate `rate_per_s`, so the gaps
    /// between sends are exponentially distributed with mean `1 / rate_per_s`.
    ///
    /// Each worker draws its own gaps at `rate_per_s / connections` from a generator
    /// seeded with `seed` and its index, and the sum of independent Poisson processes is
    /// again one. The same seed, rate and connection count give the same send times in
    /// every run of the same deploybench build.
    Poisson { seed: u64 },
    /// Closed loop: each worker sends its next request as soon as the previous one
    /// finished, with no pacing, so the service sets the rate. `rate_per_s` is ignored,
    /// and the corrected and uncorrected latencies are the same measurement.
    Closed,
}

impl Arrival {
    /// Name used on the command line and in summaries: `open`, `poisson` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Constant => "open",
            Self::Poisson { .. } => "poisson",
            Self::Closed => "closed",
        }
    }

    /// Returns whether sends follow a schedule of intended times, so that a target rate
    /// exists.
    pub fn is_open_loop(self) -> bool {
        !matches!(self, Self::Closed)
    }
}

/// Mapping of requests onto TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionReuse {
    /// Each worker opens one keep-alive connection before the run and sends all its
    /// requests over it. It reconnects only after a failed request or a response with
    /// `Connection: close`.
    #[default]
    KeepAlive,
    /// Each request opens a new TCP connection, sends `Connection: close` and closes the
    /// connection after the response. Both latencies then include the connect, which
    /// [`LoadReport::connect_time`](super::LoadReport::connect_time) also shows alone.
    PerRequest,
}

impl ConnectionReuse {
    /// Name used in summaries: `keep_alive` or `per_request`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepAlive => "keep_alive",
            Self::PerRequest => "per_request",
        }
    }
}

/// The workload model of a run: arrival process and connection use.
///
/// The default, a constant rate over keep-alive connections, is the wrk2 model that
/// [`run_open_loop`](super::run_open_loop) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Workload {
    pub arrival: Arrival,
    pub connection_reuse: ConnectionReuse,
}

impl fmt::Display for Workload {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arrival {
            Arrival::Constant => formatter.write_str("open loop at a constant rate")?,
            Arrival::Poisson { seed } => {
                write!(formatter, "open loop with Poisson arrivals (seed {seed})")?;
            }
            Arrival::Closed => formatter.write_str("closed loop")?,
        }
        match self.connection_reuse {
            ConnectionReuse::KeepAlive => formatter.write_str(", keep-alive connections"),
            ConnectionReuse::PerRequest => formatter.write_str(", a new connection per request"),
        }
    }
}
