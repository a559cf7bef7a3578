//! Per-process and host accounting read from /proc.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
}

fn read(path: PathBuf) -> Result<(PathBuf, String), ProcError> {
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

/// Reads a "Key:   VALUE kB" line of a /proc status-like file, in bytes.
fn kib_field(path: PathBuf, text: &str, key: &str) -> Result<u64, ProcError> {
    crate::results::meminfo_kib(text, key)
        .map(|kib| kib * 1024)
        .ok_or_else(|| ProcError::Parse { path, detail: format!("no {key} line") })
}

/// Proportional set size of a process, from /proc/PID/smaps_rollup.
pub fn pss_bytes(pid: u32) -> Result<u64, ProcError> {
    let (path, text) = read(PathBuf::from(format!("/proc/{pid}/smaps_rollup")))?;
    kib_field(path, &text, "Pss")
}

/// Resident set size of a process, from /proc/PID/status.
pub fn rss_bytes(pid: u32) -> Result<u64, ProcError> {
    let (path, text) = read(PathBuf::from(format!("/proc/{pid}/status")))?;
    kib_field(path, &text, "VmRSS")
}

/// Fields of /proc/PID/stat after the command name, which may itself hold spaces.
fn stat_fields(pid: u32) -> Result<(PathBuf, Vec<String>), ProcError> {
    let (path, text) = read(PathBuf::from(format!("/proc/{pid}/stat")))?;
    let after_name = text.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| ProcError::Parse {
        path: path.clone(),
        detail: "no closing parenthesis after the command name".to_string(),
    })?;
    Ok((path, after_name.split_whitespace().map(str::to_string).collect()))
}

/// Parent process id.
pub fn parent_pid(pid: u32) -> Result<u32, ProcError> {
    let (path, fields) = stat_fields(pid)?;
    // After the name: state(0) ppid(1).
    fields
        .get(1)
        .and_then(|value| value.parse().ok())
        .ok_or(ProcError::Parse { path, detail: "no parent pid field".to_string() })
}

/// User plus system CPU time of a process (all its threads), at clock-tick resolution.
pub fn process_cpu_time(pid: u32) -> Result<Duration, ProcError> {
    let (path, fields) = stat_fields(pid)?;
    // After the name, utime and stime are fields 11 and 12 (stat fields 14 and 15).
    let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
        return Err(ProcError::Parse { path, detail: "no utime/stime fields".to_string() });
    };
    Ok(ticks_to_duration(user + system))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 { per_second as u64 } else { 100 };
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// Host-wide CPU counters from the first line of /proc/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    pub busy_ticks: u64,
    pub total_ticks: u64,
}

impl HostCpu {
    pub fn read() -> Result<HostCpu, ProcError> {
        let (path, text) = read(PathBuf::from("/proc/stat"))?;
        HostCpu::parse(&text).ok_or(ProcError::Parse { path, detail: "no aggregate cpu line".to_string() })
    }

    fn parse(text: &str) -> Option<HostCpu> {
        let line = text.lines().find(|line| line.starts_with("cpu "))?;
        let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        let total: u64 = values.iter().take(8).sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        Some(HostCpu { busy_ticks: total - idle, total_ticks: total })
    }

    /// Share of all host CPUs that was busy between `self` and `later`, in percent.
    pub fn busy_percent_until(&self, later: &HostCpu) -> f64 {
        let total = later.total_ticks.saturating_sub(self.total_ticks);
        if total == 0 {
            return 0.0;
        }
        later.busy_ticks.saturating_sub(self.busy_ticks) as f64 * 100.0 / total as f64
    }
}

/// MemAvailable of the host, in bytes.
pub fn host_mem_available_bytes() -> Result<u64, ProcError> {
    let (path, text) = read(PathBuf::from("/proc/meminfo"))?;
    kib_field(path, &text, "MemAvailable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_accounting() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(pss_bytes(pid).unwrap() > 0);
        assert!(parent_pid(pid).unwrap() > 0);
        process_cpu_time(pid).unwrap();
    }

    #[test]
    fn host_cpu_parse() {
        let text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        let cpu = HostCpu::parse(text).unwrap();
        assert_eq!(cpu, HostCpu { busy_ticks: 150, total_ticks: 1000 });
        let later = HostCpu { busy_ticks: 250, total_ticks: 1400 };
        assert_eq!(cpu.busy_percent_until(&later), 25.0);
    }

    #[test]
    fn missing_process_names_path() {
        let error = rss_bytes(u32::MAX).unwrap_err();
        assert!(error.to_string().contains("/proc/4294967295/status"), "{error}");
    }
}
