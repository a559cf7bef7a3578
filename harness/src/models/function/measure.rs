//! The function model's own measurements, run after the boot loop: cold versus warm
//! requests, the gateway's added latency, and the scenario's load patterns with the
//! fleet size over time and the memory left after the keep-warm window.
//!
//! Samples, all under the model label `function`:
//!
//! | metric | phase | repetition | value |
//! | --- | --- | --- | --- |
//! | `cold_start_ms` | `create`, `start`, `ready`, `handler` | cold start index | ms from the request reaching the gateway to: create returned, start returned, first 200 from the sandbox's /health, the sandbox's whole response |
//! | `warm_ms` | "" | warm request index | ms from the request reaching the gateway to the sandbox's whole response |
//! | `gateway_path_ms` | `via_gateway`, `direct` | pair index | ms from send to last byte on a kept-alive connection |
//! | `gateway_overhead_ms` | "" | 0 | median `via_gateway` minus median `direct` |
//! | `cold_starts`, `instance_seconds`, `gb_seconds`, `peak_instances`, `queue_full_503`, `queue_timeout_503`, `cold_start_failures` | `cold_warm` or a pattern name | 0 | gateway totals of that measurement |
//! | `instances` | pattern name | sample index | instances in the fleet, sampled every [`INSTANCE_SAMPLE_PERIOD`] |
//! | `instance_sample_period_ms` | pattern name | 0 | the sampling period |
//! | `live_sandboxes`, `memory_mib` | `idle_after_window` | pattern index | sandboxes the engine lists after the keep-warm window, and their memory |
//! | `scale_to_zero_s` | pattern name | 0 | s from the last response until the engine listed no sandbox |
//!
//! plus the pattern samples listed in [`super::patterns`].

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::ListContainersOptions;
use bollard::Docker;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::client::KeepAlive;
use super::gateway::{FleetGauge, Gateway, GatewayStats, RequestRecord, StartKind};
use super::patterns::{run_pattern, PatternSpec};
use super::sandbox::{container_usage, started_details, GATEWAY_LABEL};
use super::start_docker_gateway;
use crate::artifacts::{self, ServiceBinary};
use crate::engine::docker::RUN_LABEL;
use crate::measure::cgroup::Cgroup;
use crate::models::{ModelEnv, ModelError};
use crate::results::{quantile, Sample};
use crate::scenario::{LoadPattern, ModelKind};

const LABEL: &str = "function";
const MIB: f64 = 1024.0 * 1024.0;
/// Interval between samples of the fleet size.
pub const INSTANCE_SAMPLE_PERIOD: Duration = Duration::from_millis(100);
/// Warm requests sent after each cold one.
const WARM_REQUESTS_PER_COLD: u32 = 10;
/// Request pairs of the gateway overhead measurement.
const OVERHEAD_PAIRS: u32 = 200;
/// Time after the keep-warm window for the gateway to notice the expiry and the engine
/// to stop and remove the sandboxes: the stop timeout of 2 s plus a margin.
const REMOVAL_ALLOWANCE: Duration = Duration::from_secs(5);
/// Interval between engine listings while waiting for the fleet to reach zero.
const LISTING_INTERVAL: Duration = Duration::from_millis(100);

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn failed(message: String) -> ModelError {
    ModelError::Boot { instance: LABEL.to_string(), message }
}

/// Measures cold versus warm requests, the gateway overhead and every load pattern of
/// the scenario, each through a fresh gateway, and returns the samples.
///
/// The distroless image is built or reused as in `prepare`. Every gateway is shut down
/// before this returns, on success and on error.
pub async fn measure_function_patterns(
    env: &ModelEnv,
    binary: &ServiceBinary,
    progress: &(dyn for<'m> Fn(&'m str) + Sync),
) -> Result<Vec<Sample>, ModelError> {
    let docker = env.docker.as_ref().ok_or(ModelError::Unavailable {
        model: ModelKind::Function,
        reason: "the Docker engine is not reachable; run scripts/setup.sh".to_string(),
    })?;
    let image = artifacts::ensure_distroless_image(docker, &env.cache, binary, progress)
        .await
        .map_err(|error| ModelError::Prepare { model: ModelKind::Function, message: error.to_string() })?
        .tag;

    let mut samples = Vec::new();
    progress("function: cold versus warm requests");
    samples.extend(measure_cold_warm(env, &image).await?);
    progress("function: gateway overhead");
    samples.extend(measure_gateway_overhead(env, &image).await?);
    for (index, &pattern) in env.scenario.load.patterns.iter().enumerate() {
        progress(&format!("function: {} pattern through the gateway", pattern.name()));
        samples.extend(measure_pattern(env, docker, &image, pattern, index as u32).await?);
    }
    Ok(samples)
}

