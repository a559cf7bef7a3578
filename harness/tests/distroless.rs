//! Boots the distroless model once on the real Docker engine and checks its figures
//! and its hardening.

mod common;

use std::path::Path;

use deploybench::artifacts::{build_service_binary, ArtifactCache};
use deploybench::measure::hardening;
use deploybench::models::{self, InstanceHandle, ModelEnv};
use deploybench::scenario::{ModelKind, Scenario};

const SCENARIO: &str = r#"
models = ["distroless"]
[boot]
repetitions = 1
timeout_s = 60
[limits]
cpus = 0.5
memory_mib = 128
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distroless_boots_hardened() {
    let Some(docker) = common::engine().await else { return };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let scenario = Scenario::parse(SCENARIO, Path::new("distroless-test.toml")).unwrap();
    let env = ModelEnv {
        scenario,
        run_id: format!("test-{}", std::process::id()),
        workspace_root: workspace.clone(),
        cache: ArtifactCache::default_location(),
        docker: Some(docker.clone()),
    };
    let binary = build_service_binary(&workspace).unwrap();
    let mut model = models::create(ModelKind::Distroless);
    let artifact = model.prepare(&env, &binary, &|message: &str| eprintln!("{message}")).await.unwrap();
    assert!(artifact.size_bytes < 10 * 1024 * 1024, "image is {} bytes", artifact.size_bytes);

    // The service's own port taken on the host does not stop the boot: the engine
    // publishes on a free port of its choosing.
    let taken = std::net::TcpListener::bind(("127.0.0.1", deploybench::artifacts::SERVICE_PORT)).ok();
    let instance = model.boot(&env, 0).await.unwrap();
    if taken.is_some() {
        assert_ne!(instance.address.port(), deploybench::artifacts::SERVICE_PORT);
    }
    drop(taken);
    let phases = &instance.phases;
    let create = phases.create.expect("containers record the create phase");
    let start = phases.start.expect("containers record the start phase");
    assert!(create <= start, "{phases:?}");
    assert!(start <= phases.first_200, "{phases:?}");
    assert!(phases.first_200 < std::time::Duration::from_secs(60), "{phases:?}");
    assert!(instance.address.ip().is_loopback(), "published on {}", instance.address);

    let InstanceHandle::Container { id, pid, .. } = &instance.handle else {
        panic!("distroless boots a container");
    };
    let (id, pid) = (id.clone(), *pid);
    let accounting = model.accounting(&instance).await.unwrap();
    assert!(accounting.instance_bytes > 64 * 1024, "{accounting:?}");
    assert!(accounting.instance_bytes < 128 * 1024 * 1024, "above the memory limit: {accounting:?}");
    assert!(accounting.runtime_bytes > 0, "the shim has no PSS: {accounting:?}");

    // The host's view of the service process.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|line| line.starts_with("Uid:")).unwrap();
    assert_eq!(uid_line.split_whitespace().nth(1), Some("65532"), "{uid_line}");

    // The instance's own view, through the selfcheck run inside it.
    let line = hardening::run_selfcheck(&docker, &id).await.unwrap();
    let report = hardening::parse_selfcheck(&line);
    assert_eq!(report.get("uid").map(String::as_str), Some("65532"), "{line}");
    assert_eq!(report.get("root_writable").map(String::as_str), Some("false"), "{line}");
    assert_eq!(report.get("tmp_writable").map(String::as_str), Some("true"), "{line}");
    for check in hardening::distroless_checks("distroless", &report) {
        assert!(check.passed, "{}: {}", check.check, check.detail);
    }

    let status = deploybench::measure::boot::health_status(instance.address).await.unwrap();
    assert_eq!(status, 200);

    model.stop(&env, instance).await.unwrap();
    let gone = docker.inspect_container(&id, None).await;
    assert!(gone.is_err(), "container {id} outlived stop");
}
