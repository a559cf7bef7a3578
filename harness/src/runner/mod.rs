//! Runs a scenario: boots every deployment model, measures it, stores the samples,
//! and writes the report. Ctrl-C or SIGTERM stops the instances and still writes the
//! samples gathered so far, marked incomplete.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::artifacts::{build_service_binary, ArtifactCache};
use crate::results::{self, ArtifactRecord, CheckRecord, FailureRecord, HostContext, ModelOutcome, RunMeta, Sample};
use crate::scenario::{ModelKind, Scenario};

mod cleanup;
mod context;
mod engine_watch;
mod measure_model;
pub mod progress;

pub use cleanup::remove_leftovers;
use progress::Progress;

/// Options of `deploybench run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario_path: PathBuf,
    /// Folder under which the run folder is created, normally `results/runs`.
    pub output_root: PathBuf,
    /// The deploybench checkout, from which the reference service is built.
    pub workspace_root: PathBuf,
    pub quiet: bool,
}

/// Location and status of a finished or interrupted run.
#[derive(Debug)]
pub struct RunOutcome {
    pub folder: PathBuf,
    pub complete: bool,
    pub failed_models: Vec<String>,
    /// Repetitions that failed in models that were measured all the same.
    pub failed_repetitions: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("cannot create the run folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the reference service: {0}")]
    Service(String),
    #[error("cannot save the results: {0}")]
    Save(#[from] results::ResultsError),
    #[error("cannot write the report: {0}")]
    Report(String),
}

/// State shared between the measuring task and the interrupt handler, so that an
/// interrupted run still saves what it measured.
#[derive(Default)]
pub(crate) struct Collected {
    samples: Vec<Sample>,
    outcomes: Vec<ModelOutcome>,
    artifacts: Vec<ArtifactRecord>,
    checks: Vec<CheckRecord>,
    failures: Vec<FailureRecord>,
}

pub(crate) type Shared = Arc<Mutex<Collected>>;

/// Runs a scenario to completion or interruption and writes its run folder.
pub async fn run(options: &RunOptions) -> Result<RunOutcome, RunError> {
    let scenario = Scenario::load(&options.scenario_path)?;
    let started = chrono::Utc::now();
    let run_id = format!("{}-{}", started.format("%Y%m%dT%H%M%SZ"), scenario.name);
    let folder = options.output_root.join(&run_id);
    std::fs::create_dir_all(&folder).map_err(|source| RunError::Folder {
        path: folder.clone(),
        source,
    })?;
    tracing::info!(run = %run_id, folder = %folder.display(), "run started");

    let progress = Progress::new(options.quiet);
    let docker = context::connect_engine(&scenario).await;
    if let Ok(docker) = &docker {
        remove_leftovers(docker, &progress).await;
        crate::measure::pull::remove_leftover_images(docker, None).await;
    }
    // Leftovers of killed runs: a traffic-shaping qdisc and registry folders. Without
    // root there is nothing of ours to remove, so the error is ignored.
    let _ = crate::engine::shaping::remove_leftover_shaping();
    crate::engine::registry::remove_leftover_registries(&std::env::temp_dir());
    crate::models::remove_leftover_vm_folders(&std::env::temp_dir());
    let mut meta = RunMeta {
        deploybench_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: context::git_revision(&options.workspace_root),
        scenario_name: scenario.name.clone(),
        scenario_path: options.scenario_path.display().to_string(),
        scenario_text: scenario.source_text.clone(),
        started_at: started.to_rfc3339(),
        host: HostContext::detect(),
        engine: match &docker {
            Ok(docker) => context::engine_context(docker).await,
            Err(_) => None,
        },
        ..Default::default()
    };

    let shared: Shared = Arc::default();
    let measured = measure_all(options, &scenario, &run_id, docker, &progress, Arc::clone(&shared));
    let interrupted = tokio::select! {
        result = measured => {
            if let Err(message) = result {
                meta.incomplete_reason = Some(message);
            }
            false
        }
        signal = wait_for_interrupt() => {
            meta.incomplete_reason = Some(format!("interrupted by {signal}"));
            true
        }
    };
    if interrupted {
        // Dropping the measuring future killed child processes (kill_on_drop); the
        // containers belong to the engine and are removed by their run label.
        eprintln!("deploybench: interrupted, stopping instances and saving partial results");
    }
    if scenario.models.iter().any(|kind| kind.uses_engine()) {
        if let Ok(docker) = crate::engine::docker::connect().await {
            // Normally nothing is left here; a failed stop or a daemon restart can leave one.
            let removed = cleanup::remove_run_containers(&docker, &run_id).await;
            if removed > 0 && !interrupted {
                tracing::warn!(removed, run = %run_id, "removed containers the run had left at its end");
            }
            crate::measure::pull::remove_leftover_images(&docker, Some(&run_id)).await;
        }
    }

    let collected = std::mem::take(&mut *shared.lock().expect("no code panics while holding the lock"));
    if scenario.models.contains(&ModelKind::Vm) {
        meta.qemu = context::qemu_context(&collected.outcomes).await;
    }
    meta.complete = meta.incomplete_reason.is_none();
    meta.finished_at = Some(chrono::Utc::now().to_rfc3339());
    meta.models = with_unfinished_models(collected.outcomes, &scenario.models, meta.incomplete_reason.as_deref());
    meta.artifacts = collected.artifacts;
    meta.checks = collected.checks;
    meta.failures = collected.failures;
    let samples = measure_model::with_overhead(collected.samples);
    save(&folder, &samples, &meta)?;
    let history = options
        .output_root
        .parent()
        .unwrap_or(Path::new("."))
        .join(results::HISTORY_FILE);
    let summaries = results::summarize(&samples);
    if let Err(error) = results::history::append_history(&history, &run_id, &meta, &summaries) {
        // The run folder is complete; only the trend file could not be updated.
        tracing::warn!(%error, history = %history.display(), "cannot append to the run history");
        eprintln!("deploybench: {error}");
    }
    let failed_models = meta
        .models
        .iter()
        .filter(|outcome| outcome.status == "failed")
        .map(|outcome| format!("{}: {}", outcome.model, outcome.reason))
        .collect();
    tracing::info!(run = %run_id, complete = meta.complete, "run finished");
    Ok(RunOutcome {
        folder,
        complete: meta.complete,
        failed_models,
        failed_repetitions: meta.failures.len(),
    })
}

