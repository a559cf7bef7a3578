//! The merged result of a load run.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hyper::StatusCode;

use super::interval::IntervalStats;
use super::schedule::Schedule;
use super::spec::LoadSpec;
use super::worker::WorkerStats;
use super::workload::Workload;

/// Significant decimal digits kept by every latency histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Kind of a failed request, the key of [`LoadReport::errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connect failed or timed out, so the request was not sent.
    Connect,
    /// No complete response arrived within `request_timeout` of the send.
    Timeout,
    /// The connection failed while the request was sent or its response read.
    Io,
    /// A complete response with a 5xx status.
    Status5xx,
    /// A complete response with a 4xx status.
    Status4xx,
    /// A complete response with a 1xx or 3xx status.
    StatusOther,
}

impl ErrorKind {
    /// Name used as the key in [`LoadReport::errors`], such as `status_5xx`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Io => "io",
            Self::Status5xx => "status_5xx",
            Self::Status4xx => "status_4xx",
            Self::StatusOther => "status_other",
        }
    }

    /// Classifies a response status, or returns `None` for a 2xx success.
    pub fn from_status(status: StatusCode) -> Option<Self> {
        if status.is_success() {
            None
        } else if status.is_server_error() {
            Some(Self::Status5xx)
        } else if status.is_client_error() {
            Some(Self::Status4xx)
        } else {
            Some(Self::StatusOther)
        }
    }
}

/// Samples and counts of one load run.
///
/// All fields cover only requests whose intended send time lies in the measured
/// window, except `connect_time` and the generator's CPU figures. A request intended
/// near the end of the window may complete after it and still counts. In a closed loop
/// a request's intended send time is the moment its worker was ready to send it.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Workload model of the run.
    pub workload: Workload,
    /// Requested rate, in requests per second, or 0.0 for a closed loop, which has none.
    pub target_rps: f64,
    /// `scheduled` divided by the length of the measured window, in requests per second.
    /// Equal to `target_rps` up to rounding at a constant rate, it differs by chance with
    /// Poisson arrivals. It is 0.0 for a closed loop.
    pub scheduled_rps: f64,
    /// `completed` divided by `measured`, in responses per second.
    pub achieved_rps: f64,
    /// Requests intended in the measured window: `sent + unsent` plus the requests lost
    /// to a failed connect. In a closed loop it equals `sent` plus those lost requests.
    pub scheduled: u64,
    /// Requests that left. Requests lost to a failed connect are not sent.
    pub sent: u64,
    /// Requests that received a complete response, whatever its status.
    pub completed: u64,
    /// Requests never sent because their worker fell behind and the window ended first.
    pub unsent: u64,
    /// Failed requests by [`ErrorKind::as_str`]. Only kinds that occurred are present.
    /// Non-2xx responses count here and in `completed`.
    pub errors: BTreeMap<String, u64>,
    /// Microseconds from each completed request's intended send time to its last
    /// response byte, so the time a request waited to leave counts.
    pub corrected: Histogram<u64>,
    /// Microseconds from each completed request's actual send to its last response
    /// byte, the service time alone.
    pub uncorrected: Histogram<u64>,
    /// Sends that left more than 1 ms after their intended time, for any reason.
    pub late_sends: u64,
    /// Sends that left more than [`GENERATOR_LAG_LIMIT`](super::validity::GENERATOR_LAG_LIMIT)
    /// (10 ms) after their intended time although their worker was idle before it. The
    /// delay was then the generator's own, a late timer or a busy CPU, and not a slow
    /// response still holding the connection.
    pub generator_late_sends: u64,
    /// Microseconds from the intended send time until the worker woke up, for each
    /// send whose worker was idle before its intended time: the generator's own delay.
    pub generator_lag: Histogram<u64>,
    /// Maximum delay of a send after its intended time.
    pub max_send_lag: Duration,
    /// Real length of the measured window, from its start until the later of its end
    /// and the end of the last worker.
    pub measured: Duration,
    /// Microseconds per successful TCP connect, over the whole run including the
    /// initial connects and the warm-up.
    pub connect_time: Histogram<u64>,
    /// Successful connects made for requests in the measured window: one per request
    /// with [`ConnectionReuse::PerRequest`](super::ConnectionReuse::PerRequest), and the
    /// reconnects with keep-alive.
    pub connects: u64,
    /// Keep-alive connections opened in the measured window to replace a closed or
    /// failed one.
    pub reconnects: u64,
    /// Counts and latencies of each second of the measured window, in order, from
    /// second 0 to the last second in which a request of the window left or finished.
    pub per_second: Vec<IntervalStats>,
    /// Wall-clock time at the start of the measured window, the time base of
    /// `per_second` in the interval log.
    pub window_start_time: SystemTime,
    /// Length of the whole run, from the first connect until the last worker finished.
    pub run_time: Duration,
    /// CPU time (user plus system) that the generator process used over `run_time`.
    pub generator_cpu: Duration,
    /// Number of CPUs the generator could use, see [`LoadReport::generator_cpu_share`].
    pub cpu_capacity: usize,
    /// Whether the run measured the instance rather than the generator's own limits.
    /// False exactly when `invalid_reasons` is not empty.
    pub valid: bool,
    /// Reasons for an invalid run, one sentence per failed check. See
    /// [`validity`](super::validity) for the checks.
    pub invalid_reasons: Vec<String>,
}