/// Shuts a gateway down and turns a failure into an error that names it.
async fn close(gateway: Gateway) -> Result<(), ModelError> {
    let name = gateway.name().to_string();
    gateway
        .shutdown()
        .await
        .map(|_| ())
        .map_err(|message| ModelError::Stop { instance: format!("gateway {name}"), message })
}

/// Shuts `gateway` down after the work that produced `result`, and returns the work's
/// error first, else the shutdown's.
async fn close_after<T>(gateway: Gateway, result: Result<T, ModelError>) -> Result<T, ModelError> {
    let closed = close(gateway).await;
    let value = result?;
    closed?;
    Ok(value)
}

/// Per repetition: a fresh gateway, one cold request, then warm ones, in sequence.
async fn measure_cold_warm(env: &ModelEnv, image: &str) -> Result<Vec<Sample>, ModelError> {
    let scenario = &env.scenario;
    let limit = scenario.boot.timeout + scenario.load.request_timeout;
    let mut samples = Vec::new();
    let mut totals = Totals::default();
    let mut cold_index = 0;
    let mut warm_index = 0;
    for repetition in 0..scenario.boot.repetitions {
        let gateway = start_docker_gateway(env, image, &format!("cold-warm-{repetition}")).await.map_err(failed)?;
        let result = cold_then_warm(&gateway, &scenario.load.path, limit).await;
        let (records, stats, memory_limit_mib) = close_after(gateway, result).await?;
        for record in records {
            match (record.start, record.handler) {
                (StartKind::Cold(timings), Some(handler)) => {
                    for (phase, value) in
                        [("create", timings.create), ("start", timings.start), ("ready", timings.ready), ("handler", handler)]
                    {
                        samples.push(Sample::new(LABEL, "cold_start_ms", phase, cold_index, ms(value), "ms"));
                    }
                    cold_index += 1;
                }
                (StartKind::Warm, Some(handler)) => {
                    samples.push(Sample::new(LABEL, "warm_ms", "", warm_index, ms(handler), "ms"));
                    warm_index += 1;
                }
                _ => {}
            }
        }
        totals.add(&stats, memory_limit_mib);
    }
    samples.extend(totals.samples("cold_warm"));
    Ok(samples)
}

/// Sends one cold request and then the warm ones on one kept-alive connection, and
/// returns what the gateway recorded.
async fn cold_then_warm(
    gateway: &Gateway,
    path: &str,
    limit: Duration,
) -> Result<(Vec<RequestRecord>, GatewayStats, u64), ModelError> {
    let mut client = KeepAlive::new(gateway.address());
    for _ in 0..=WARM_REQUESTS_PER_COLD {
        let response = client.get(path, limit).await.map_err(|error| failed(error.to_string()))?;
        if response.status != 200 {
            return Err(failed(format!("{path} through the gateway returned {}", response.status)));
        }
    }
    Ok((gateway.records(), gateway.stats(), gateway.config().memory_limit_mib))
}

/// Gateway totals summed over the gateways of one measurement.
#[derive(Default)]
struct Totals {
    cold_starts: u64,
    launch_failures: u64,
    queue_full: u64,
    queue_timeouts: u64,
    instance_seconds: f64,
    gb_seconds: f64,
    peak_instances: usize,
}

impl Totals {
    fn add(&mut self, stats: &GatewayStats, memory_limit_mib: u64) {
        self.cold_starts += stats.counters.cold_starts;
        self.launch_failures += stats.counters.launch_failures;
        self.queue_full += stats.counters.queue_full;
        self.queue_timeouts += stats.counters.queue_timeouts;
        self.instance_seconds += stats.instance_seconds;
        // GB as AWS Lambda bills memory: 1 GB is 1024 MB, so this is GiB.
        self.gb_seconds += stats.instance_seconds * memory_limit_mib as f64 / 1024.0;
        self.peak_instances = self.peak_instances.max(stats.peak_instances);
    }

