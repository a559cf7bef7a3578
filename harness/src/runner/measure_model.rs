//! Measures one deployment model: artifact size, boots with their phases, idle
//! memory after each boot, and CPU and latency under the scenario's open-loop load.

use std::time::{Duration, Instant};

use super::engine_watch::{EngineMonitor, EngineState};
use super::progress::Progress;
use super::Shared;
use crate::artifacts::ServiceBinary;
use crate::load::{run_open_loop, LoadReport, LoadSpec};
use crate::measure::hardening;
use crate::measure::procfs::HostCpu;
use crate::models::{DeploymentModel, Instance, InstanceHandle, ModelEnv, ModelError};
use crate::results::{ArtifactRecord, CheckRecord, FailureRecord, Sample};
use crate::scenario::ModelKind;

const MIB: f64 = 1024.0 * 1024.0;

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn push(shared: &Shared, samples: Vec<Sample>) {
    shared
        .lock()
        .expect("no code panics while holding the lock")
        .samples
        .extend(samples);
}

/// Measures one model; returns an error when no repetition succeeded, the artifact
/// could not be prepared, or the engine went away and stayed away. Failed boots are
/// counted in `boot_failures` samples, and every failed repetition is recorded.
pub async fn measure(
    model: &mut dyn DeploymentModel,
    env: &ModelEnv,
    binary: &ServiceBinary,
    progress: &Progress,
    shared: &Shared,
) -> Result<(), ModelError> {
    // The label may change in prepare: the vm model adds its accelerator, `vm (tcg)`.
    let step = progress.step(&model.label(), 0);
    // One emulated VM boot takes about a minute, so the vm model has its own count.
    let repetitions = if model.kind() == ModelKind::Vm {
        env.scenario.vm.boots
    } else {
        env.scenario.boot.repetitions
    };

    step.message("preparing the artifact");
    let artifact = model
        .prepare(env, binary, &|message: &str| step.message(message))
        .await?;
    step.finish(&format!("artifact {}", artifact.name));
    let label = model.label();
    let step = progress.step(&label, u64::from(repetitions) + 1);
    step.advance(&format!(
        "artifact {} ({})",
        artifact.name,
        if artifact.reused { "cached" } else { "built" }
    ));
    shared
        .lock()
        .expect("no code panics while holding the lock")
        .artifacts
        .push(ArtifactRecord {
            model: label.clone(),
            name: artifact.name.clone(),
            size_bytes: artifact.size_bytes,
            reused: artifact.reused,
            recipe_hash: artifact.recipe_hash.clone(),
        });
    push(
        shared,
        vec![Sample::new(
            &label,
            "image_mib",
            "uncompressed",
            0,
            artifact.size_bytes as f64 / MIB,
            "MiB",
        )],
    );

    // A daemon restart fails the repetition it hits; the run then waits for the engine.
    let engine = env.docker.as_ref().filter(|_| model.kind().uses_engine());
    let monitor = engine.map(|docker| EngineMonitor::start(docker.clone()));
    let engine_wait = super::engine_watch::engine_wait();
    let mut measured = 0;
    let mut last_error = None;
    for repetition in 0..repetitions {
        let began = Instant::now();
        let (stage, error) = match measure_repetition(model, env, repetition, repetitions, &step, shared).await {
            Ok(()) => {
                measured += 1;
                continue;
            }
            Err(failure) => failure,
        };
        let mut reason = error.to_string();
        tracing::warn!(model = %label, repetition, stage = stage.name(), %reason, "repetition failed");
        if let (Some(docker), Some(monitor)) = (engine, &monitor) {
            match super::engine_watch::recover(docker, monitor, began, &env.run_id, engine_wait, &step).await {
                EngineState::Answering => {}
                EngineState::Returned(unanswered) => {
                    reason.push_str(&format!(
                        "; the Docker engine did not respond for {:.1} s during this repetition (a daemon restart \
                         stops every container)",
                        unanswered.as_secs_f64()
                    ));
                }
                EngineState::Gone => {
                    reason.push_str("; the Docker engine stopped responding and did not return");
                    record_failure(shared, &label, repetition, stage, reason);
                    return Err(ModelError::EngineGone {
                        model: label,
                        waited_s: engine_wait.as_secs(),
                    });
                }
            }
        }
        match stage {
            Stage::Boot => {
                step.advance(&format!("boot {} failed: {reason}", repetition + 1));
                push(
                    shared,
                    vec![Sample::new(&label, "boot_failures", "", repetition, 1.0, "boots")],
                );
            }
            Stage::Measure | Stage::Stop => {
                step.message(&format!(
                    "repetition {} failed to {}: {reason}",
                    repetition + 1,
                    stage.name()
                ));
            }
        }
        record_failure(shared, &label, repetition, stage, reason);
        last_error = Some(error);
    }

    if model.kind() == ModelKind::Function && measured > 0 {
        step.message("function: cold starts, gateway overhead and load patterns");
        match crate::models::measure_function_patterns(env, binary, &|message: &str| step.message(message)).await {
            Ok(samples) => push(shared, samples),
            Err(error) => tracing::warn!(model = %label, %error, "function measurements failed"),
        }
    }

    match (measured, last_error) {
        (0, Some(error)) => Err(error),
        _ => {
            step.finish(&format!("{measured}/{repetitions} repetitions measured"));
            Ok(())
        }
    }
}

