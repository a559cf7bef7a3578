//! Load patterns over time, for any deployment model: `steady` (the open-loop rate every
//! model gets), `bursty` (bursts separated by idle gaps) and `spike` (from idle to many
//! concurrent requests at once).
//!
//! Each pattern returns its samples under the label it is given:
//!
//! | metric | phase | repetition | value |
//! | --- | --- | --- | --- |
//! | `pattern_latency_ms` | `bursty`, `spike` | request index | ms from the intended send time to the last response byte, 2xx responses only |
//! | `pattern_latency_ms` | `bursty_cold`, `bursty_warm`, `spike_cold`, `spike_warm` | request index | the same, split by the gateway's start header (function model only) |
//! | `pattern_latency_ms` | `steady_p50`, `steady_p90`, `steady_p99`, `steady_p99.9`, `steady_max` | 0 | percentile of the load generator's corrected histogram |
//! | `pattern_requests` | pattern name | 0 | requests sent (`steady`: completed) |
//! | `pattern_errors` | `PATTERN_KIND` | 0 | failed requests of one kind, such as `spike_503` or `bursty_timeout` |

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{get_once, ClientError, ClientResponse, Start};
use crate::load::{run_open_loop, LoadReport, LoadSpec};
use crate::results::Sample;
use crate::scenario::{LoadPattern, LoadSettings};

/// Time between scheduling a burst or spike and its first intended send, so that every
/// request task runs before its send is due.
const START_LEAD: Duration = Duration::from_millis(20);

/// Target, rates and shapes of the load patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternSpec {
    /// 127.0.0.1 address of the instance or gateway under load.
    pub target: SocketAddr,
    /// Path and query of every `GET`.
    pub path: String,
    /// Requests per second of `steady`, and within each burst of `bursty`.
    pub rate_per_s: f64,
    /// Measured window of `steady`.
    pub duration: Duration,
    /// Unmeasured lead-in of `steady` at the same rate.
    pub warmup: Duration,
    /// Keep-alive connections of `steady`.
    pub connections: usize,
    /// Limit on one request, connect included.
    pub request_timeout: Duration,
    pub burst_requests: u32,
    pub bursts: u32,
    /// Idle time from the last response of one burst to the first send of the next.
    pub burst_gap: Duration,
    pub spike_concurrency: u32,
}

impl PatternSpec {
    /// Takes every setting from the scenario's `[load]` section.
    pub fn new(target: SocketAddr, load: &LoadSettings) -> PatternSpec {
        PatternSpec {
            target,
            path: load.path.clone(),
            rate_per_s: load.rate,
            duration: load.duration,
            warmup: load.warmup,
            connections: load.connections,
            request_timeout: load.request_timeout,
            burst_requests: load.burst_requests,
            bursts: load.bursts,
            burst_gap: load.burst_gap,
            spike_concurrency: load.spike_concurrency,
        }
    }
}

/// The samples of one pattern run and when it ended.
#[derive(Debug)]
pub struct PatternRun {
    pub samples: Vec<Sample>,
    /// When the last response arrived, or the run ended when none did.
    pub finished: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("the {pattern} pattern failed: {message}")]
    Load { pattern: &'static str, message: String },
}

/// Runs one pattern against `spec.target`.
pub async fn run_pattern(pattern: LoadPattern, label: &str, spec: &PatternSpec) -> Result<PatternRun, PatternError> {
    match pattern {
        LoadPattern::Steady => run_steady(label, spec).await,
        LoadPattern::Bursty => Ok(run_bursty(label, spec).await),
        LoadPattern::Spike => Ok(run_spike(label, spec).await),
    }
}

/// Sends the scenario's open-loop rate for `warmup + duration` over kept-alive
/// connections, with the same load generator as every other model.
pub async fn run_steady(label: &str, spec: &PatternSpec) -> Result<PatternRun, PatternError> {
    let load = LoadSpec {
        target: spec.target,
        path: spec.path.clone(),
        rate_per_s: spec.rate_per_s,
        duration: spec.duration,
        warmup: spec.warmup,
        connections: spec.connections,
        request_timeout: spec.request_timeout,
    };
    let report = run_open_loop(&load)
        .await
        .map_err(|error| PatternError::Load { pattern: "steady", message: error.to_string() })?;
    let finished = Instant::now();

    const PERCENTILES: [(&str, f64); 5] =
        [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)];
    let mut samples = Vec::new();
    if report.completed > 0 {
        for (name, quantile) in PERCENTILES {
            let value = LoadReport::percentile_ms(&report.corrected, quantile);
            samples.push(Sample::new(label, "pattern_latency_ms", &format!("steady_{name}"), 0, value, "ms"));
        }
    }
    samples.push(Sample::new(label, "pattern_requests", "steady", 0, report.completed as f64, "requests"));
    for (kind, count) in &report.errors {
        samples.push(Sample::new(label, "pattern_errors", &format!("steady_{kind}"), 0, *count as f64, "requests"));
    }
    Ok(PatternRun { samples, finished })
}

/// Sends `bursts` bursts of `burst_requests` requests, each burst at `rate_per_s` on
/// new connections, and waits `burst_gap` after the last response of a burst before
/// the next one starts.
pub async fn run_bursty(label: &str, spec: &PatternSpec) -> PatternRun {
    let interval = Duration::from_secs_f64(1.0 / spec.rate_per_s.max(1e-3));
    let mut results = Vec::new();
    let mut finished = Instant::now();
    for burst in 0..spec.bursts {
        if burst > 0 {
            tokio::time::sleep(spec.burst_gap).await;
        }
        let first = Instant::now() + START_LEAD;
        let schedule: Vec<Instant> = (0..spec.burst_requests).map(|index| first + interval * index).collect();
        results.extend(send_at(spec, &schedule).await);
        finished = Instant::now();
    }
    PatternRun { samples: request_samples(label, "bursty", &results), finished }
}

