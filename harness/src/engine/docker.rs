//! Connection to the Docker engine and the labels that mark what deploybench created.

use bollard::Docker;

/// Label set on every container, image, network and volume that deploybench creates.
pub const MANAGED_LABEL: &str = "io.deploybench.managed";
/// Label naming the run that created a container, so a crashed run's leftovers are found.
pub const RUN_LABEL: &str = "io.deploybench.run";
/// Label naming the harness process that owns a container, as `PID:START_TICKS`, so a
/// run removes only the leftovers of processes that are gone, never those of a
/// concurrent run.
pub const OWNER_LABEL: &str = "io.deploybench.owner";

/// The owner label value of this process: its pid and its start time in clock ticks
/// since boot, which together identify it even after the pid is reused.
pub fn owner_label_value() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", process_start_ticks(pid).unwrap_or(0))
}

/// True if and only if the process named by an owner label value still runs.
pub fn owner_is_alive(value: &str) -> bool {
    let Some((pid, start)) = value.split_once(':') else {
        return false;
    };
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => process_start_ticks(pid) == Some(start),
        _ => false,
    }
}

/// Field 22 of /proc/PID/stat: the process start time in clock ticks since boot.
/// `None` also for a zombie, a process that has exited but is not reaped yet.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name, field 3 (state) has index 0, so field 22 has index 19.
    let mut fields = after_name.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine: {0}; start it with `sudo scripts/setup.sh`")]
    Unreachable(#[source] bollard::errors::Error),
    #[error("Docker engine call {call} failed: {source}")]
    Call {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

/// Connects to the local engine and negotiates the API version (Debian's engine speaks 1.41).
pub async fn connect() -> Result<Docker, EngineError> {
    let docker = Docker::connect_with_local_defaults().map_err(EngineError::Unreachable)?;
    let docker = docker.negotiate_version().await.map_err(EngineError::Unreachable)?;
    docker.ping().await.map_err(EngineError::Unreachable)?;
    Ok(docker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombie_owner_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Until it is reaped, the exited child stays a zombie with its /proc entry.
        let started = std::time::Instant::now();
        let stat = loop {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
            if stat.contains(") Z ") {
                break stat;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "true did not exit");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let start_ticks = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap();
        assert!(!owner_is_alive(&format!("{}:{start_ticks}", child.id())));
        child.wait().unwrap();
    }

    #[test]
    fn own_owner_label_is_alive() {
        let value = owner_label_value();
        assert!(!value.ends_with(":0"), "{value}");
        assert!(owner_is_alive(&value));
    }

    #[test]
    fn stale_owner_labels_are_dead() {
        let pid = std::process::id();
        assert!(!owner_is_alive(&format!("{pid}:1")), "same pid, other start time");
        assert!(!owner_is_alive("4294967295:5"));
        assert!(!owner_is_alive("garbage"));
    }
}