/// The step of a repetition that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Boot,
    Measure,
    Stop,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Boot => "boot",
            Stage::Measure => "measure",
            Stage::Stop => "stop",
        }
    }
}

fn record_failure(shared: &Shared, label: &str, repetition: u32, stage: Stage, reason: String) {
    shared
        .lock()
        .expect("no code panics while holding the lock")
        .failures
        .push(FailureRecord {
            model: label.to_string(),
            repetition,
            stage: stage.name().to_string(),
            reason,
        });
}

/// Boots one instance, measures it, and stops it. The boot phases are kept once the
/// instance responded, and memory and load samples only when the measurement finished.
async fn measure_repetition(
    model: &dyn DeploymentModel,
    env: &ModelEnv,
    repetition: u32,
    repetitions: u32,
    step: &super::progress::Step,
    shared: &Shared,
) -> Result<(), (Stage, ModelError)> {
    let label = model.label();
    let instance = model
        .boot(env, repetition)
        .await
        .map_err(|error| (Stage::Boot, error))?;
    let phases = match &instance.handle {
        InstanceHandle::Vm(handle) => handle.named_phases(&instance.phases),
        _ => instance.phases.named(),
    };
    push(
        shared,
        phases
            .into_iter()
            .map(|(phase, elapsed)| Sample::new(&label, "boot_ms", phase, repetition, ms(elapsed), "ms"))
            .collect(),
    );
    step.advance(&format!(
        "boot {}/{repetitions}: {:.0} ms to first 200",
        repetition + 1,
        ms(instance.phases.first_200)
    ));

    if repetition == 0 && model.kind() == ModelKind::Distroless {
        step.message("verifying the hardening from inside the instance");
        let checks = verify_hardening(env, &instance, &label).await;
        shared
            .lock()
            .expect("no code panics while holding the lock")
            .checks
            .extend(checks);
    }
    let is_last = repetition + 1 == repetitions;
    let measured = measure_instance(model, env, &instance, repetition, is_last, step, shared).await;
    let stopped = model.stop(env, instance).await;
    // A failed stop does not undo a finished measurement.
    let samples = measured.map_err(|error| (Stage::Measure, error))?;
    push(shared, samples);
    stopped.map_err(|error| (Stage::Stop, error))
}

/// Runs the selfcheck inside the instance; a check that cannot run is recorded as failed.
async fn verify_hardening(env: &ModelEnv, instance: &Instance, label: &str) -> Vec<CheckRecord> {
    let (Some(docker), InstanceHandle::Container { id, .. }) = (&env.docker, &instance.handle) else {
        return Vec::new();
    };
    match hardening::run_selfcheck(docker, id).await {
        Ok(line) => hardening::distroless_checks(label, &hardening::parse_selfcheck(&line)),
        Err(message) => vec![CheckRecord {
            model: label.to_string(),
            check: "selfcheck ran inside the instance".to_string(),
            passed: false,
            detail: message,
        }],
    }
}

