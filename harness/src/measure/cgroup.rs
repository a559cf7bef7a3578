//! Memory and CPU accounting of a container's cgroup, on cgroup v1 and v2.

use std::path::{Path, PathBuf};
use std::time::Duration;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find the {controller} cgroup of process {pid} in /proc/{pid}/cgroup")]
    NotFound { pid: u32, controller: &'static str },
    #[error("cannot parse {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
}

/// "v2" when the unified hierarchy alone is mounted, else "v1" (legacy or hybrid,
/// where Docker places containers in the v1 controllers).
pub fn host_cgroup_version() -> &'static str {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    }
}

/// The cgroup folders that account for one process and everything in its cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    V1 { memory: PathBuf, cpuacct: PathBuf },
    V2 { path: PathBuf },
}

impl Cgroup {
    /// Finds the cgroup of `pid` from /proc/PID/cgroup.
    pub fn of_pid(pid: u32) -> Result<Cgroup, CgroupError> {
        let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = read(&path)?;
        Cgroup::from_proc_text(&text, pid, Path::new(CGROUP_ROOT), host_cgroup_version())
    }

    fn from_proc_text(text: &str, pid: u32, root: &Path, version: &str) -> Result<Cgroup, CgroupError> {
        // Lines read "ID:CONTROLLERS:PATH"; v2 has the single line "0::PATH".
        let entries: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let _id = parts.next()?;
                Some((parts.next()?, parts.next()?))
            })
            .collect();
        let relative = |path: &str| root.join(path.trim_start_matches('/'));
        if version == "v2" {
            let (_, path) = entries
                .iter()
                .find(|(controllers, _)| controllers.is_empty())
                .ok_or(CgroupError::NotFound { pid, controller: "unified" })?;
            return Ok(Cgroup::V2 { path: relative(path) });
        }
        let find = |controller: &'static str| {
            entries
                .iter()
                .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
                .map(|(controllers, path)| root.join(controllers).join(path.trim_start_matches('/')))
                .ok_or(CgroupError::NotFound { pid, controller })
        };
        Ok(Cgroup::V1 { memory: find("memory")?, cpuacct: find("cpuacct")? })
    }

    /// Resident memory charged to the cgroup less its inactive file cache, in bytes:
    /// v2 `memory.current - inactive_file`, v1 `usage_in_bytes - total_inactive_file`.
    pub fn memory_bytes(&self) -> Result<u64, CgroupError> {
        let (usage_file, stat_file, inactive_key) = match self {
            Cgroup::V1 { memory, .. } => (
                memory.join("memory.usage_in_bytes"),
                memory.join("memory.stat"),
                "total_inactive_file",
            ),
            Cgroup::V2 { path } => (path.join("memory.current"), path.join("memory.stat"), "inactive_file"),
        };
        let usage = parse_u64(&usage_file, read(&usage_file)?.trim())?;
        let stat = read(&stat_file)?;
        let inactive = stat_field(&stat, inactive_key).ok_or_else(|| CgroupError::Parse {
            path: stat_file.clone(),
            detail: format!("no {inactive_key} line"),
        })?;
        Ok(usage.saturating_sub(inactive))
    }

    /// CPU time charged to the cgroup since it was created.
    pub fn cpu_time(&self) -> Result<Duration, CgroupError> {
        match self {
            Cgroup::V1 { cpuacct, .. } => {
                let path = cpuacct.join("cpuacct.usage");
                Ok(Duration::from_nanos(parse_u64(&path, read(&path)?.trim())?))
            }
            Cgroup::V2 { path } => {
                let path = path.join("cpu.stat");
                let usec = stat_field(&read(&path)?, "usage_usec").ok_or_else(|| CgroupError::Parse {
                    path: path.clone(),
                    detail: "no usage_usec line".to_string(),
                })?;
                Ok(Duration::from_micros(usec))
            }
        }
    }
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.parse().map_err(|_| CgroupError::Parse { path: path.to_path_buf(), detail: format!("{text:?} is not a number") })
}

/// Reads `key VALUE` from a memory.stat or cpu.stat style file.
pub fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n";

    #[test]
    fn v1_paths_from_proc() {
        let cgroup = Cgroup::from_proc_text(HYBRID, 7, Path::new("/sys/fs/cgroup"), "v1").unwrap();
        assert_eq!(
            cgroup,
            Cgroup::V1 {
                memory: PathBuf::from("/sys/fs/cgroup/memory/docker/abc"),
                cpuacct: PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/docker/abc"),
            }
        );
    }

    #[test]
    fn v2_path_from_proc() {
        let cgroup = Cgroup::from_proc_text("0::/system.slice/docker-abc.scope\n", 7, Path::new("/sys/fs/cgroup"), "v2")
            .unwrap();
        assert_eq!(cgroup, Cgroup::V2 { path: PathBuf::from("/sys/fs/cgroup/system.slice/docker-abc.scope") });
    }

    #[test]
    fn missing_controller_is_an_error() {
        let error = Cgroup::from_proc_text("0::/\n", 7, Path::new("/sys/fs/cgroup"), "v1").unwrap_err();
        assert!(error.to_string().contains("memory"), "{error}");
    }

    #[test]
    fn memory_less_inactive_file() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("memory.usage_in_bytes"), "10485760\n").unwrap();
        std::fs::write(folder.path().join("memory.stat"), "cache 100\ntotal_inactive_file 4194304\n").unwrap();
        std::fs::write(folder.path().join("cpuacct.usage"), "2500000000\n").unwrap();
        let cgroup = Cgroup::V1 { memory: folder.path().into(), cpuacct: folder.path().into() };
        assert_eq!(cgroup.memory_bytes().unwrap(), 6_291_456);
        assert_eq!(cgroup.cpu_time().unwrap(), Duration::from_millis(2500));
    }

    #[test]
    fn v2_memory_and_cpu() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("memory.current"), "3000\n").unwrap();
        std::fs::write(folder.path().join("memory.stat"), "anon 1\ninactive_file 1000\n").unwrap();
        std::fs::write(folder.path().join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        let cgroup = Cgroup::V2 { path: folder.path().into() };
        assert_eq!(cgroup.memory_bytes().unwrap(), 2000);
        assert_eq!(cgroup.cpu_time().unwrap(), Duration::from_micros(1500));
    }
}