/// Builds the service, then measures each model in scenario order.
async fn measure_all(
    options: &RunOptions,
    scenario: &Scenario,
    run_id: &str,
    docker: Result<bollard::Docker, String>,
    progress: &Progress,
    shared: Shared,
) -> Result<(), String> {
    let step = progress.step("service", 0);
    step.message("building the static reference service with cargo");
    let root = options.workspace_root.clone();
    let binary = tokio::task::spawn_blocking(move || build_service_binary(&root))
        .await
        .map_err(|error| format!("the build task failed: {error}"))?
        .map_err(|error| RunError::Service(error.to_string()).to_string())?;
    step.finish(&format!(
        "{} ({:.1} MiB)",
        binary.path.display(),
        binary.size_bytes as f64 / 1048576.0
    ));

    let env = crate::models::ModelEnv {
        scenario: scenario.clone(),
        run_id: run_id.to_string(),
        workspace_root: options.workspace_root.clone(),
        cache: ArtifactCache::default_location(),
        docker: docker.as_ref().ok().cloned(),
    };
    for &kind in &scenario.models {
        if kind.uses_engine() {
            if let Err(reason) = &docker {
                record_outcome(&shared, kind.name(), "skipped", reason);
                progress.step(kind.name(), 0).finish(&format!("skipped: {reason}"));
                continue;
            }
        }
        let mut model = crate::models::create(kind);
        match measure_model::measure(model.as_mut(), &env, &binary, progress, &shared).await {
            Ok(()) => record_outcome(&shared, &model.label(), "measured", ""),
            Err(error) => {
                let message = error.to_string();
                tracing::error!(model = %kind, error = %message, "model failed");
                progress.step(kind.name(), 0).finish(&format!("failed: {message}"));
                record_outcome(&shared, &model.label(), "failed", &message);
                if matches!(error, crate::models::ModelError::EngineGone { .. }) {
                    // Every later container step would fail the same way.
                    return Err(message);
                }
            }
        }
    }
    if let Ok(docker) = &docker {
        measure_distribution(scenario, run_id, docker, &env, &binary, progress, &shared).await;
    }
    Ok(())
}

