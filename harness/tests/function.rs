//! Runs the function model on the real Docker engine: the first request starts a
//! sandbox, the second finds it warm, and after the keep-warm window no sandbox is left.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::container::ListContainersOptions;
use deploybench::artifacts::{build_service_binary, ArtifactCache};
use deploybench::engine::docker::{owner_label_value, MANAGED_LABEL, OWNER_LABEL, RUN_LABEL};
use deploybench::models::function::{Outcome, StartKind};
use deploybench::models::{self, measure_function_patterns, InstanceHandle, ModelEnv};
use deploybench::results::Sample;
use deploybench::scenario::{ModelKind, Scenario};

const KEEP_WARM: Duration = Duration::from_secs(2);
/// Time after the keep-warm window for the stop (2 s timeout) and the removal.
const REMOVAL_ALLOWANCE: Duration = Duration::from_secs(5);

const BOOT_SCENARIO: &str = r#"
models = ["function"]
[boot]
repetitions = 1
timeout_s = 60
[memory]
settle_s = 1
[limits]
cpus = 0.5
memory_mib = 128
[function]
keep_warm_s = 2
max_instances = 2
"#;

const PATTERN_SCENARIO: &str = r#"
models = ["function"]
[boot]
repetitions = 1
timeout_s = 60
[memory]
settle_s = 1
[load]
rate = 50
pattern = ["spike", "bursty"]
spike_concurrency = 4
bursts = 2
burst_requests = 3
burst_gap_s = 2.5
[limits]
cpus = 0.5
memory_mib = 128
[function]
keep_warm_s = 2
max_instances = 2
queue_limit = 1
queue_timeout_s = 30
"#;

fn env(docker: &bollard::Docker, scenario: &str, test: &str) -> ModelEnv {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    ModelEnv {
        scenario: Scenario::parse(scenario, Path::new("function-test.toml")).unwrap(),
        run_id: format!("test-{}-{test}", std::process::id()),
        workspace_root: workspace,
        cache: ArtifactCache::default_location(),
        docker: Some(docker.clone()),
    }
}

/// Containers of the run, running or not, with their labels.
async fn run_containers(docker: &bollard::Docker, run_id: &str) -> Vec<HashMap<String, String>> {
    let options = ListContainersOptions::<String> {
        all: true,
        filters: HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={run_id}")])]),
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .map(|container| container.labels.unwrap_or_default())
        .collect()
}

fn values(samples: &[Sample], metric: &str, phase: &str) -> Vec<f64> {
    samples.iter().filter(|s| s.metric == metric && s.phase == phase).map(|s| s.value).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_then_warm_then_zero() {
    let Some(docker) = common::engine().await else { return };
    let env = env(&docker, BOOT_SCENARIO, "boot");
    let binary = build_service_binary(&env.workspace_root).unwrap();
    let mut model = models::create(ModelKind::Function);
    model.prepare(&env, &binary, &|message: &str| eprintln!("{message}")).await.unwrap();

    let instance = model.boot(&env, 0).await.unwrap();
    assert!(instance.address.ip().is_loopback(), "gateway on {}", instance.address);
    let phases = &instance.phases;
    let (create, start) = (phases.create.unwrap(), phases.start.unwrap());
    assert!(create <= start, "{phases:?}");
    assert!(start <= phases.first_200, "{phases:?}");

    let status = deploybench::measure::boot::health_status(instance.address).await.unwrap();
    assert_eq!(status, 200);
    let InstanceHandle::Function(function) = &instance.handle else {
        panic!("the function model boots a gateway");
    };
    let gateway = function.gateway();
    let records = gateway.records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(matches!(records[0].start, StartKind::Cold(_)), "first request is cold: {records:?}");
    assert_eq!(records[1].start, StartKind::Warm, "second request is warm: {records:?}");
    assert_eq!(records[1].outcome, Outcome::Served { status: 200 });
    let (cold, warm) = (records[0].handler.unwrap(), records[1].handler.unwrap());
    assert!(warm < cold, "warm {warm:?} is not faster than cold {cold:?}");

    let containers = run_containers(&docker, &env.run_id).await;
    assert_eq!(containers.len(), 1, "one sandbox while warm");
    assert_eq!(containers[0].get(MANAGED_LABEL).map(String::as_str), Some("true"));
    assert_eq!(containers[0].get(OWNER_LABEL), Some(&owner_label_value()));
    let accounting = model.accounting(&instance).await.unwrap();
    assert!(accounting.instance_bytes > 64 * 1024, "{accounting:?}");
    assert!(accounting.instance_bytes < 128 * 1024 * 1024, "above the memory limit: {accounting:?}");
    assert!(accounting.runtime_bytes > 0, "the shim has no PSS: {accounting:?}");

    tokio::time::sleep(KEEP_WARM + REMOVAL_ALLOWANCE).await;
    let left = run_containers(&docker, &env.run_id).await;
    assert!(left.is_empty(), "sandboxes outlived the keep-warm window: {left:?}");
    assert_eq!(gateway.stats().instances, 0);
    assert_eq!(gateway.stats().counters.expired, 1);

    model.stop(&env, instance).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_scale_out_and_back_to_zero() {
    let Some(docker) = common::engine().await else { return };
    let env = env(&docker, PATTERN_SCENARIO, "patterns");
    let binary = build_service_binary(&env.workspace_root).unwrap();

    let samples = measure_function_patterns(&env, &binary, &|message: &str| eprintln!("{message}")).await.unwrap();

    assert_eq!(values(&samples, "cold_start_ms", "handler").len(), 1);
    assert_eq!(values(&samples, "warm_ms", "").len(), 10);
    let cold = values(&samples, "cold_start_ms", "handler")[0];
    let warm_max = values(&samples, "warm_ms", "").into_iter().fold(0.0, f64::max);
    assert!(warm_max < cold, "every warm request is faster than the cold one: {warm_max} vs {cold}");
    assert_eq!(values(&samples, "gateway_overhead_ms", "").len(), 1);
    assert_eq!(values(&samples, "gateway_path_ms", "direct").len(), 200);

    // Four requests at once: two start the two allowed instances, one waits, one is rejected.
    assert_eq!(values(&samples, "peak_instances", "spike"), vec![2.0]);
    assert_eq!(values(&samples, "cold_starts", "spike"), vec![2.0]);
    assert_eq!(values(&samples, "queue_full_503", "spike"), vec![1.0]);
    assert_eq!(values(&samples, "pattern_errors", "spike_503"), vec![1.0]);
    assert_eq!(values(&samples, "pattern_latency_ms", "spike").len(), 3);

    // The gap outlasts the keep-warm window, so each burst starts cold again.
    let bursty_cold = values(&samples, "cold_starts", "bursty")[0];
    assert!(bursty_cold >= 2.0, "{bursty_cold} cold starts over 2 bursts");
    assert!(!values(&samples, "instances", "bursty").is_empty());
    assert_eq!(values(&samples, "instances", "bursty").last(), Some(&0.0), "the fleet ends at zero");

    assert_eq!(values(&samples, "live_sandboxes", "idle_after_window"), vec![0.0, 0.0]);
    assert_eq!(values(&samples, "memory_mib", "idle_after_window"), vec![0.0, 0.0]);
    assert!(values(&samples, "gb_seconds", "bursty")[0] > 0.0);
    let left = run_containers(&docker, &env.run_id).await;
    assert!(left.is_empty(), "sandboxes outlived the measurement: {left:?}");
}
