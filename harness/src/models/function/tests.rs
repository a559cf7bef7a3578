//! Gateway tests with fake sandboxes: small HTTP servers on 127.0.0.1 started in the
//! gateway's runtime, so the gateway's rules run for real without an engine.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::client::{get_once, Start};
use super::gateway::{Gateway, GatewayConfig, Outcome, StartKind};
use super::pool::PoolLimits;
use super::sandbox::{LaunchTimings, LaunchedSandbox, SandboxBackend, SandboxUsage};

const LIMIT: Duration = Duration::from_secs(5);

/// Fake sandboxes: each one is an HTTP server that responds to every request with 200
/// after `handler_delay`.
#[derive(Default)]
struct FakeSandboxes {
    handler_delay: Duration,
    launch_delay: Duration,
    fail_launches: bool,
    launched: AtomicUsize,
    destroyed: AtomicUsize,
    servers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl FakeSandboxes {
    fn live(&self) -> usize {
        self.launched.load(Ordering::SeqCst) - self.destroyed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SandboxBackend for FakeSandboxes {
    async fn launch(&self, origin: Instant, _deadline: Instant, _poll: Duration) -> Result<LaunchedSandbox, String> {
        tokio::time::sleep(self.launch_delay).await;
        if self.fail_launches {
            return Err("the fake backend fails every launch".to_string());
        }
        let create = origin.elapsed();

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(|error| error.to_string())?;
        let address = listener.local_addr().map_err(|error| error.to_string())?;
        let delay = self.handler_delay;
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let service = service_fn(move |_request| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        let number = self.launched.fetch_add(1, Ordering::SeqCst);
        let id = format!("fake-{number}");
        self.servers.lock().unwrap().insert(id.clone(), server);
        let start = origin.elapsed();
        Ok(LaunchedSandbox {
            id,
            address,
            timings: LaunchTimings { create, start, ready: origin.elapsed() },
            cgroup: None,
            pid: None,
        })
    }

    async fn destroy(&self, sandbox: &LaunchedSandbox) -> Result<(), String> {
        if let Some(server) = self.servers.lock().unwrap().remove(&sandbox.id) {
            server.abort();
            self.destroyed.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn destroy_all(&self) -> Result<usize, String> {
        let servers: Vec<_> = self.servers.lock().unwrap().drain().collect();
        for (_, server) in &servers {
            server.abort();
        }
        self.destroyed.fetch_add(servers.len(), Ordering::SeqCst);
        Ok(servers.len())
    }

    fn usage(&self, _sandbox: &LaunchedSandbox) -> Result<SandboxUsage, String> {
        Ok(SandboxUsage { memory_bytes: 3 << 20, runtime_bytes: 1 << 20, cpu_time: Duration::from_millis(5) })
    }
}

fn config(max_instances: usize, queue_limit: usize, keep_warm: Duration) -> GatewayConfig {
    GatewayConfig {
        name: "test".to_string(),
        limits: PoolLimits { max_instances, concurrency: 1, keep_warm, queue_limit },
        queue_timeout: Duration::from_secs(5),
        ready_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(1),
        request_timeout: LIMIT,
        memory_limit_mib: 128,
    }
}

async fn start(config: GatewayConfig, backend: &Arc<FakeSandboxes>) -> Gateway {
    Gateway::start(config, Arc::clone(backend) as Arc<dyn SandboxBackend>).await.unwrap()
}

/// Sends `count` requests at once and returns their statuses, sorted.
async fn concurrent_statuses(address: SocketAddr, count: usize) -> Vec<u16> {
    let requests = (0..count).map(|_| get_once(address, "/work", LIMIT));
    let mut statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|response| response.expect("every request gets a response").status)
        .collect();
    statuses.sort_unstable();
    statuses
}

#[tokio::test]
async fn first_request_cold_then_warm() {
    let backend = Arc::new(FakeSandboxes { launch_delay: Duration::from_millis(50), ..Default::default() });
    let gateway = start(config(2, 4, Duration::from_secs(60)), &backend).await;
    assert!(gateway.address().ip().is_loopback());

    let first = get_once(gateway.address(), "/work", LIMIT).await.unwrap();
    let second = get_once(gateway.address(), "/work", LIMIT).await.unwrap();
    assert_eq!((first.status, first.start), (200, Some(Start::Cold)));
    assert_eq!((second.status, second.start), (200, Some(Start::Warm)));

    let records = gateway.records();
    assert_eq!(records.len(), 2);
    let StartKind::Cold(timings) = records[0].start else { panic!("{records:?}") };
    assert!(timings.create <= timings.start, "{timings:?}");
    assert!(timings.start <= timings.ready, "{timings:?}");
    assert!(records[0].handler.unwrap() >= timings.ready, "{records:?}");
    assert_eq!(records[1].start, StartKind::Warm);
    assert!(records[1].handler.unwrap() < records[0].handler.unwrap(), "warm is faster: {records:?}");
    assert_eq!(gateway.stats().counters.cold_starts, 1);
    assert_eq!(backend.launched.load(Ordering::SeqCst), 1);

    gateway.shutdown().await.unwrap();
    assert_eq!(backend.live(), 0);
}

#[tokio::test]
async fn idle_instance_expires_after_keep_warm() {
    let backend = Arc::new(FakeSandboxes::default());
    let keep_warm = Duration::from_millis(300);
    let gateway = start(config(2, 4, keep_warm), &backend).await;

    get_once(gateway.address(), "/work", LIMIT).await.unwrap();
    assert_eq!(gateway.gauge().instances(), 1);
    tokio::time::sleep(keep_warm / 2).await;
    assert_eq!(backend.live(), 1, "still inside the window");

    // The window plus a few reaper intervals.
    tokio::time::sleep(keep_warm + Duration::from_millis(300)).await;
    assert_eq!(gateway.gauge().instances(), 0);
    assert_eq!(backend.live(), 0, "the expired sandbox was destroyed");
    assert_eq!(gateway.stats().counters.expired, 1);

    let again = get_once(gateway.address(), "/work", LIMIT).await.unwrap();
    assert_eq!(again.start, Some(Start::Cold), "a request after the window starts cold");
    gateway.shutdown().await.unwrap();
    assert_eq!(backend.live(), 0);
}

#[tokio::test]
async fn fleet_bounded_by_max_instances() {
    let backend = Arc::new(FakeSandboxes { handler_delay: Duration::from_millis(200), ..Default::default() });
    let gateway = start(config(3, 100, Duration::from_secs(60)), &backend).await;

    let statuses = concurrent_statuses(gateway.address(), 8).await;
    assert_eq!(statuses, vec![200; 8], "queued requests are served once a slot frees");
    let stats = gateway.stats();
    assert_eq!(stats.peak_instances, 3);
    assert_eq!(stats.counters.cold_starts, 3);
    assert_eq!(backend.launched.load(Ordering::SeqCst), 3);
    assert_eq!(stats.counters.queued, 5);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn full_queue_rejects_with_503() {
    let backend = Arc::new(FakeSandboxes { handler_delay: Duration::from_millis(400), ..Default::default() });
    let gateway = start(config(1, 1, Duration::from_secs(60)), &backend).await;

    // One request runs on the only instance, one waits, the other three find the queue full.
    let statuses = concurrent_statuses(gateway.address(), 5).await;
    assert_eq!(statuses, vec![200, 200, 503, 503, 503]);
    assert_eq!(gateway.stats().counters.queue_full, 3);
    let rejected = gateway.records().iter().filter(|record| record.outcome == Outcome::QueueFull).count();
    assert_eq!(rejected, 3);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn queue_timeout_rejects_with_503() {
    let backend = Arc::new(FakeSandboxes { handler_delay: Duration::from_millis(500), ..Default::default() });
    let mut config = config(1, 10, Duration::from_secs(60));
    config.queue_timeout = Duration::from_millis(100);
    let gateway = start(config, &backend).await;

    let statuses = concurrent_statuses(gateway.address(), 3).await;
    assert_eq!(statuses, vec![200, 503, 503]);
    assert_eq!(gateway.stats().counters.queue_timeouts, 2);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn failed_launch_answers_502() {
    let backend = Arc::new(FakeSandboxes { fail_launches: true, ..Default::default() });
    let gateway = start(config(1, 1, Duration::from_secs(60)), &backend).await;

    let response = get_once(gateway.address(), "/work", LIMIT).await.unwrap();
    assert_eq!(response.status, 502);
    let stats = gateway.stats();
    assert_eq!(stats.counters.launch_failures, 1);
    assert_eq!(stats.instances, 0, "the failed reservation frees its place");
    assert_eq!(gateway.records()[0].outcome, Outcome::LaunchFailed);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn drop_removes_every_sandbox() {
    let backend = Arc::new(FakeSandboxes { handler_delay: Duration::from_millis(100), ..Default::default() });
    let gateway = start(config(3, 10, Duration::from_secs(60)), &backend).await;
    concurrent_statuses(gateway.address(), 3).await;
    assert_eq!(backend.live(), 3);
    let address = gateway.address();

    drop(gateway);
    assert_eq!(backend.live(), 0, "drop waits until every sandbox is destroyed");
    assert!(get_once(address, "/work", Duration::from_millis(500)).await.is_err(), "the gateway no longer listens");
}

#[tokio::test]
async fn shutdown_waits_for_cold_start_in_progress() {
    let backend = Arc::new(FakeSandboxes { launch_delay: Duration::from_millis(300), ..Default::default() });
    let gateway = start(config(1, 1, Duration::from_secs(60)), &backend).await;
    let address = gateway.address();
    let request = tokio::spawn(async move { get_once(address, "/work", LIMIT).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gateway.gauge().instances(), 1, "the cold start is under way");

    gateway.shutdown().await.unwrap();
    assert_eq!(backend.launched.load(Ordering::SeqCst), 1);
    assert_eq!(backend.live(), 0, "the late sandbox was destroyed");
    let _ = request.await;
}

#[tokio::test]
async fn accounting_sums_sandboxes_and_gateway_cpu() {
    let backend = Arc::new(FakeSandboxes::default());
    let gateway = start(config(2, 4, Duration::from_secs(60)), &backend).await;
    get_once(gateway.address(), "/work", LIMIT).await.unwrap();

    let accounting = gateway.accounting().unwrap();
    assert_eq!(accounting.live_sandboxes, 1);
    assert_eq!(accounting.usage.memory_bytes, 3 << 20);
    assert_eq!(accounting.usage.runtime_bytes, 1 << 20);
    assert_eq!(accounting.sandbox_cpu, Duration::from_millis(5));
    assert!(accounting.gateway_cpu.is_some_and(|cpu| cpu > Duration::ZERO), "{accounting:?}");
    gateway.shutdown().await.unwrap();
}
