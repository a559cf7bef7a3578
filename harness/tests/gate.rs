//! The regression gate end to end: real runs of the process model, a baseline built
//! from them, a deliberately slower boot that `compare` must fail, and a run compared
//! with itself that must pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use deploybench::runner::{self, RunOptions};

/// Writes a scenario file; every file names the same scenario, so all runs compare.
fn scenario(folder: &Path, file_name: &str, ready_delay_ms: u64) -> PathBuf {
    let path = folder.join(format!("{file_name}.toml"));
    let text = format!(
        "name = \"gate\"\nmodels = [\"process\"]\n\
         [boot]\nrepetitions = 8\n\
         [memory]\nsettle_s = 0\n\
         [load]\nrate = 50\nduration_s = 1\nwarmup_s = 0\n\
         [service]\nready_delay_ms = {ready_delay_ms}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn run(folder: &Path, scenario_path: PathBuf) -> PathBuf {
    let options = RunOptions {
        scenario_path,
        output_root: folder.join("runs"),
        workspace_root: Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf(),
        quiet: true,
    };
    let outcome = runner::run(&options).await.unwrap();
    assert!(outcome.complete, "run incomplete: {:?}", outcome.failed_models);
    outcome.folder
}

/// Runs `deploybench compare` and returns its exit code and stdout.
fn compare(baseline: &Path, run: &Path) -> (i32, String) {
    let (code, stdout, _) = compare_output(baseline, run);
    (code, stdout)
}

/// Runs `deploybench compare` and returns its exit code, stdout and stderr.
fn compare_output(baseline: &Path, run: &Path) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deploybench"))
        .args(["compare", "--baseline"])
        .arg(baseline)
        .arg(run)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// Copies a run folder and lets `change` edit its run.json and samples.csv.
fn altered_copy(run: &Path, to: &Path, change: impl FnOnce(&mut serde_json::Value, &mut String)) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let mut samples = std::fs::read_to_string(run.join("samples.csv")).unwrap();
    change(&mut meta, &mut samples);
    std::fs::write(to.join("run.json"), serde_json::to_string(&meta).unwrap()).unwrap();
    std::fs::write(to.join("samples.csv"), samples).unwrap();
    to.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slower_boot_fails_gate() {
    let folder = tempfile::tempdir().unwrap();
    let normal = scenario(folder.path(), "normal", 0);
    let slowed = scenario(folder.path(), "slowed", 300);
    let first = run(folder.path(), normal.clone()).await;
    // Run folders are named by the second they start in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = run(folder.path(), normal).await;
    let slow = run(folder.path(), slowed).await;

    let baseline = folder.path().join("baseline.json");
    let status = Command::new(env!("CARGO_BIN_EXE_deploybench"))
        .args(["baseline", "save"])
        .arg(&first)
        .arg(&second)
        .arg("--output")
        .arg(&baseline)
        .status()
        .unwrap();
    assert!(status.success());

    let (code, summary) = compare(&baseline, &slow);
    assert_eq!(code, 1, "a 300 ms slower boot must fail the gate:\n{summary}");
    assert!(summary.contains("### Regressed"), "{summary}");
    assert!(summary.contains("boot_ms"), "{summary}");
    assert!(slow.join("bencher.json").exists());

    // A run compared with a baseline made of itself has nothing to report.
    let own = folder.path().join("own.json");
    let status = Command::new(env!("CARGO_BIN_EXE_deploybench"))
        .args(["baseline", "save"])
        .arg(&first)
        .arg("--output")
        .arg(&own)
        .status()
        .unwrap();
    assert!(status.success());
    let (code, summary) = compare(&own, &first);
    assert_eq!(code, 0, "a run compared with itself must pass:\n{summary}");
    assert!(summary.contains("0 regressed"), "{summary}");

    // Runs that cannot pass or fail the gate are errors, with the reason.
    let incomplete = altered_copy(&first, &folder.path().join("incomplete"), |meta, _| {
        meta["complete"] = false.into();
        meta["incomplete_reason"] = "interrupted by SIGINT".into();
    });
    let (code, _, stderr) = compare_output(&baseline, &incomplete);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is incomplete (interrupted by SIGINT)"), "{stderr}");
    let status = Command::new(env!("CARGO_BIN_EXE_deploybench"))
        .args(["baseline", "save"])
        .arg(&incomplete)
        .arg("--output")
        .arg(folder.path().join("from-incomplete.json"))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "a baseline from an incomplete run must be rejected");

    let other = altered_copy(&first, &folder.path().join("other"), |meta, _| meta["scenario_name"] = "quick".into());
    let (code, _, stderr) = compare_output(&baseline, &other);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("ran scenario \"quick\", but the baseline comes from scenario \"gate\""), "{stderr}");

    let empty = altered_copy(&first, &folder.path().join("empty"), |_, samples| {
        *samples = samples.lines().next().unwrap().to_string() + "\n";
    });
    let (code, _, stderr) = compare_output(&baseline, &empty);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("gated figure(s) of the baseline"), "{stderr}");

    // Every run appended its summaries to the history beside the runs folder.
    let history = std::fs::read_to_string(folder.path().join("history.csv")).unwrap();
    assert_eq!(history.lines().filter(|line| line.contains("boot_ms,first_200")).count(), 3, "{history}");
}
