//! The description of a load run and its validation.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::http::uri::PathAndQuery;
use hyper::Uri;
use tokio::time::Instant;

use super::error::LoadError;
use super::schedule::Schedule;
use super::workload::{Arrival, Workload};

/// Maximum number of sends in a run, warm-up included.
const MAX_SENDS: f64 = (1u64 << 52) as f64;

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Address of the instance under load, a 127.0.0.1 address in deploybench.
    pub target: SocketAddr,
    /// Path and query of every `GET` request, such as `/work?n=1000`.
    pub path: String,
    /// Target request rate summed over all connections, in requests per second. A
    /// closed loop ignores it.
    pub rate_per_s: f64,
    /// Length of the measured window.
    pub duration: Duration,
    /// Time spent sending at the same rate before the measured window, not recorded.
    pub warmup: Duration,
    /// Number of workers, each with one connection at a time.
    pub connections: usize,
    /// Limit on one TCP connect, and on one request from send to last response byte.
    pub request_timeout: Duration,
}

impl LoadSpec {
    /// Checks every field for the default workload, a constant rate over keep-alive
    /// connections, and returns the first invalid one as [`LoadError::InvalidSpec`].
    pub fn validate(&self) -> Result<(), LoadError> {
        self.validate_for(Workload::default())
    }

    /// Checks every field that `workload` uses and returns the first invalid one as
    /// [`LoadError::InvalidSpec`]. A closed loop does not check `rate_per_s`.
    pub fn validate_for(&self, workload: Workload) -> Result<(), LoadError> {
        self.parse_uri()?;
        if self.connections == 0 {
            return Err(invalid("connections", 0, "must be at least 1"));
        }
        if self.duration.is_zero() {
            return Err(invalid("duration", "0s", "must be above 0"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "0s", "must be above 0"));
        }

        let total = self.warmup.checked_add(self.duration);
        let fits = total
            .and_then(|total| total.checked_add(self.request_timeout))
            .and_then(|total| Instant::now().checked_add(total))
            .is_some();
        if !fits {
            return Err(invalid(
                "duration",
                format!("{:?}", self.duration),
                "is too long to schedule, because warmup, duration and request_timeout together overflow the clock",
            ));
        }

        if workload.arrival.is_open_loop() {
            self.validate_rate(workload.arrival)?;
        }
        Ok(())
    }

    fn validate_rate(&self, arrival: Arrival) -> Result<(), LoadError> {
        if !self.rate_per_s.is_finite() || self.rate_per_s <= 0.0 {
            return Err(invalid(
                "rate_per_s",
                self.rate_per_s,
                "must be a finite number of requests per second above 0",
            ));
        }

        // Send numbers and times are computed in f64, which represents integers exactly
        // only up to 2^53. 2^52 sends keeps a factor of 2 in reserve for rounding.
        let total_sends = (self.warmup + self.duration).as_secs_f64() * self.rate_per_s;
        if total_sends > MAX_SENDS {
            return Err(invalid(
                "rate_per_s",
                self.rate_per_s,
                format!("schedules {total_sends:e} sends over warmup and duration, more than the maximum of 2^52"),
            ));
        }

        // Poisson arrivals are random, so only their expected number can be checked
        // without drawing them all.
        let expected = match arrival {
            Arrival::Poisson { .. } => self.duration.as_secs_f64() * self.rate_per_s,
            _ => self.schedule(Instant::now(), arrival).measured_requests() as f64,
        };
        if expected < 1.0 {
            return Err(invalid(
                "rate_per_s",
                self.rate_per_s,
                format!(
                    "schedules {expected} requests in the {:?} measured window, fewer than 1, so raise the rate or the duration",
                    self.duration
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn parse_uri(&self) -> Result<Uri, LoadError> {
        const REASON: &str = "must be a path and query starting with '/', such as \"/work?n=1000\"";
        if !self.path.starts_with('/') {
            return Err(invalid("path", format!("{:?}", self.path), REASON));
        }
        match self.path.parse::<PathAndQuery>() {
            Ok(path) => Ok(Uri::from(path)),
            Err(error) => Err(invalid(
                "path",
                format!("{:?}", self.path),
                format!("{REASON} ({error})"),
            )),
        }
    }

    pub(super) fn schedule(&self, start: Instant, arrival: Arrival) -> Schedule {
        Schedule {
            start,
            rate_per_s: self.rate_per_s,
            connections: self.connections,
            warmup: self.warmup,
            end: self.warmup + self.duration,
            poisson_seed: match arrival {
                Arrival::Poisson { seed } => Some(seed),
                Arrival::Constant | Arrival::Closed => None,
            },
        }
    }
}

fn invalid(field: &'static str, value: impl ToString, reason: impl ToString) -> LoadError {
    LoadError::InvalidSpec {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}
