//! Boot time to the first 200 from /health, per deployment model whose
//! prerequisites are present: each iteration boots an instance, waits for its first
//! 200, and stops it; only the boot itself is timed.
//!
//! Models that cannot run here are skipped with the reason printed. The `vm` model
//! boots in about a minute under emulation, so it runs only with DEPLOYBENCH_BENCH_VM=1.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

use deploybench::artifacts::{build_service_binary, ArtifactCache, ServiceBinary};
use deploybench::models::{self, DeploymentModel, ModelEnv};
use deploybench::scenario::{ModelKind, Scenario};

const SCENARIO: &str = "models = [\"process\", \"distroless\", \"fat-image\"]\n[boot]\ntimeout_s = 600\n";

struct Setup {
    runtime: tokio::runtime::Runtime,
    env: ModelEnv,
    binary: ServiceBinary,
}

fn setup() -> Result<Setup, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ has a parent").to_path_buf();
    let runtime = tokio::runtime::Runtime::new().map_err(|error| format!("cannot start tokio: {error}"))?;
    let docker = runtime.block_on(deploybench::engine::docker::connect()).ok();
    let scenario = Scenario::parse(SCENARIO, Path::new("bench.toml")).map_err(|error| error.to_string())?;
    let binary = build_service_binary(&workspace).map_err(|error| error.to_string())?;
    let env = ModelEnv {
        scenario,
        run_id: format!("bench-{}", std::process::id()),
        workspace_root: workspace,
        cache: ArtifactCache::default_location(),
        docker,
    };
    Ok(Setup { runtime, env, binary })
}

/// Why a model cannot run here, or `None` when it can.
fn skip_reason(kind: ModelKind, setup: &Setup) -> Option<String> {
    match kind {
        ModelKind::Process => None,
        ModelKind::Vm if std::env::var_os("DEPLOYBENCH_BENCH_VM").is_none() => {
            Some("a VM boot takes about a minute under emulation; set DEPLOYBENCH_BENCH_VM=1 to include it".into())
        }
        ModelKind::Vm => None,
        _ if setup.env.docker.is_none() => Some("the Docker engine is not reachable; run scripts/setup.sh".into()),
        _ => None,
    }
}

fn bench_boots(c: &mut Criterion) {
    let setup = match setup() {
        Ok(setup) => setup,
        Err(reason) => {
            eprintln!("boot benchmarks skipped: {reason}");
            return;
        }
    };
    let mut group = c.benchmark_group("boot_to_first_200");
    // Flat sampling: every sample is one boot or a few, never the growing counts of
    // linear sampling, which would mean hundreds of container boots.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));

    for kind in ModelKind::ALL {
        if let Some(reason) = skip_reason(kind, &setup) {
            eprintln!("boot_to_first_200/{kind} skipped: {reason}");
            continue;
        }
        let mut model: Box<dyn DeploymentModel> = models::create(kind);
        let prepared = setup.runtime.block_on(model.prepare(&setup.env, &setup.binary, &|_: &str| {}));
        if let Err(error) = prepared {
            eprintln!("boot_to_first_200/{kind} skipped: {error}");
            continue;
        }
        let mut repetition = 0;
        group.bench_function(kind.name(), |bencher| {
            bencher.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let instance = setup
                        .runtime
                        .block_on(model.boot(&setup.env, repetition))
                        .unwrap_or_else(|error| panic!("boot of {kind} failed: {error}"));
                    repetition += 1;
                    total += instance.phases.first_200;
                    setup
                        .runtime
                        .block_on(model.stop(&setup.env, instance))
                        .unwrap_or_else(|error| panic!("stop of {kind} failed: {error}"));
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_boots);
criterion_main!(benches);
