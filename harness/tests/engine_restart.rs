//! A Docker daemon restart in the middle of a run fails the repetition it hits, and the
//! run records that failure with its reason. The run then waits for the engine, goes
//! on with the next repetitions, and leaves no container behind. A daemon that stays
//! away stops the run, which still saves its results, marked incomplete.
//!
//! The test restarts the machine's Docker daemon, so it runs only as root and only when
//! the engine runs no container at all: it never stops anyone else's work.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::container::ListContainersOptions;
use bollard::Docker;

/// The two tests stop the same daemon, so they take turns.
static DAEMON: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SCENARIO: &str = "name = \"engine-restart\"\nmodels = [\"distroless\"]\n\
    [boot]\nrepetitions = 5\n[memory]\nsettle_s = 3\n[load]\nrate = 20\nduration_s = 1\nwarmup_s = 0\n";

/// Connects when this test may restart the engine; otherwise skips outside CI and
/// fails in CI, with the reason.
async fn engine_to_restart() -> Option<Docker> {
    if !common::is_root() {
        common::skip_outside_ci("restarting the Docker daemon needs root");
        return None;
    }
    let docker = common::engine().await?;
    let running = docker.list_containers::<String>(None).await.unwrap();
    if !running.is_empty() {
        common::skip_outside_ci(&format!("the engine runs {} container(s); a restart would stop them", running.len()));
        return None;
    }
    Some(docker)
}

/// Stops the daemon with SIGTERM, as `systemctl restart` does, and waits for its exit.
fn stop_daemon() {
    let pid: libc::pid_t = std::fs::read_to_string("/var/run/docker.pid")
        .expect("dockerd writes /var/run/docker.pid")
        .trim()
        .parse()
        .expect("the pid file holds a number");
    // SAFETY: kill(2) with a pid read from dockerd's own pid file.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let started = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "dockerd did not exit within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the daemon again with the project's setup script, which waits until it responds.
fn start_daemon() {
    let status = Command::new("bash")
        .arg(common::workspace().join("scripts/setup.sh"))
        .stdout(Stdio::null())
        .status()
        .expect("bash runs the setup script");
    assert!(
        status.success(),
        "scripts/setup.sh could not start the Docker daemon again"
    );
}

/// Starts the daemon on drop, so that a failed assertion does not leave the machine
/// without an engine for the tests that follow.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            start_daemon();
        }
    }
}

/// Starts `deploybench run` on [`SCENARIO`], with `wait_s` as the engine wait when given.
fn spawn_run(folder: &Path, runs: &Path, wait_s: Option<u64>) -> std::process::Child {
    let scenario = folder.join("engine-restart.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_deploybench"));
    command
        .current_dir(common::workspace())
        .args(["run", "--quiet", "--output"])
        .arg(runs)
        .arg(&scenario);
    if let Some(seconds) = wait_s {
        command.env("DEPLOYBENCH_ENGINE_WAIT_S", seconds.to_string());
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until the container of `repetition` exists, then past its boot (about half a
/// second here) into its 3 s settle time.
async fn wait_for_idle_instance(docker: &Docker, repetition: u32) {
    let suffix = format!("-distroless-{repetition}");
    let started = Instant::now();
    loop {
        let containers = docker.list_containers::<String>(None).await.unwrap();
        let names = containers.iter().flat_map(|container| container.names.iter().flatten());
        if names
            .into_iter()
            .any(|name| name.starts_with("/deploybench-") && name.ends_with(&suffix))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run did not reach repetition {repetition} in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_gone_stops_run() {
    let _turn = DAEMON.lock().await;
    let Some(docker) = engine_to_restart().await else { return };
    let folder = tempfile::tempdir().unwrap();
    let runs = folder.path().join("runs");
    let child = spawn_run(folder.path(), &runs, Some(3));
    wait_for_idle_instance(&docker, 0).await;

    let guard = RestartGuard;
    tokio::task::spawn_blocking(stop_daemon).await.unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    tokio::task::spawn_blocking(start_daemon).await.unwrap();
    drop(guard);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let meta = deploybench::results::read_meta(&run).unwrap();
    assert!(!meta.complete);
    let reason = meta.incomplete_reason.unwrap_or_default();
    assert!(
        reason.contains("did not return within 3 s") && reason.contains("scripts/setup.sh"),
        "{reason}"
    );
    assert_eq!(meta.models[0].status, "failed", "{:?}", meta.models);
    assert_eq!(meta.failures.len(), 1, "{:?}", meta.failures);
    assert_eq!(meta.failures[0].repetition, 0);
    assert!(
        meta.failures[0].reason.contains("did not return"),
        "{:?}",
        meta.failures
    );
    // The boot phases measured before the engine went away are kept.
    let samples = deploybench::results::read_samples(&run).unwrap();
    assert!(samples
        .iter()
        .any(|sample| sample.metric == "boot_ms" && sample.phase == "first_200"));
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.to_lowercase().contains("incomplete"), "{report}");

    // The engine kept the stopped container; the next run or `deploybench clean`
    // removes it, since its run is over.
    let clean = Command::new(env!("CARGO_BIN_EXE_deploybench"))
        .arg("clean")
        .output()
        .unwrap();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert!(
        String::from_utf8_lossy(&clean.stdout).starts_with("removed 1 container(s)"),
        "{clean:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_restart_fails_one_repetition() {
    let _turn = DAEMON.lock().await;
    let Some(docker) = engine_to_restart().await else { return };
    let folder = tempfile::tempdir().unwrap();
    let runs = folder.path().join("runs");
    let child = spawn_run(folder.path(), &runs, None);

    // Restart the daemon while the second repetition's instance idles.
    wait_for_idle_instance(&docker, 1).await;
    let guard = RestartGuard;
    tokio::task::spawn_blocking(|| {
        stop_daemon();
        start_daemon();
    })
    .await
    .unwrap();
    drop(guard);

    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A run with a failed repetition completes, lists the failure and exits 1.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("repetition(s) failed"), "{stderr}");

    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let meta = deploybench::results::read_meta(&run).unwrap();
    assert!(
        meta.complete,
        "the run goes on after the engine returns: {:?}",
        meta.incomplete_reason
    );
    let hit: Vec<_> = meta
        .failures
        .iter()
        .filter(|failure| failure.reason.contains("Docker engine"))
        .collect();
    assert_eq!(hit.len(), 1, "one repetition names the engine: {:?}", meta.failures);
    assert_eq!(hit[0].repetition, 1, "{:?}", meta.failures);
    assert_eq!(meta.models[0].status, "measured", "{:?}", meta.models);

    // The repetitions after the restart were measured.
    let samples = deploybench::results::read_samples(&run).unwrap();
    let measured: Vec<u32> = samples
        .iter()
        .filter(|sample| sample.metric == "memory_mib" && sample.phase == "total")
        .map(|sample| sample.repetition)
        .collect();
    assert!(
        measured.contains(&2) && measured.contains(&4),
        "repetitions measured: {measured:?}"
    );
    assert!(
        !measured.contains(&1),
        "the failed repetition has no memory sample: {measured:?}"
    );
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("### Failed repetitions"), "{report}");

    let docker = deploybench::engine::docker::connect().await.unwrap();
    let options = ListContainersOptions::<String> {
        all: true,
        filters: [(
            "label".to_string(),
            vec![format!(
                "io.deploybench.run={}",
                run.file_name().unwrap().to_string_lossy()
            )],
        )]
        .into(),
        ..Default::default()
    };
    let left = docker.list_containers(Some(options)).await.unwrap();
    assert!(left.is_empty(), "containers outlived the run: {left:?}");
}
