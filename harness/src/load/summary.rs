//! A summary of a load run for people (text in the style of wrk2 and oha) and for
//! programs (JSON).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::report::LoadReport;
use super::spec::LoadSpec;
use super::validity::GENERATOR_LAG_LIMIT;
use super::worker::LATE_THRESHOLD;
use super::workload::{Arrival, ConnectionReuse, Workload};

/// Percentiles of one latency histogram, in milliseconds.
///
/// Each value is the highest one equivalent to the sample at that percentile, so it can
/// exceed the sample by the histogram's precision of 3 significant digits. All fields
/// are 0.0 when `count` is 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    #[serde(rename = "p99.99")]
    pub p99_99: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of microseconds.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        let at = |quantile| LoadReport::percentile_ms(histogram, quantile);
        Self {
            count: histogram.len(),
            mean: if histogram.is_empty() {
                0.0
            } else {
                histogram.mean() / 1000.0
            },
            p50: at(0.5),
            p75: at(0.75),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            p99_99: at(0.9999),
            max: at(1.0),
        }
    }

    /// Rows of the latency table: label and value.
    fn rows(&self) -> [(&'static str, f64); 8] {
        [
            ("50.000%", self.p50),
            ("75.000%", self.p75),
            ("90.000%", self.p90),
            ("99.000%", self.p99),
            ("99.900%", self.p99_9),
            ("99.990%", self.p99_99),
            ("max", self.max),
            ("mean", self.mean),
        ]
    }
}

/// The figures of a load run that `deploybench load` prints and writes as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// URL loaded, as the user gave it.
    pub url: String,
    /// `open`, `poisson` or `closed`.
    pub mode: &'static str,
    pub workload: Workload,
    pub connections: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Real length of the measured window, see [`LoadReport::measured`].
    pub measured_s: f64,
    /// Requested rate, absent for a closed loop.
    pub target_rps: Option<f64>,
    /// Rate of the requests scheduled in the window, absent for a closed loop.
    pub scheduled_rps: Option<f64>,
    pub achieved_rps: f64,
    pub scheduled: u64,
    pub sent: u64,
    pub completed: u64,
    pub unsent: u64,
    /// Failed requests by kind, see [`ErrorKind`](super::ErrorKind).
    pub errors: BTreeMap<String, u64>,
    pub error_count: u64,
    /// Corrected latency: from each request's intended send time to its last byte.
    pub latency_ms: LatencySummary,
    /// Uncorrected latency: from each request's actual send to its last byte.
    pub uncorrected_latency_ms: LatencySummary,
    /// TCP connect time, over the whole run.
    pub connect_ms: LatencySummary,
    pub connects: u64,
    pub reconnects: u64,
    pub late_sends: u64,
    pub generator_late_sends: u64,
    /// The generator's own delay of sends, see [`LoadReport::generator_lag`].
    pub generator_lag_ms: LatencySummary,
    pub max_send_lag_ms: f64,
    pub generator_cpu_s: f64,
    /// `generator_cpu_s` divided by the run time and `cpu_capacity`.
    pub generator_cpu_share: f64,
    pub cpu_capacity: usize,
    pub valid: bool,
    pub invalid_reasons: Vec<String>,
}

