//! A run whose output folder is on a full disk fails with exit 2 and an error that
//! names the disk and the fix. It leaves no half-written file, so every file in the
//! run folder is complete and no temporary file remains.
//!
//! The disk is a small tmpfs mounted for the test, so the test needs root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const SCENARIO: &str = "name = \"full-disk\"\nmodels = [\"process\"]\n\
    [boot]\nrepetitions = 2\n[load]\nrate = 20\nduration_s = 1\nwarmup_s = 0\n";

/// A tmpfs of a fixed size, unmounted on drop.
struct SmallDisk {
    mount_point: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(kib: u32) -> Result<SmallDisk, String> {
        let mount_point = tempfile::tempdir().map_err(|error| error.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(mount_point.path())
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(format!("mount failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(SmallDisk { mount_point })
    }

    fn path(&self) -> &Path {
        self.mount_point.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount_point.path()).status();
    }
}

/// Runs the scenario with its output on a tmpfs of `kib` KiB; returns the exit code,
/// stderr and the run folder.
fn run_on_small_disk(kib: u32) -> Option<(Option<i32>, String, PathBuf, SmallDisk)> {
    let disk = match SmallDisk::mount(kib) {
        Ok(disk) => disk,
        Err(reason) => {
            common::skip_outside_ci(&reason);
            return None;
        }
    };
    let scenario = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(scenario.path(), SCENARIO).unwrap();
    let runs = disk.path().join("runs");
    let output = Command::new(env!("CARGO_BIN_EXE_deploybench"))
        .current_dir(common::workspace())
        .args(["run", "--quiet", "--output"])
        .arg(&runs)
        .arg(scenario.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let folder = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    Some((output.status.code(), stderr, folder, disk))
}

/// Asserts that every file of the run folder is whole and that no temporary file is left.
fn assert_no_partial_file(folder: &Path) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file left: {}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        match path.extension().and_then(|extension| extension.to_str()) {
            Some("json") => {
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
            }
            Some("csv") => assert!(bytes.ends_with(b"\n"), "{name} ends mid-line"),
            Some("png") => assert!(bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82]), "{name} lacks its IEND chunk"),
            Some("svg") => assert!(String::from_utf8_lossy(&bytes).trim_end().ends_with("</svg>"), "{name} is cut"),
            Some("md") => assert!(!bytes.is_empty(), "{name} is empty"),
            _ => panic!("unexpected file {name}"),
        }
    }
}

#[test]
fn full_disk_run_fails_cleanly() {
    // 8 KiB (two pages) fills at run.json, 64 KiB while the plots are drawn.
    for kib in [8, 64] {
        let Some((code, stderr, folder, _disk)) = run_on_small_disk(kib) else { return };
        assert_eq!(code, Some(2), "{kib} KiB: {stderr}");
        assert!(stderr.contains("No space left on device"), "{kib} KiB: {stderr}");
        assert!(stderr.contains("is full: free space there, or write elsewhere with --output"), "{kib} KiB: {stderr}");
        assert_no_partial_file(&folder);
        if kib == 8 {
            assert!(stderr.contains("cannot save the results"), "{stderr}");
            assert!(!folder.join("run.json").exists(), "run.json must be whole or absent");
        }
    }
}