/// Idle memory after the settle time; on the last repetition also the load.
async fn measure_instance(
    model: &dyn DeploymentModel,
    env: &ModelEnv,
    instance: &Instance,
    repetition: u32,
    with_load: bool,
    step: &super::progress::Step,
    shared: &Shared,
) -> Result<Vec<Sample>, ModelError> {
    let label = model.label();
    tokio::time::sleep(env.scenario.memory.settle).await;
    let idle = model.accounting(instance).await?;
    let mut samples = vec![
        Sample::new(
            &label,
            "memory_mib",
            "instance",
            repetition,
            idle.instance_bytes as f64 / MIB,
            "MiB",
        ),
        Sample::new(
            &label,
            "memory_mib",
            "runtime",
            repetition,
            idle.runtime_bytes as f64 / MIB,
            "MiB",
        ),
        Sample::new(
            &label,
            "memory_mib",
            "total",
            repetition,
            (idle.instance_bytes + idle.runtime_bytes) as f64 / MIB,
            "MiB",
        ),
    ];
    if let InstanceHandle::Vm(handle) = &instance.handle {
        samples.extend(guest_memory_sample(handle, &label, repetition).await);
    }
    if !with_load {
        return Ok(samples);
    }

    let load = &env.scenario.load;
    step.message(&format!(
        "load: {} req/s for {:.0} s after {:.0} s warm-up",
        load.rate,
        load.duration.as_secs_f64(),
        load.warmup.as_secs_f64()
    ));
    let spec = LoadSpec {
        target: instance.address,
        path: load.path.clone(),
        rate_per_s: load.rate,
        duration: load.duration,
        warmup: load.warmup,
        connections: load.connections,
        request_timeout: load.request_timeout,
    };
    let before = model.accounting(instance).await?;
    let host_before = HostCpu::read().ok();
    let wall = Instant::now();
    let report = run_open_loop(&spec).await.map_err(|error| ModelError::Boot {
        instance: instance.name.clone(),
        message: format!("load failed: {error}"),
    })?;
    let wall = wall.elapsed();
    let after = model.accounting(instance).await?;
    let host_after = HostCpu::read().ok();

    // The warm-up is inside the accounting window, so CPU is charged per request
    // sent in the whole window, warm-up included.
    let cpu = after.cpu_time.saturating_sub(before.cpu_time);
    let requests_in_window = report.completed as f64 * wall.as_secs_f64() / report.measured.as_secs_f64().max(1e-9);
    samples.extend(load_samples(&label, &report));
    shared.lock().expect("no code panics while holding the lock").checks.push(load_check(&label, &report));
    if requests_in_window > 0.0 {
        samples.push(Sample::new(
            &label,
            "cpu_ms_per_1k_req",
            "instance",
            0,
            ms(cpu) * 1000.0 / requests_in_window,
            "ms",
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    samples.push(Sample::new(
        &label,
        "utilization_pct",
        "instance",
        0,
        cpu.as_secs_f64() * 100.0 / (wall.as_secs_f64() * cpus),
        "%",
    ));
    if let (Some(host_before), Some(host_after)) = (host_before, host_after) {
        samples.push(Sample::new(
            &label,
            "utilization_pct",
            "host",
            0,
            host_before.busy_percent_until(&host_after),
            "%",
        ));
    }
    step.message(&format!(
        "load: {:.0} req/s achieved, p99 {:.2} ms",
        report.achieved_rps,
        LoadReport::percentile_ms(&report.corrected, 0.99)
    ));
    Ok(samples)
}

/// The memory the guest itself counts as used, beside what QEMU holds on the host.
/// The guest reports its statistics every few seconds, so a read is retried briefly.
async fn guest_memory_sample(handle: &crate::models::VmHandle, label: &str, repetition: u32) -> Option<Sample> {
    for _ in 0..5 {
        match handle.guest_memory().await {
            Ok(memory) => {
                return Some(Sample::new(
                    label,
                    "memory_mib",
                    "guest_used",
                    repetition,
                    memory.used_bytes() as f64 / MIB,
                    "MiB",
                ));
            }
            Err(error) => {
                tracing::debug!(model = label, %error, "guest memory not readable yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tracing::warn!(
        model = label,
        "the guest reported no memory statistics; guest_used not recorded"
    );
    None
}

/// Records whether the load run measured the instance rather than the generator's
/// limits: an invalid run's latency and CPU figures need the reasons beside them.
fn load_check(label: &str, report: &LoadReport) -> CheckRecord {
    let achieved = format!("achieved {:.1} of {:.1} req/s", report.achieved_rps, report.target_rps);
    CheckRecord {
        model: label.to_string(),
        check: "open-loop load run valid".to_string(),
        passed: report.valid,
        detail: if report.valid { achieved } else { format!("{achieved}; {}", report.invalid_reasons.join("; ")) },
    }
}

/// Latency percentiles, rates and errors of one load report.
fn load_samples(label: &str, report: &LoadReport) -> Vec<Sample> {
    const PERCENTILES: [(&str, f64); 5] = [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("max", 1.0),
    ];
    let mut samples = Vec::new();
    for (phase, quantile) in PERCENTILES {
        samples.push(Sample::new(
            label,
            "latency_ms",
            phase,
            0,
            LoadReport::percentile_ms(&report.corrected, quantile),
            "ms",
        ));
        samples.push(Sample::new(
            label,
            "service_time_ms",
            phase,
            0,
            LoadReport::percentile_ms(&report.uncorrected, quantile),
            "ms",
        ));
    }
    samples.push(Sample::new(label, "target_rps", "", 0, report.target_rps, "req/s"));
    samples.push(Sample::new(label, "achieved_rps", "", 0, report.achieved_rps, "req/s"));
    samples.push(Sample::new(
        label,
        "requests",
        "completed",
        0,
        report.completed as f64,
        "requests",
    ));
    for (kind, count) in &report.errors {
        samples.push(Sample::new(label, "errors", kind, 0, *count as f64, "requests"));
    }
    samples
}

/// Adds `memory_overhead_mib` samples: each instance's total memory less the median
/// RSS of the bare process. Without a process model in the run there is no floor,
/// and no overhead samples are added.
pub fn with_overhead(mut samples: Vec<Sample>) -> Vec<Sample> {
    let mut floor: Vec<f64> = samples
        .iter()
        .filter(|s| s.model == "process" && s.metric == "memory_mib" && s.phase == "total")
        .map(|s| s.value)
        .collect();
    if floor.is_empty() {
        return samples;
    }
    floor.sort_by(f64::total_cmp);
    let floor = crate::results::quantile(&floor, 0.5);
    let overhead: Vec<Sample> = samples
        .iter()
        .filter(|s| s.metric == "memory_mib" && s.phase == "total")
        .map(|s| {
            Sample::new(
                &s.model,
                "memory_overhead_mib",
                "",
                s.repetition,
                s.value - floor,
                "MiB",
            )
        })
        .collect();
    samples.extend(overhead);
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_check_carries_invalid_reasons() {
        let workload = crate::load::Workload { arrival: crate::load::Arrival::Constant, connection_reuse: Default::default() };
        let mut report = LoadReport::empty(workload, 200.0);
        report.achieved_rps = 199.5;
        let valid = load_check("distroless", &report);
        assert!(valid.passed);
        assert_eq!(valid.detail, "achieved 199.5 of 200.0 req/s");

        report.achieved_rps = 183.1;
        report.valid = false;
        report.invalid_reasons = vec!["achieved 91.6% of the scheduled rate, below the 95% minimum".to_string()];
        let invalid = load_check("function", &report);
        assert!(!invalid.passed);
        assert_eq!(invalid.model, "function");
        assert_eq!(
            invalid.detail,
            "achieved 183.1 of 200.0 req/s; achieved 91.6% of the scheduled rate, below the 95% minimum"
        );
    }

    #[test]
    fn overhead_subtracts_process_median() {
        let samples = vec![
            Sample::new("process", "memory_mib", "total", 0, 2.0, "MiB"),
            Sample::new("process", "memory_mib", "total", 1, 4.0, "MiB"),
            Sample::new("process", "memory_mib", "total", 2, 3.0, "MiB"),
            Sample::new("distroless", "memory_mib", "total", 0, 10.0, "MiB"),
            Sample::new("distroless", "memory_mib", "instance", 0, 7.0, "MiB"),
        ];
        let all = with_overhead(samples);
        let overhead: Vec<(&str, f64)> = all
            .iter()
            .filter(|s| s.metric == "memory_overhead_mib")
            .map(|s| (s.model.as_str(), s.value))
            .collect();
        assert_eq!(
            overhead,
            vec![
                ("process", -1.0),
                ("process", 1.0),
                ("process", 0.0),
                ("distroless", 7.0)
            ]
        );
    }

    #[test]
    fn no_floor_no_overhead() {
        let samples = vec![Sample::new("distroless", "memory_mib", "total", 0, 10.0, "MiB")];
        assert_eq!(with_overhead(samples.clone()), samples);
    }
}