/// Pull latency from a local registry and the deploy cycle of each container model,
/// when the scenario enables them. A failure fails only that model's figure.
async fn measure_distribution(
    scenario: &Scenario,
    run_id: &str,
    docker: &bollard::Docker,
    env: &crate::models::ModelEnv,
    binary: &crate::artifacts::ServiceBinary,
    progress: &Progress,
    shared: &Shared,
) {
    use crate::measure::{deploy, pull};

    let containers = scenario
        .models
        .iter()
        .copied()
        .filter(|kind| matches!(kind, ModelKind::Distroless | ModelKind::FatImage));
    for kind in containers {
        if scenario.pull.enabled {
            let step = progress.step(&format!("pull {kind}"), 0);
            match pull::measure_pulls(docker, &env.cache, binary, kind, &scenario.pull, run_id, &|m: &str| {
                step.message(m)
            })
            .await
            {
                Ok(results) => {
                    let mut collected = shared.lock().expect("no code panics while holding the lock");
                    collected.samples.extend(results.samples);
                    collected.checks.extend(results.checks);
                    step.finish("pull latency measured");
                }
                Err(error) => {
                    tracing::error!(model = %kind, %error, "pull measurement failed");
                    step.finish(&format!("pull measurement failed: {error}"));
                }
            }
        }
        if scenario.deploy.enabled {
            let step = progress.step(&format!("deploy {kind}"), 0);
            let measured = deploy::measure_deploy_cycle(
                docker,
                &env.cache,
                binary,
                kind,
                &scenario.deploy,
                &scenario.limits,
                run_id,
                &|m: &str| step.message(m),
            )
            .await;
            match measured {
                Ok(samples) => {
                    shared
                        .lock()
                        .expect("no code panics while holding the lock")
                        .samples
                        .extend(samples);
                    step.finish("deploy cycle measured");
                }
                Err(error) => {
                    tracing::error!(model = %kind, %error, "deploy cycle measurement failed");
                    step.finish(&format!("deploy cycle measurement failed: {error}"));
                }
            }
        }
    }
}

/// Adds an outcome for each scenario model that a stopped run never finished, so that
/// the report lists it with the reason instead of leaving it out.
fn with_unfinished_models(
    mut outcomes: Vec<ModelOutcome>,
    models: &[ModelKind],
    incomplete_reason: Option<&str>,
) -> Vec<ModelOutcome> {
    let Some(reason) = incomplete_reason else { return outcomes };
    for kind in models {
        // Labels may carry a suffix, such as `vm (tcg)`.
        let recorded = outcomes.iter().any(|outcome| outcome.model.split(' ').next() == Some(kind.name()));
        if !recorded {
            outcomes.push(ModelOutcome {
                model: kind.name().to_string(),
                status: "not finished".to_string(),
                reason: format!("the run stopped first: {reason}"),
            });
        }
    }
    outcomes
}

fn record_outcome(shared: &Shared, model: &str, status: &str, reason: &str) {
    shared
        .lock()
        .expect("no code panics while holding the lock")
        .outcomes
        .push(ModelOutcome {
            model: model.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
        });
}

/// Writes samples, summaries, run.json and the report; any failure fails the run.
fn save(folder: &Path, samples: &[Sample], meta: &RunMeta) -> Result<(), RunError> {
    results::write_samples(folder, samples)?;
    results::write_summaries(folder, &results::summarize(samples))?;
    results::write_meta(folder, meta)?;
    crate::report::write_report(folder).map_err(|error| RunError::Report(error.to_string()))?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM with the signal's name.
async fn wait_for_interrupt() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_run_lists_unfinished_models() {
        let measured = ModelOutcome { model: "process".into(), status: "measured".into(), reason: String::new() };
        let vm = ModelOutcome { model: "vm (tcg)".into(), status: "measured".into(), reason: String::new() };
        let models = [ModelKind::Process, ModelKind::Vm, ModelKind::Distroless];

        let complete = with_unfinished_models(vec![measured.clone()], &models, None);
        assert_eq!(complete.len(), 1);

        let stopped = with_unfinished_models(vec![measured, vm], &models, Some("interrupted by SIGTERM"));
        assert_eq!(stopped.len(), 3);
        assert_eq!(stopped[2].model, "distroless");
        assert_eq!(stopped[2].status, "not finished");
        assert_eq!(stopped[2].reason, "the run stopped first: interrupted by SIGTERM");
    }
}