    fn samples(&self, phase: &str) -> Vec<Sample> {
        vec![
            Sample::new(LABEL, "cold_starts", phase, 0, self.cold_starts as f64, "cold starts"),
            Sample::new(LABEL, "cold_start_failures", phase, 0, self.launch_failures as f64, "cold starts"),
            Sample::new(LABEL, "queue_full_503", phase, 0, self.queue_full as f64, "requests"),
            Sample::new(LABEL, "queue_timeout_503", phase, 0, self.queue_timeouts as f64, "requests"),
            Sample::new(LABEL, "instance_seconds", phase, 0, self.instance_seconds, "s"),
            Sample::new(LABEL, "gb_seconds", phase, 0, self.gb_seconds, "GB-s"),
            Sample::new(LABEL, "peak_instances", phase, 0, self.peak_instances as f64, "instances"),
        ]
    }
}

/// Sends the same request alternately through the gateway and straight to its warm
/// sandbox's published port, each on its own kept-alive connection, and compares the
/// medians. Both paths pass the engine's port proxy, so the difference is the gateway.
async fn measure_gateway_overhead(env: &ModelEnv, image: &str) -> Result<Vec<Sample>, ModelError> {
    let scenario = &env.scenario;
    let limit = scenario.boot.timeout + scenario.load.request_timeout;
    let gateway = start_docker_gateway(env, image, "overhead").await.map_err(failed)?;
    let result = overhead_pairs(&gateway, &scenario.load.path, limit).await;
    close_after(gateway, result).await
}

async fn overhead_pairs(gateway: &Gateway, path: &str, limit: Duration) -> Result<Vec<Sample>, ModelError> {
    let mut via_gateway = KeepAlive::new(gateway.address());
    // The first request starts the sandbox that both paths then reach.
    via_gateway.get(path, limit).await.map_err(|error| failed(error.to_string()))?;
    let sandbox = gateway
        .live_sandboxes()
        .into_iter()
        .next()
        .ok_or_else(|| failed("the gateway has no warm sandbox after its first request".to_string()))?;
    let mut direct = KeepAlive::new(sandbox.address);

    let mut samples = Vec::new();
    let (mut gateway_ms, mut direct_ms) = (Vec::new(), Vec::new());
    for pair in 0..OVERHEAD_PAIRS {
        // Alternating the order cancels any effect of going first.
        for through_gateway in [pair % 2 == 0, pair % 2 != 0] {
            let client = if through_gateway { &mut via_gateway } else { &mut direct };
            let response = client.get(path, limit).await.map_err(|error| failed(error.to_string()))?;
            if response.status != 200 {
                return Err(failed(format!("{path} returned {} during the overhead measurement", response.status)));
            }
            let value = ms(response.elapsed);
            let (phase, values) = if through_gateway { ("via_gateway", &mut gateway_ms) } else { ("direct", &mut direct_ms) };
            samples.push(Sample::new(LABEL, "gateway_path_ms", phase, pair, value, "ms"));
            values.push(value);
        }
    }
    gateway_ms.sort_by(f64::total_cmp);
    direct_ms.sort_by(f64::total_cmp);
    let overhead = quantile(&gateway_ms, 0.5) - quantile(&direct_ms, 0.5);
    samples.push(Sample::new(LABEL, "gateway_overhead_ms", "", 0, overhead, "ms"));
    Ok(samples)
}

/// Samples the fleet size every period until stopped.
struct InstanceSampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<usize>>,
}

impl InstanceSampler {
    fn start(gauge: FleetGauge) -> InstanceSampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            // The default missed-tick behavior catches up, so sample i stays at i periods.
            let mut ticker = tokio::time::interval(INSTANCE_SAMPLE_PERIOD);
            let mut counts = Vec::new();
            loop {
                tokio::select! {
                    _ = ticker.tick() => counts.push(gauge.instances()),
                    _ = &mut stopped => break,
                }
            }
            counts
        });
        InstanceSampler { stop, task }
    }

    async fn finish(self) -> Vec<usize> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Runs one pattern through a fresh gateway from zero instances, waits out the
/// keep-warm window, and checks with the engine what is left.
async fn measure_pattern(
    env: &ModelEnv,
    docker: &Docker,
    image: &str,
    pattern: LoadPattern,
    index: u32,
) -> Result<Vec<Sample>, ModelError> {
    let gateway = start_docker_gateway(env, image, pattern.name()).await.map_err(failed)?;
    let result = pattern_through(env, docker, &gateway, pattern, index).await;
    close_after(gateway, result).await
}

