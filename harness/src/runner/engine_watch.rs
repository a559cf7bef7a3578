//! Handling of a Docker engine that stops responding mid-run, as it does while the
//! daemon restarts. The run records the failed repetition and waits for the engine to
//! respond again. It then removes what the restart left of its containers and goes on.
//! An engine that stays away stops the run, which then saves what it has.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;

use super::progress::Step;

/// Time a run waits for an engine that stopped responding, unless
/// `DEPLOYBENCH_ENGINE_WAIT_S` sets another.
pub const DEFAULT_ENGINE_WAIT: Duration = Duration::from_secs(90);

/// Time allowed for one ping, because a daemon that is shutting down may accept and hang.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The monitor's ping period and timeout. A restart keeps the API closed for seconds.
const MONITOR_INTERVAL: Duration = Duration::from_millis(500);
const MONITOR_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Returns the wait for a returning engine: `DEPLOYBENCH_ENGINE_WAIT_S` when it is a
/// whole number of seconds, else [`DEFAULT_ENGINE_WAIT`].
pub fn engine_wait() -> Duration {
    parse_wait(std::env::var("DEPLOYBENCH_ENGINE_WAIT_S").ok().as_deref())
}

fn parse_wait(value: Option<&str>) -> Duration {
    match value.map(str::trim).map(str::parse::<u64>) {
        Some(Ok(seconds)) => Duration::from_secs(seconds),
        Some(Err(_)) => {
            tracing::warn!(
                value,
                "DEPLOYBENCH_ENGINE_WAIT_S is not a whole number of seconds; using the default"
            );
            DEFAULT_ENGINE_WAIT
        }
        None => DEFAULT_ENGINE_WAIT,
    }
}

/// Returns true when the engine responds to a ping within [`PING_TIMEOUT`].
pub async fn responds(docker: &Docker) -> bool {
    responds_within(docker, PING_TIMEOUT).await
}

async fn responds_within(docker: &Docker, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, docker.ping()).await, Ok(Ok(_)))
}

/// Pings the engine in the background while a model is measured and records the spans
/// in which it did not respond. A failure can then be traced to a daemon restart even
/// when the daemon is back by the time the failure shows.
pub struct EngineMonitor {
    outages: Arc<Mutex<Vec<Outage>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A span in which the engine did not respond. `end` is `None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outage {
    start: Instant,
    end: Option<Instant>,
}

impl EngineMonitor {
    pub fn start(docker: Docker) -> EngineMonitor {
        let outages: Arc<Mutex<Vec<Outage>>> = Arc::default();
        let recorded = Arc::clone(&outages);
        let task = tokio::spawn(async move {
            loop {
                let answered = responds_within(&docker, MONITOR_PING_TIMEOUT).await;
                let now = Instant::now();
                {
                    let mut outages = recorded.lock().expect("no code panics while holding the lock");
                    let ongoing = outages.last_mut().filter(|outage| outage.end.is_none());
                    match (answered, ongoing) {
                        (true, Some(outage)) => outage.end = Some(now),
                        (false, None) => outages.push(Outage { start: now, end: None }),
                        _ => {}
                    }
                }
                tokio::time::sleep(MONITOR_INTERVAL).await;
            }
        });
        EngineMonitor { outages, task }
    }

    /// Returns how long the engine did not respond in the outages that reached past
    /// `since`, counting an ongoing one up to now. `None` means no such outage.
    fn unanswered_since(&self, since: Instant) -> Option<Duration> {
        unanswered(
            &self.outages.lock().expect("no code panics while holding the lock"),
            since,
            Instant::now(),
        )
    }
}

/// Sums the length of the outages that lasted past `since`, ongoing ones up to `now`.
fn unanswered(outages: &[Outage], since: Instant, now: Instant) -> Option<Duration> {
    let touching = outages
        .iter()
        .filter(|outage| outage.end.is_none_or(|end| end >= since));
    touching
        .map(|outage| outage.end.unwrap_or(now) - outage.start)
        .reduce(|a, b| a + b)
}

impl Drop for EngineMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// State of the engine after a failed repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// It responded throughout the repetition, so the failure had another cause.
    Answering,
    /// It stopped responding during the repetition and responds again. The duration is
    /// how long it did not respond.
    Returned(Duration),
    /// It did not respond within the wait.
    Gone,
}

/// Checks the engine after a repetition that began at `since` failed. When the engine
/// does not respond, waits up to `wait` for it and shows the wait on `step`. Once it
/// responds, removes the run's containers that outlived the failure, because a
/// restarting daemon keeps the stopped ones.
pub async fn recover(
    docker: &Docker,
    monitor: &EngineMonitor,
    since: Instant,
    run_id: &str,
    wait: Duration,
    step: &Step,
) -> EngineState {
    if !responds(docker).await {
        tracing::warn!(
            wait_s = wait.as_secs(),
            "the Docker engine stopped responding; waiting for it"
        );
        let started = Instant::now();
        loop {
            let waited = started.elapsed();
            if waited >= wait {
                return EngineState::Gone;
            }
            step.message(&format!(
                "the Docker engine stopped responding; waiting for it ({} s of {} s)",
                waited.as_secs(),
                wait.as_secs()
            ));
            tokio::time::sleep(MONITOR_INTERVAL).await;
            if responds(docker).await {
                tracing::info!(
                    waited_s = started.elapsed().as_secs_f64(),
                    "the Docker engine responds again"
                );
                break;
            }
        }
    }
    let removed = super::cleanup::remove_run_containers(docker, run_id).await;
    if removed > 0 {
        tracing::info!(removed, run = run_id, "removed the failed repetition's container");
    }
    match monitor.unanswered_since(since) {
        Some(unanswered) => EngineState::Returned(unanswered),
        None => EngineState::Answering,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_wait_parsing() {
        assert_eq!(parse_wait(None), DEFAULT_ENGINE_WAIT);
        assert_eq!(parse_wait(Some("7")), Duration::from_secs(7));
        assert_eq!(parse_wait(Some(" 0 ")), Duration::ZERO);
        assert_eq!(parse_wait(Some("soon")), DEFAULT_ENGINE_WAIT);
        assert_eq!(parse_wait(Some("-3")), DEFAULT_ENGINE_WAIT);
    }

    #[test]
    fn unanswered_counts_touching_outages() {
        let origin = Instant::now();
        let at = |seconds: u64| origin + Duration::from_secs(seconds);
        let outages = [
            Outage {
                start: at(1),
                end: Some(at(3)),
            },
            Outage {
                start: at(10),
                end: Some(at(14)),
            },
            Outage {
                start: at(20),
                end: None,
            },
        ];
        assert_eq!(unanswered(&outages[..2], at(15), at(16)), None);
        assert_eq!(unanswered(&outages[..2], at(12), at(16)), Some(Duration::from_secs(4)));
        assert_eq!(unanswered(&outages[..2], at(2), at(16)), Some(Duration::from_secs(6)));
        assert_eq!(unanswered(&outages, at(15), at(25)), Some(Duration::from_secs(5)));
        assert_eq!(unanswered(&[], at(0), at(25)), None);
    }

    #[tokio::test]
    async fn responds_false_without_socket() {
        let folder = tempfile::tempdir().unwrap();
        let socket = folder.path().join("docker.sock");
        // The client checks at creation that the socket exists; the daemon then goes away.
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let docker = Docker::connect_with_unix(socket.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION).unwrap();
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
        assert!(!responds(&docker).await);
    }
}