impl LoadSummary {
    /// Collects the summary of `report`, a run of `spec` against `url`.
    pub fn new(url: &str, spec: &LoadSpec, report: &LoadReport) -> Self {
        let open_loop = report.workload.arrival.is_open_loop();
        Self {
            url: url.to_owned(),
            mode: report.workload.arrival.as_str(),
            workload: report.workload,
            connections: spec.connections,
            warmup_s: spec.warmup.as_secs_f64(),
            duration_s: spec.duration.as_secs_f64(),
            measured_s: report.measured.as_secs_f64(),
            target_rps: open_loop.then_some(report.target_rps),
            scheduled_rps: open_loop.then_some(report.scheduled_rps),
            achieved_rps: report.achieved_rps,
            scheduled: report.scheduled,
            sent: report.sent,
            completed: report.completed,
            unsent: report.unsent,
            errors: report.errors.clone(),
            error_count: report.error_count(),
            latency_ms: LatencySummary::from_histogram(&report.corrected),
            uncorrected_latency_ms: LatencySummary::from_histogram(&report.uncorrected),
            connect_ms: LatencySummary::from_histogram(&report.connect_time),
            connects: report.connects,
            reconnects: report.reconnects,
            late_sends: report.late_sends,
            generator_late_sends: report.generator_late_sends,
            generator_lag_ms: LatencySummary::from_histogram(&report.generator_lag),
            max_send_lag_ms: ms(report.max_send_lag),
            generator_cpu_s: report.generator_cpu.as_secs_f64(),
            generator_cpu_share: report.generator_cpu_share(),
            cpu_capacity: report.cpu_capacity,
            valid: report.valid,
            invalid_reasons: report.invalid_reasons.clone(),
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The text summary, laid out like the output of wrk2 and oha.
impl fmt::Display for LoadSummary {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "Running {:.1} s test @ {}", self.duration_s, self.url)?;
        writeln!(out, "  {}", self.workload)?;
        write!(
            out,
            "  {} connections, {:.1} s warm-up",
            self.connections, self.warmup_s
        )?;
        if let Some(target) = self.target_rps {
            write!(out, ", target {target:.2} req/s")?;
        }
        writeln!(out)?;

        writeln!(out)?;
        writeln!(out, "Summary:")?;
        writeln!(
            out,
            "  Requests:      {} completed, {} sent, {} unsent, {} scheduled",
            self.completed, self.sent, self.unsent, self.scheduled
        )?;
        writeln!(out, "  Duration:      {:.3} s measured", self.measured_s)?;
        match (self.target_rps, self.scheduled_rps) {
            (Some(target), Some(scheduled)) => writeln!(
                out,
                "  Rate:          {:.2} req/s achieved, target {target:.2} req/s, scheduled {scheduled:.2} req/s ({:.2}% of scheduled)",
                self.achieved_rps,
                if scheduled > 0.0 { self.achieved_rps * 100.0 / scheduled } else { 0.0 },
            )?,
            _ => writeln!(out, "  Rate:          {:.2} req/s achieved (closed loop, no target)", self.achieved_rps)?,
        }
        writeln!(out, "  Errors:        {}", self.error_count)?;

        writeln!(out)?;
        writeln!(out, "Latency distribution (ms):")?;
        writeln!(out, "  {:<10} {:>12} {:>12}", "percentile", "corrected", "uncorrected")?;
        let corrected = self.latency_ms.rows();
        let uncorrected = self.uncorrected_latency_ms.rows();
        for ((label, corrected), (_, uncorrected)) in corrected.iter().zip(uncorrected.iter()) {
            writeln!(out, "  {label:<10} {corrected:>12.3} {uncorrected:>12.3}")?;
        }
        if matches!(self.workload.arrival, Arrival::Closed) {
            writeln!(
                out,
                "  (a closed loop sends when ready, so both columns measure the same)"
            )?;
        }

        if !self.errors.is_empty() {
            writeln!(out)?;
            writeln!(out, "Errors by kind:")?;
            for (kind, count) in &self.errors {
                writeln!(out, "  {kind:<14} {count}")?;
            }
        }

        writeln!(out)?;
        writeln!(
            out,
            "Connect time (ms): {} connects, p50 {:.3}, p99 {:.3}, max {:.3}",
            self.connect_ms.count, self.connect_ms.p50, self.connect_ms.p99, self.connect_ms.max
        )?;
        match self.workload.connection_reuse {
            ConnectionReuse::KeepAlive => {
                writeln!(out, "  {} reconnects during the measured window", self.reconnects)?;
            }
            ConnectionReuse::PerRequest => {
                writeln!(out, "  {} connects during the measured window", self.connects)?;
            }
        }
        if self.workload.arrival.is_open_loop() {
            writeln!(
                out,
                "Send lag: {} sends left more than {LATE_THRESHOLD:?} late, max {:.3} ms",
                self.late_sends, self.max_send_lag_ms
            )?;
            writeln!(
                out,
                "  generator's own delay (ms): p50 {:.3}, p99 {:.3}, max {:.3}; {} sends above {GENERATOR_LAG_LIMIT:?}",
                self.generator_lag_ms.p50,
                self.generator_lag_ms.p99,
                self.generator_lag_ms.max,
                self.generator_late_sends
            )?;
        }
        writeln!(
            out,
            "Generator CPU: {:.3} s, {:.1}% of {} CPU(s) over the run",
            self.generator_cpu_s,
            self.generator_cpu_share * 100.0,
            self.cpu_capacity
        )?;

        writeln!(out)?;
        if self.valid {
            writeln!(out, "Result: valid")
        } else {
            writeln!(
                out,
                "Result: INVALID, the figures above may describe the generator rather than the instance:"
            )?;
            for reason in &self.invalid_reasons {
                writeln!(out, "  - {reason}")?;
            }
            Ok(())
        }
    }
}
