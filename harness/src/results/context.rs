//! The context a run records in `run.json`: host, engine, revision and scenario.

use serde::{Deserialize, Serialize};

/// The contents of `run.json` for one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMeta {
    pub deploybench_version: String,
    /// `git describe --always --dirty` of the deploybench checkout, when there is one.
    pub git_revision: Option<String>,
    pub scenario_name: String,
    pub scenario_path: String,
    /// The scenario file verbatim.
    pub scenario_text: String,
    /// RFC 3339 UTC times.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// False when the run was interrupted or failed before every step finished.
    pub complete: bool,
    /// Reason the run is incomplete, when it is.
    pub incomplete_reason: Option<String>,
    pub host: HostContext,
    pub engine: Option<EngineContext>,
    /// QEMU's version line and the accelerator the vm model ran with, when it ran.
    #[serde(default)]
    pub qemu: Option<QemuContext>,
    pub models: Vec<ModelOutcome>,
    pub artifacts: Vec<ArtifactRecord>,
    /// Run-time checks, such as the hardening of the distroless instance.
    #[serde(default)]
    pub checks: Vec<CheckRecord>,
    /// Repetitions that failed, each with the step that failed and why.
    #[serde(default)]
    pub failures: Vec<FailureRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostContext {
    pub cpu_model: String,
    pub cpu_count: usize,
    pub memory_total_bytes: u64,
    pub kernel: String,
    pub os: String,
    /// "v1" (legacy or hybrid hierarchy, as Docker sees it) or "v2".
    pub cgroup_version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineContext {
    pub docker_version: String,
    pub api_version: String,
    pub default_runtime: String,
    pub runtimes: Vec<String>,
    pub storage_driver: String,
    pub cgroup_driver: String,
    pub cgroup_version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QemuContext {
    pub version: String,
    /// "kvm" or "tcg"; TCG figures are inflated by emulation.
    pub accelerator: String,
}

/// Outcome of one deployment model in the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelOutcome {
    pub model: String,
    /// "measured", "skipped" or "failed".
    pub status: String,
    /// Reason the model was skipped or failed, empty when it was measured.
    pub reason: String,
}

/// The artifact a model booted from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub model: String,
    pub name: String,
    pub size_bytes: u64,
    pub reused: bool,
    pub recipe_hash: String,
}

/// One run-time check and its result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRecord {
    pub model: String,
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// One repetition of a model that failed; its samples are missing from the figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    pub model: String,
    pub repetition: u32,
    /// "boot", "measure" or "stop".
    pub stage: String,
    pub reason: String,
}

impl HostContext {
    /// Reads the host's CPU, memory, kernel, OS and cgroup version from /proc and /sys.
    pub fn detect() -> HostContext {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let memory_total_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| meminfo_kib(&text, "MemTotal"))
            .map_or(0, |kib| kib * 1024);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                    .map(|name| name.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        HostContext {
            cpu_model,
            cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_total_bytes,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_string())
                .unwrap_or_default(),
            os,
            cgroup_version: crate::measure::cgroup::host_cgroup_version().to_string(),
        }
    }
}

/// Reads one field of /proc/meminfo in KiB.
pub fn meminfo_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_field_parsed() {
        let text = "MemTotal:       24567892 kB\nMemFree:        1000 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(meminfo_kib(text, "MemTotal"), Some(24_567_892));
        assert_eq!(meminfo_kib(text, "MemAvailable"), Some(2000));
        assert_eq!(meminfo_kib(text, "Mem"), None);
    }

    #[test]
    fn host_context_detected() {
        let host = HostContext::detect();
        assert!(host.cpu_count >= 1);
        assert!(host.memory_total_bytes > 0);
        assert!(!host.kernel.is_empty());
    }
}