impl LoadReport {
    /// Returns the value at `quantile` (0.0 to 1.0, such as 0.99 for p99) of a
    /// microsecond histogram, in milliseconds, or 0.0 if the histogram is empty.
    ///
    /// The value is the highest one equivalent to the sample at that quantile, so it can
    /// exceed the sample by the histogram's precision of 3 significant digits.
    pub fn percentile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
        histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Total number of failed requests over all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Share of the available CPU time that the generator used: `generator_cpu`
    /// divided by `run_time × cpu_capacity`, from 0.0 to 1.0 give or take measurement
    /// noise.
    pub fn generator_cpu_share(&self) -> f64 {
        let available = self.run_time.as_secs_f64() * self.cpu_capacity as f64;
        if available > 0.0 {
            self.generator_cpu.as_secs_f64() / available
        } else {
            0.0
        }
    }

    /// Creates a report with no samples, for the given workload and target rate.
    pub(crate) fn empty(workload: Workload, target_rps: f64) -> Self {
        Self {
            workload,
            target_rps,
            scheduled_rps: 0.0,
            achieved_rps: 0.0,
            scheduled: 0,
            sent: 0,
            completed: 0,
            unsent: 0,
            errors: BTreeMap::new(),
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            late_sends: 0,
            generator_late_sends: 0,
            generator_lag: new_histogram(),
            max_send_lag: Duration::ZERO,
            measured: Duration::ZERO,
            connect_time: new_histogram(),
            connects: 0,
            reconnects: 0,
            per_second: Vec::new(),
            window_start_time: SystemTime::UNIX_EPOCH,
            run_time: Duration::ZERO,
            generator_cpu: Duration::ZERO,
            cpu_capacity: 1,
            valid: true,
            invalid_reasons: Vec::new(),
        }
    }

    /// Merges the samples of all workers and the initial connects. The caller fills in
    /// the timing, CPU and validity fields.
    pub(super) fn from_workers(
        spec: &LoadSpec,
        workload: Workload,
        schedule: &Schedule,
        workers: Vec<WorkerStats>,
        initial_connect_time: Histogram<u64>,
    ) -> Self {
        let target_rps = if workload.arrival.is_open_loop() {
            spec.rate_per_s
        } else {
            0.0
        };
        let mut report = Self::empty(workload, target_rps);
        report.connect_time = initial_connect_time;
        let mut finished = schedule.deadline();

        for worker in workers {
            report.scheduled += worker.scheduled;
            report.sent += worker.sent;
            report.completed += worker.completed;
            report.unsent += worker.unsent;
            report.late_sends += worker.late_sends;
            report.generator_late_sends += worker.generator_late_sends;
            report.connects += worker.connects;
            report.reconnects += worker.reconnects;
            report.max_send_lag = report.max_send_lag.max(worker.max_send_lag);
            for (kind, count) in worker.errors {
                *report.errors.entry(kind.as_str().to_owned()).or_insert(0) += count;
            }
            add_histogram(&mut report.corrected, &worker.corrected);
            add_histogram(&mut report.uncorrected, &worker.uncorrected);
            add_histogram(&mut report.connect_time, &worker.connect_time);
            add_histogram(&mut report.generator_lag, &worker.generator_lag);
            finished = finished.max(worker.finished);
        }

        report.measured = finished - schedule.window_start();
        report.achieved_rps = report.completed as f64 / report.measured.as_secs_f64();
        if workload.arrival.is_open_loop() {
            report.scheduled_rps = report.scheduled as f64 / spec.duration.as_secs_f64();
        }
        report
    }
}

/// Creates an empty auto-resizing histogram with 3 significant digits.
pub(super) fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is within the supported 0..=5")
}

/// Records `duration` in microseconds.
pub(super) fn record_duration(histogram: &mut Histogram<u64>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    // `record` grows an auto-resizing histogram, and fails only above `i64::MAX / 2`
    // (hdrhistogram 7.6, `Histogram::new`).
    // `saturating_record` never grows it, so it is the fallback for that case alone.
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

pub(super) fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from)
        .expect("an auto-resizing histogram accepts every value of another histogram");
}