async fn pattern_through(
    env: &ModelEnv,
    docker: &Docker,
    gateway: &Gateway,
    pattern: LoadPattern,
    index: u32,
) -> Result<Vec<Sample>, ModelError> {
    let scenario = &env.scenario;
    let name = pattern.name();
    let mut spec = PatternSpec::new(gateway.address(), &scenario.load);
    // A request may wait in the queue and then start an instance before it is served.
    spec.request_timeout = scenario.load.request_timeout + scenario.function.queue_timeout + scenario.boot.timeout;

    let sampler = InstanceSampler::start(gateway.gauge());
    let run = match run_pattern(pattern, LABEL, &spec).await {
        Ok(run) => run,
        Err(error) => {
            sampler.finish().await;
            return Err(failed(error.to_string()));
        }
    };
    let window_end = run.finished + scenario.function.keep_warm;
    tokio::time::sleep_until(window_end).await;
    let idle = idle_after_window(docker, &env.run_id, gateway.name(), window_end + REMOVAL_ALLOWANCE).await;
    let counts = sampler.finish().await;
    let idle = idle.map_err(failed)?;

    let mut samples = run.samples;
    let mut totals = Totals::default();
    totals.add(&gateway.stats(), gateway.config().memory_limit_mib);
    samples.extend(totals.samples(name));
    for (sample, count) in counts.iter().enumerate() {
        samples.push(Sample::new(LABEL, "instances", name, sample as u32, *count as f64, "instances"));
    }
    samples.push(Sample::new(LABEL, "instance_sample_period_ms", name, 0, ms(INSTANCE_SAMPLE_PERIOD), "ms"));
    samples.push(Sample::new(LABEL, "live_sandboxes", "idle_after_window", index, idle.sandboxes as f64, "sandboxes"));
    samples.push(Sample::new(LABEL, "memory_mib", "idle_after_window", index, idle.memory_bytes as f64 / MIB, "MiB"));
    if idle.sandboxes == 0 {
        let seconds = idle.checked_at.saturating_duration_since(run.finished).as_secs_f64();
        samples.push(Sample::new(LABEL, "scale_to_zero_s", name, 0, seconds, "s"));
    }
    Ok(samples)
}

/// Sandboxes the engine listed after the keep-warm window, and their memory.
struct Idle {
    sandboxes: usize,
    /// Memory of the listed sandboxes with their shims; 0 when none is listed.
    memory_bytes: u64,
    checked_at: Instant,
}

/// Lists the gateway's sandboxes until none is left or `deadline` passes, and reads the
/// memory of any that remain.
async fn idle_after_window(docker: &Docker, run_id: &str, gateway: &str, deadline: Instant) -> Result<Idle, String> {
    let options = ListContainersOptions::<String> {
        all: true,
        filters: HashMap::from([(
            "label".to_string(),
            vec![format!("{RUN_LABEL}={run_id}"), format!("{GATEWAY_LABEL}={gateway}")],
        )]),
        ..Default::default()
    };
    loop {
        let listed = docker
            .list_containers(Some(options.clone()))
            .await
            .map_err(|error| format!("cannot list the sandboxes of gateway {gateway}: {error}"))?;
        let checked_at = Instant::now();
        if listed.is_empty() || checked_at >= deadline {
            let mut memory_bytes = 0;
            for id in listed.iter().filter_map(|container| container.id.as_deref()) {
                memory_bytes += sandbox_memory(docker, id).await.unwrap_or_else(|error| {
                    tracing::warn!(sandbox = %id, %error, "cannot read the memory of a sandbox left after the keep-warm window");
                    0
                });
            }
            return Ok(Idle { sandboxes: listed.len(), memory_bytes, checked_at });
        }
        tokio::time::sleep(LISTING_INTERVAL).await;
    }
}

async fn sandbox_memory(docker: &Docker, id: &str) -> Result<u64, String> {
    let (pid, _) = started_details(docker, id).await?;
    let cgroup = Cgroup::of_pid(pid).map_err(|error| error.to_string())?;
    let usage = container_usage(&cgroup, pid)?;
    Ok(usage.memory_bytes + usage.runtime_bytes)
}