/// Sends `spike_concurrency` requests at the same instant, each on a new connection.
pub async fn run_spike(label: &str, spec: &PatternSpec) -> PatternRun {
    let at = Instant::now() + START_LEAD;
    let schedule = vec![at; spec.spike_concurrency as usize];
    let results = send_at(spec, &schedule).await;
    PatternRun { samples: request_samples(label, "spike", &results), finished: Instant::now() }
}

/// One request of a burst or spike.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Timed {
    /// From the intended send time to the last response byte, or to the failure.
    latency: Duration,
    result: Result<ClientResponse, ClientError>,
}

/// Sends one request per scheduled instant, each in its own task on its own
/// connection, and returns the results in schedule order.
async fn send_at(spec: &PatternSpec, schedule: &[Instant]) -> Vec<Timed> {
    let mut tasks = JoinSet::new();
    for (index, &intended) in schedule.iter().enumerate() {
        let (target, path, limit) = (spec.target, spec.path.clone(), spec.request_timeout);
        tasks.spawn(async move {
            tokio::time::sleep_until(intended).await;
            let result = get_once(target, &path, limit).await;
            (index, Timed { latency: intended.elapsed(), result })
        });
    }
    let mut results: Vec<Option<Timed>> = vec![None; schedule.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, timed)) => results[index] = Some(timed),
            Err(error) => tracing::error!(%error, "a pattern request task failed"),
        }
    }
    results.into_iter().flatten().collect()
}

/// Turns request results into latency and error samples; see the module table.
fn request_samples(label: &str, pattern: &str, results: &[Timed]) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut errors: Vec<(String, u64)> = Vec::new();
    let mut count_error = |kind: String| match errors.iter_mut().find(|(known, _)| *known == kind) {
        Some((_, count)) => *count += 1,
        None => errors.push((kind, 1)),
    };
    for (index, timed) in results.iter().enumerate() {
        let repetition = index as u32;
        match &timed.result {
            Ok(response) if (200..300).contains(&response.status) => {
                let ms = timed.latency.as_secs_f64() * 1000.0;
                samples.push(Sample::new(label, "pattern_latency_ms", pattern, repetition, ms, "ms"));
                let split = match response.start {
                    Some(Start::Cold) => Some("cold"),
                    Some(Start::Warm) => Some("warm"),
                    None => None,
                };
                if let Some(start) = split {
                    samples.push(Sample::new(label, "pattern_latency_ms", &format!("{pattern}_{start}"), repetition, ms, "ms"));
                }
            }
            Ok(response) => count_error(format!("{pattern}_{}", response.status)),
            Err(error) => count_error(format!("{pattern}_{}", error.kind())),
        }
    }
    samples.push(Sample::new(label, "pattern_requests", pattern, 0, results.len() as f64, "requests"));
    for (kind, count) in errors {
        samples.push(Sample::new(label, "pattern_errors", &kind, 0, count as f64, "requests"));
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16, start: Option<Start>, latency_ms: u64) -> Timed {
        Timed {
            latency: Duration::from_millis(latency_ms),
            result: Ok(ClientResponse { status, start, elapsed: Duration::from_millis(latency_ms) }),
        }
    }

    #[test]
    fn request_samples_split_and_count() {
        let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let results = vec![
            ok(200, Some(Start::Cold), 400),
            ok(200, Some(Start::Warm), 3),
            ok(503, None, 1),
            ok(503, None, 1),
            Timed {
                latency: Duration::from_secs(5),
                result: Err(ClientError::Timeout { address, limit: Duration::from_secs(5) }),
            },
        ];
        let samples = request_samples("function", "spike", &results);
        let values = |phase: &str| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.metric == "pattern_latency_ms" && s.phase == phase)
                .map(|s| s.value)
                .collect()
        };
        assert_eq!(values("spike"), vec![400.0, 3.0]);
        assert_eq!(values("spike_cold"), vec![400.0]);
        assert_eq!(values("spike_warm"), vec![3.0]);
        let count = |metric: &str, phase: &str| {
            samples.iter().find(|s| s.metric == metric && s.phase == phase).map(|s| s.value)
        };
        assert_eq!(count("pattern_requests", "spike"), Some(5.0));
        assert_eq!(count("pattern_errors", "spike_503"), Some(2.0));
        assert_eq!(count("pattern_errors", "spike_timeout"), Some(1.0));
    }

    #[tokio::test]
    async fn spike_against_closed_port_counts_connect_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        drop(listener);
        let load = crate::scenario::Scenario::parse("models = [\"process\"]\n", std::path::Path::new("t.toml"))
            .unwrap()
            .load;
        let mut spec = PatternSpec::new(target, &load);
        spec.spike_concurrency = 3;
        spec.request_timeout = Duration::from_secs(2);
        let run = run_spike("process", &spec).await;
        let errors: f64 = run
            .samples
            .iter()
            .filter(|s| s.metric == "pattern_errors" && s.phase == "spike_connect")
            .map(|s| s.value)
            .sum();
        assert_eq!(errors, 3.0);
    }
}
