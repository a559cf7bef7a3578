//! A run interrupted with SIGINT stops its instances, leaves no container behind, and
//! still writes its partial results, marked incomplete.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::container::ListContainersOptions;

const SCENARIO: &str = "name = \"interrupted\"\nmodels = [\"distroless\"]\n\
    [boot]\nrepetitions = 50\n[memory]\nsettle_s = 0\n[load]\nrate = 20\nduration_s = 1\nwarmup_s = 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_leaves_nothing_behind() {
    let Some(docker) = common::engine().await else { return };
    let folder = tempfile::tempdir().unwrap();
    let runs = folder.path().join("runs");
    let child = spawn_run(folder.path(), SCENARIO, &[]);

    // Wait until the run has a container of its own, then interrupt it mid-boot.
    let owner = owner_of(child.id());
    let run_filter = || ListContainersOptions::<String> {
        all: true,
        filters: [("label".to_string(), vec![format!("io.deploybench.owner={owner}")])].into(),
        ..Default::default()
    };
    let started = Instant::now();
    loop {
        let containers = docker.list_containers(Some(run_filter())).await.unwrap();
        if !containers.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the run started no container within 300 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "an interrupted run exits 1: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    let left = docker.list_containers(Some(run_filter())).await.unwrap();
    assert!(left.is_empty(), "containers outlived the interrupted run: {left:?}");

    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let meta = deploybench::results::read_meta(&run).unwrap();
    assert!(!meta.complete);
    assert!(meta.incomplete_reason.unwrap().contains("SIGINT"));
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.to_lowercase().contains("incomplete"), "the report must say the run is incomplete");
}

/// Starts `deploybench run --quiet` on `scenario` with its runs under `folder/runs`
/// and stderr piped, adding the `environment` variables.
fn spawn_run(folder: &Path, scenario: &str, environment: &[(&str, &Path)]) -> Child {
    let path = folder.join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_deploybench"));
    command.current_dir(common::workspace()).args(["run", "--quiet", "--output"]).arg(folder.join("runs")).arg(&path);
    for (name, value) in environment {
        command.env(name, value);
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// The owner label value of a running process, as the harness writes it.
fn owner_of(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, after_name) = stat.rsplit_once(')').unwrap();
    format!("{pid}:{}", after_name.split_whitespace().nth(19).unwrap())
}

const PULL_SCENARIO: &str = "name = \"interrupted-pull\"\nmodels = [\"distroless\"]\n\
    [boot]\nrepetitions = 1\n[memory]\nsettle_s = 0\n[load]\nrate = 20\nduration_s = 1\nwarmup_s = 0\n\
    [pull]\nenabled = true\nrepetitions = 3\nprofiles = [{ name = \"slow\", bandwidth_mbit = 2, delay_ms = 1 }]\n";

/// SIGTERM while a pull runs shaped: the registry process ends, its folder goes, and
/// the qdisc leaves the loopback device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_shaped_pull() {
    if !common::is_root() {
        common::skip_outside_ci("shaping needs root");
        return;
    }
    let Some(_docker) = common::engine().await else { return };
    let folder = tempfile::tempdir().unwrap();
    let runs = folder.path().join("runs");
    let temp = folder.path().join("tmp");
    std::fs::create_dir(&temp).unwrap();
    let child = spawn_run(folder.path(), PULL_SCENARIO, &[("TMPDIR", temp.as_path())]);

    // Wait until a pull runs shaped, then stop the run the way a service manager does.
    let started = Instant::now();
    let registry = loop {
        if let Some(registry) = common::child_named(child.id(), "docker-registry") {
            if loopback_qdiscs().contains("dbe1:") {
                break registry;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no shaped pull within 300 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "an interrupted run exits 1: {stderr}");

    assert!(!Path::new(&format!("/proc/{registry}")).exists(), "the registry process {registry} outlived the run");
    let qdiscs = loopback_qdiscs();
    assert!(!qdiscs.contains("dbe1:"), "the shaping outlived the run: {qdiscs}");
    let left: Vec<_> = std::fs::read_dir(&temp).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert!(left.is_empty(), "temporary files outlived the run: {left:?}");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let meta = deploybench::results::read_meta(&run).unwrap();
    assert!(meta.incomplete_reason.unwrap_or_default().contains("SIGTERM"));
}

fn loopback_qdiscs() -> String {
    let output = Command::new("tc").args(["qdisc", "show", "dev", "lo"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A harness killed with SIGKILL runs no cleanup; the kernel still ends the service
/// process it started, because the child asked for a parent-death signal.
#[test]
fn sigkill_leaves_no_service_process() {
    let folder = tempfile::tempdir().unwrap();
    let scenario = "models = [\"process\"]\n[boot]\nrepetitions = 50\n[memory]\nsettle_s = 2\n";
    let mut child = spawn_run(folder.path(), scenario, &[]);
    let started = Instant::now();
    let service = loop {
        if let Some(pid) = common::child_named(child.id(), "refservice") {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no service process within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    while Path::new(&format!("/proc/{service}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{service}/stat")).unwrap_or_default();
        if state.contains(") Z ") {
            break; // Exited; only the reaping by init remains.
        }
        assert!(killed.elapsed() < Duration::from_secs(5), "service {service} outlived its killed harness");
        std::thread::sleep(Duration::from_millis(20));
    }
}

