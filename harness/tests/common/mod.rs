//! Helpers shared by the integration tests. Each test crate uses only some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Returns the deploybench checkout, which holds the reference service's sources.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Prints why a test is skipped outside CI. In CI, where every prerequisite is
/// installed, it fails the test with the reason instead.
pub fn skip_outside_ci(reason: &str) {
    assert!(std::env::var_os("CI").is_none(), "CI must be able to run this test: {reason}");
    eprintln!("skipped: {reason}");
}

/// Connects to the engine. Outside CI an unreachable engine returns `None` and prints
/// why, and in CI it fails the test.
pub async fn engine() -> Option<bollard::Docker> {
    match deploybench::engine::docker::connect().await {
        Ok(docker) => Some(docker),
        Err(error) => {
            skip_outside_ci(&format!("the Docker engine is unreachable: {error}"));
            None
        }
    }
}

/// Returns true when the test process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds the pid of a process named `name` that `parent` started.
pub fn child_named(parent: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (command, after_name) = stat.rsplit_once(')')?;
        let parent_pid: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
        (parent_pid == parent && command.ends_with(&format!("({name}"))).then_some(pid)
    })
}
