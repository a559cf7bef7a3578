//! The scale-to-zero gateway: an HTTP/1.1 server on 127.0.0.1 that forwards each request
//! to a warm instance, starts a sandbox for a request that finds none, queues requests
//! beyond `max_instances`, and stops instances that stay idle for the keep-warm window.
//!
//! The gateway runs on its own thread with a single-threaded tokio runtime. Its CPU time
//! is then that thread's CPU clock, and dropping a [`Gateway`] can wait until its
//! sandboxes are removed even while the caller's runtime shuts down.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::forward::Upstream;
use super::pool::{Admission, Grant, InstanceId, Pool, PoolCounters, PoolLimits, WaiterId};
use super::sandbox::{LaunchTimings, LaunchedSandbox, SandboxBackend, SandboxUsage};
use crate::scenario::Scenario;

/// Response header that marks whether the request started an instance: `cold` or
/// `warm`.
pub const START_HEADER: &str = "x-deploybench-start";
/// Largest request body the gateway accepts; larger bodies get 413.
const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;
/// Interval at which idle instances past their keep-warm window are stopped. A request
/// never gets an expired instance, whatever this interval, because admission checks the
/// window itself.
const REAP_INTERVAL: Duration = Duration::from_millis(50);
/// Time allowed for the shutdown beyond the cold starts still running: stopping and
/// removing the sandboxes.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(30);
/// Failures logged one by one before only every 1000th is logged.
const LOGGED_FAILURES: u64 = 10;

/// Settings of one gateway: admission limits, and start and forwarding timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Names the gateway in logs and in its sandboxes' labels.
    pub name: String,
    pub limits: PoolLimits,
    /// Maximum time waiting in the queue before the request is rejected with 503.
    pub queue_timeout: Duration,
    /// Time allowed from a request's arrival to its new sandbox's first 200 from /health.
    pub ready_timeout: Duration,
    /// Interval between /health probes of a starting sandbox.
    pub poll_interval: Duration,
    /// Time allowed for one forwarded request, from its send to the sandbox's last
    /// response byte.
    pub request_timeout: Duration,
    /// Memory limit of each sandbox, the basis of GB-seconds.
    pub memory_limit_mib: u64,
}

impl GatewayConfig {
    /// Reads the `[function]`, `[boot]`, `[load]` and `[limits]` settings of a scenario.
    pub fn from_scenario(scenario: &Scenario, name: &str) -> GatewayConfig {
        let function = &scenario.function;
        GatewayConfig {
            name: name.to_string(),
            limits: PoolLimits {
                max_instances: function.max_instances as usize,
                concurrency: function.concurrency as usize,
                keep_warm: function.keep_warm,
                queue_limit: function.queue_limit as usize,
            },
            queue_timeout: function.queue_timeout,
            ready_timeout: scenario.boot.timeout,
            poll_interval: scenario.boot.poll_interval,
            request_timeout: scenario.load.request_timeout,
            memory_limit_mib: scenario.limits.memory_mib,
        }
    }
}

/// Start path of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// The request started a new instance.
    Cold(LaunchTimings),
    /// The request found a warm instance, at once or after waiting in the queue.
    Warm,
    /// The request was rejected before it reached an instance.
    NotStarted,
}

impl StartKind {
    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            StartKind::Cold(_) => "cold",
            StartKind::Warm | StartKind::NotStarted => "warm",
        })
    }
}

/// Final result of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded, and the sandbox responded with this status.
    Served { status: u16 },
    /// 503: the queue was full.
    QueueFull,
    /// 503: the wait in the queue reached `queue_timeout`.
    QueueTimeout,
    /// 503: the gateway was shutting down.
    ShuttingDown,
    /// 502: the cold start failed.
    LaunchFailed,
    /// 502: forwarding to the sandbox failed.
    UpstreamFailed,
    /// 413: the request body was too large or unreadable.
    BodyRejected,
}

/// One request as the gateway saw it. A request whose client left before the response
/// was ready is not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    /// Arrival time since the gateway started.
    pub arrival: Duration,
    pub start: StartKind,
    /// From arrival until the request left the queue, for requests that waited.
    pub queued: Option<Duration>,
    /// From arrival until the sandbox's whole response arrived, for forwarded requests.
    pub handler: Option<Duration>,
    pub outcome: Outcome,
}

/// The gateway's fleet figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatewayStats {
    pub counters: PoolCounters,
    /// Instances in the fleet now: starting, busy or idle.
    pub instances: usize,
    pub peak_instances: usize,
    /// Sum of instance lifetimes so far, from each cold start's begin to removal.
    pub instance_seconds: f64,
    /// Requests waiting in the queue now.
    pub queue_length: usize,
    /// Sandboxes whose stop or removal failed.
    pub destroy_failures: u64,
}

/// Resources of the gateway's sandboxes, and the gateway thread's own CPU time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatewayAccounting {
    /// Ready sandboxes now.
    pub live_sandboxes: usize,
    /// Summed over the ready sandboxes.
    pub usage: SandboxUsage,
    /// CPU time of every sandbox since the gateway started, removed ones included.
    pub sandbox_cpu: Duration,
    /// CPU time of the gateway thread, `None` when the clock cannot be read.
    pub gateway_cpu: Option<Duration>,
}

/// Result of a shutdown: sandboxes removed by the final sweep, and failures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShutdownReport {
    /// Sandboxes removed by the final sweep, which finds sandboxes that the normal
    /// stops missed, such as those of cold starts cut short.
    pub swept: usize,
    /// Stop, removal or sweep failures.
    pub failures: Vec<String>,
}

/// A read-only view of the fleet size, for samplers running beside the gateway.
#[derive(Clone)]
pub struct FleetGauge(Arc<Shared>);

impl FleetGauge {
    /// Instances in the fleet now: starting, busy or idle.
    pub fn instances(&self) -> usize {
        self.0.pool().instance_count()
    }
}

struct Sandbox {
    launched: LaunchedSandbox,
    upstream: Upstream,
}

/// State shared by the gateway thread's tasks and the [`Gateway`] handle.
struct Shared {
    config: GatewayConfig,
    backend: Arc<dyn SandboxBackend>,
    started: Instant,
    pool: Mutex<Pool<Arc<Sandbox>>>,
    records: Mutex<Vec<RequestRecord>>,
    /// CPU time of removed sandboxes, read just before their stop.
    retired_cpu: Mutex<Duration>,
    destroy_failures: Mutex<Vec<String>>,
    upstream_failures: AtomicU64,
    /// Cold starts and sandbox removals in progress, so the shutdown can wait for them.
    tasks: Mutex<JoinSet<()>>,
    /// CPU time of the gateway thread, stored when the thread ends.
    final_cpu: Mutex<Option<Duration>>,
}

impl Shared {
    fn pool(&self) -> MutexGuard<'_, Pool<Arc<Sandbox>>> {
        self.pool.lock().expect("no code panics while holding the lock")
    }

    /// Spawns a task that the shutdown waits for. Must run on the gateway's runtime.
    fn spawn_tracked(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!(gateway = %self.config.name, "a gateway task was spawned outside the gateway runtime");
            return;
        }
        self.tasks.lock().expect("no code panics while holding the lock").spawn(task);
    }

    /// Stops and removes sandboxes that left the pool, after adding their CPU time.
    fn retire(self: &Arc<Self>, sandboxes: Vec<Arc<Sandbox>>) {
        for sandbox in sandboxes {
            // The sandbox's connections close first, so that it stops without waiting for them.
            sandbox.upstream.close_idle();
            match self.backend.usage(&sandbox.launched) {
                Ok(usage) => *self.retired_cpu.lock().expect("no code panics while holding the lock") += usage.cpu_time,
                Err(error) => tracing::debug!(sandbox = %sandbox.launched.id, %error, "no CPU reading before the stop"),
            }
            let shared = Arc::clone(self);
            self.spawn_tracked(async move {
                tracing::debug!(gateway = %shared.config.name, sandbox = %sandbox.launched.id, "stopping sandbox");
                if let Err(error) = shared.backend.destroy(&sandbox.launched).await {
                    tracing::warn!(gateway = %shared.config.name, sandbox = %sandbox.launched.id, %error, "cannot remove sandbox");
                    shared.destroy_failures.lock().expect("no code panics while holding the lock").push(error);
                }
            });
        }
    }

    fn record(&self, record: RequestRecord) {
        self.records.lock().expect("no code panics while holding the lock").push(record);
    }

    /// Drops the results of finished tasks, so that a long run does not accumulate them.
    fn collect_finished_tasks(&self) {
        let mut tasks = self.tasks.lock().expect("no code panics while holding the lock");
        while tasks.try_join_next().is_some() {}
    }
}

/// One request's slot on a ready instance. Dropping it releases the slot.
struct Lease {
    shared: Arc<Shared>,
    id: InstanceId,
    sandbox: Arc<Sandbox>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let removed = self.shared.pool().release(self.id, Instant::now());
        self.shared.retire(removed);
    }
}

/// A request waiting in the queue. Dropping it before it got its grant, for example
/// because the client went away, withdraws it or gives the grant back.
struct QueueTicket<'a> {
    shared: &'a Arc<Shared>,
    waiter: WaiterId,
    receiver: Option<oneshot::Receiver<Grant>>,
}

impl QueueTicket<'_> {
    async fn wait(mut self, limit: Duration) -> Result<Grant, Rejection> {
        let receiver = self.receiver.as_mut().expect("the receiver is taken only below");
        let waited = tokio::time::timeout(limit, receiver).await;
        let mut receiver = self.receiver.take().expect("still present");
        match waited {
            Ok(Ok(grant)) => Ok(grant),
            // The pool dropped the sender because it closed.
            Ok(Err(_)) => Err(Rejection::ShuttingDown),
            Err(_) => {
                if self.shared.pool().cancel_waiter(self.waiter) {
                    return Err(Rejection::QueueTimeout);
                }
                // Grants are sent under the pool lock, so a waiter missing from the
                // queue has its grant in the channel already.
                receiver.try_recv().map_err(|_| Rejection::ShuttingDown)
            }
        }
    }
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        let Some(mut receiver) = self.receiver.take() else { return };
        let mut pool = self.shared.pool();
        if pool.withdraw_waiter(self.waiter) {
            return;
        }
        if let Ok(grant) = receiver.try_recv() {
            let removed = pool.abandon(grant, Instant::now());
            drop(pool);
            self.shared.retire(removed);
        }
    }
}

/// Reason a request was not forwarded.
#[derive(Debug)]
enum Rejection {
    QueueFull,
    QueueTimeout,
    ShuttingDown,
    LaunchFailed(String),
}

impl Rejection {
    fn outcome(&self) -> Outcome {
        match self {
            Rejection::QueueFull => Outcome::QueueFull,
            Rejection::QueueTimeout => Outcome::QueueTimeout,
            Rejection::ShuttingDown => Outcome::ShuttingDown,
            Rejection::LaunchFailed(_) => Outcome::LaunchFailed,
        }
    }

    fn response(&self, config: &GatewayConfig) -> Response<Full<Bytes>> {
        match self {
            Rejection::QueueFull => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("all {} instances are busy and the queue is full\n", config.limits.max_instances),
            ),
            Rejection::QueueTimeout => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no instance became free within {:?}\n", config.queue_timeout),
            ),
            Rejection::ShuttingDown => plain(StatusCode::SERVICE_UNAVAILABLE, "the gateway is shutting down\n".to_string()),
            Rejection::LaunchFailed(message) => plain(StatusCode::BAD_GATEWAY, format!("cold start failed: {message}\n")),
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

// `u64::is_multiple_of` needs Rust 1.87, above the workspace's rust-version of 1.80.
#[allow(clippy::manual_is_multiple_of)]
fn should_log(count: u64) -> bool {
    count <= LOGGED_FAILURES || count % 1000 == 0
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrival = Instant::now();
    let mut record = RequestRecord {
        arrival: arrival.saturating_duration_since(shared.started),
        start: StartKind::NotStarted,
        queued: None,
        handler: None,
        outcome: Outcome::ShuttingDown,
    };
    let response = serve(&shared, request, arrival, &mut record).await;
    shared.record(record);
    Ok(response)
}

async fn serve(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    arrival: Instant,
    record: &mut RequestRecord,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            record.outcome = Outcome::BodyRejected;
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the request body (limit {MAX_REQUEST_BODY_BYTES} bytes): {error}\n"),
            );
        }
    };

    let (lease, start) = match obtain(shared, arrival, record).await {
        Ok(pair) => pair,
        Err(rejection) => {
            record.outcome = rejection.outcome();
            if let Rejection::LaunchFailed(message) = &rejection {
                tracing::warn!(gateway = %shared.config.name, error = %message, "cold start failed");
            }
            return rejection.response(&shared.config);
        }
    };
    record.start = start;

    match lease.sandbox.upstream.send(&parts, body, shared.config.request_timeout).await {
        Ok(mut response) => {
            record.handler = Some(arrival.elapsed());
            record.outcome = Outcome::Served { status: response.status().as_u16() };
            response.headers_mut().insert(START_HEADER, start.header_value());
            response
        }
        Err(message) => {
            shared.pool().mark_broken(lease.id);
            let count = shared.upstream_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if should_log(count) {
                tracing::warn!(gateway = %shared.config.name, sandbox = %lease.sandbox.launched.id, failures = count, error = %message, "forwarding failed, retiring the sandbox");
            }
            record.outcome = Outcome::UpstreamFailed;
            plain(StatusCode::BAD_GATEWAY, format!("{message}\n"))
        }
    }
}

/// Finds the request an instance: a warm one, a new one, or one freed while it waited.
async fn obtain(
    shared: &Arc<Shared>,
    arrival: Instant,
    record: &mut RequestRecord,
) -> Result<(Lease, StartKind), Rejection> {
    let (admission, expired) = shared.pool().admit(arrival);
    shared.retire(expired);
    let grant = match admission {
        Admission::Granted(grant) => grant,
        Admission::Queued { waiter, receiver } => {
            let ticket = QueueTicket { shared, waiter, receiver: Some(receiver) };
            let grant = ticket.wait(shared.config.queue_timeout).await?;
            record.queued = Some(arrival.elapsed());
            grant
        }
        Admission::QueueFull => return Err(Rejection::QueueFull),
        Admission::Closed => return Err(Rejection::ShuttingDown),
    };
    match grant {
        Grant::Warm(id) => {
            let sandbox = shared.pool().sandbox(id).ok_or(Rejection::ShuttingDown)?;
            Ok((Lease { shared: Arc::clone(shared), id, sandbox }, StartKind::Warm))
        }
        Grant::Cold(id) => {
            let (lease, timings) = start_cold(shared, id, arrival).await.map_err(Rejection::LaunchFailed)?;
            Ok((lease, StartKind::Cold(timings)))
        }
    }
}

/// Launches instance `id` in a task of its own, so that a client that leaves cannot cut
/// the launch short and leave a container behind, and waits for it.
fn start_cold(
    shared: &Arc<Shared>,
    id: InstanceId,
    origin: Instant,
) -> impl std::future::Future<Output = Result<(Lease, LaunchTimings), String>> {
    let (sender, receiver) = oneshot::channel();
    let task_shared = Arc::clone(shared);
    shared.spawn_tracked(async move {
        let launched = launch_instance(&task_shared, id, origin).await;
        // Without a receiver the lease is dropped here, and the new instance turns idle.
        let _ = sender.send(launched);
    });
    async move {
        receiver
            .await
            .unwrap_or_else(|_| Err("the gateway shut down during the cold start".to_string()))
    }
}

async fn launch_instance(shared: &Arc<Shared>, id: InstanceId, origin: Instant) -> Result<(Lease, LaunchTimings), String> {
    let config = &shared.config;
    let deadline = origin + config.ready_timeout;
    let launched = match shared.backend.launch(origin, deadline, config.poll_interval).await {
        Ok(launched) => launched,
        Err(message) => {
            shared.pool().launch_failed(id, Instant::now());
            return Err(message);
        }
    };
    let timings = launched.timings;
    tracing::debug!(gateway = %config.name, sandbox = %launched.id, ready_ms = timings.ready.as_secs_f64() * 1000.0, "sandbox ready");
    let sandbox = Arc::new(Sandbox {
        upstream: Upstream::new(launched.address, config.limits.concurrency),
        launched,
    });
    let registered = shared.pool().launched(id, Arc::clone(&sandbox));
    match registered {
        Ok(()) => Ok((Lease { shared: Arc::clone(shared), id, sandbox }, timings)),
        Err(orphan) => {
            shared.retire(vec![orphan]);
            Err("the gateway shut down during the cold start".to_string())
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // EMFILE and similar pass; the open connections keep being served.
                        tracing::warn!(gateway = %shared.config.name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&shared), request));
                    // A client that drops its connection is not a gateway fault.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.abort_all();
}

async fn reap_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(REAP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let expired = shared.pool().reap(Instant::now());
                shared.retire(expired);
                shared.collect_finished_tasks();
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Closes the pool, waits for cold starts and removals in progress, then removes any
/// sandbox the backend still tracks.
async fn shut_down(shared: &Arc<Shared>) -> ShutdownReport {
    let sandboxes = shared.pool().close(Instant::now());
    shared.retire(sandboxes);

    let limit = shared.config.ready_timeout + SHUTDOWN_MARGIN;
    let drained = tokio::time::timeout(limit, async {
        loop {
            // A finishing cold start can retire its sandbox and so add a task.
            let mut tasks = std::mem::take(&mut *shared.tasks.lock().expect("no code panics while holding the lock"));
            if tasks.is_empty() {
                break;
            }
            while tasks.join_next().await.is_some() {}
        }
    })
    .await;

    let mut report = ShutdownReport::default();
    if drained.is_err() {
        report.failures.push(format!("cold starts and sandbox removals did not finish within {limit:?}"));
    }
    report
        .failures
        .extend(shared.destroy_failures.lock().expect("no code panics while holding the lock").drain(..));
    match shared.backend.destroy_all().await {
        Ok(swept) => report.swept = swept,
        Err(error) => report.failures.push(error),
    }
    report
}

/// Sent by the gateway thread once it serves.
struct Started {
    address: SocketAddr,
    thread: libc::pthread_t,
}

fn gateway_thread(
    shared: Arc<Shared>,
    started: oneshot::Sender<Result<Started, String>>,
    shutdown: watch::Receiver<bool>,
    done: std::sync::mpsc::Sender<ShutdownReport>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = started.send(Err(format!("cannot build the gateway runtime: {error}")));
            return;
        }
    };
    let report = runtime.block_on(async {
        if let Err(message) = shared.backend.open().await {
            let _ = started.send(Err(format!("cannot open the sandbox backend: {message}")));
            return None;
        }
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(listener) => listener,
            Err(error) => {
                let _ = started.send(Err(format!("cannot listen on 127.0.0.1: {error}")));
                return None;
            }
        };
        let address = match listener.local_addr() {
            Ok(address) => address,
            Err(error) => {
                let _ = started.send(Err(format!("cannot read the listening address: {error}")));
                return None;
            }
        };
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        if started.send(Ok(Started { address, thread })).is_err() {
            // The caller dropped the start, so no handle exists to request a shutdown.
            return None;
        }
        tracing::info!(gateway = %shared.config.name, %address, "function gateway started");
        tokio::join!(
            accept_loop(listener, Arc::clone(&shared), shutdown.clone()),
            reap_loop(Arc::clone(&shared), shutdown.clone()),
        );
        let report = shut_down(&shared).await;
        tracing::info!(gateway = %shared.config.name, swept = report.swept, failures = report.failures.len(), "function gateway stopped");
        Some(report)
    });
    drop(runtime);
    *shared.final_cpu.lock().expect("no code panics while holding the lock") = clock_time(libc::CLOCK_THREAD_CPUTIME_ID);
    if let Some(report) = report {
        let _ = done.send(report);
    }
}

fn clock_time(clock: libc::clockid_t) -> Option<Duration> {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into `time`, which outlives the call.
    let status = unsafe { libc::clock_gettime(clock, &mut time) };
    (status == 0).then(|| Duration::new(time.tv_sec as u64, time.tv_nsec as u32))
}

/// A running gateway. [`Gateway::shutdown`] stops it and removes its sandboxes;
/// dropping it does the same and blocks the dropping thread until that is done.
pub struct Gateway {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    /// Receives the shutdown report. In a mutex only because a receiver is not `Sync`
    /// and an [`crate::models::Instance`] must be.
    done: Mutex<Option<std::sync::mpsc::Receiver<ShutdownReport>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// CPU clock of the gateway thread, valid while the thread runs.
    cpu_clock: Option<libc::clockid_t>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("name", &self.shared.config.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts the gateway thread, opens the backend and listens on 127.0.0.1 with a
    /// port the kernel picks.
    pub async fn start(config: GatewayConfig, backend: Arc<dyn SandboxBackend>) -> Result<Gateway, String> {
        let shared = Arc::new(Shared {
            pool: Mutex::new(Pool::new(config.limits)),
            config,
            backend,
            started: Instant::now(),
            records: Mutex::new(Vec::new()),
            retired_cpu: Mutex::new(Duration::ZERO),
            destroy_failures: Mutex::new(Vec::new()),
            upstream_failures: AtomicU64::new(0),
            tasks: Mutex::new(JoinSet::new()),
            final_cpu: Mutex::new(None),
        });
        let (started_sender, started_receiver) = oneshot::channel();
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let (done_sender, done) = std::sync::mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("gateway-{}", shared.config.name))
            .spawn(move || gateway_thread(thread_shared, started_sender, shutdown_receiver, done_sender))
            .map_err(|error| format!("cannot spawn the gateway thread: {error}"))?;

        let started = match started_receiver.await {
            Ok(Ok(started)) => started,
            Ok(Err(message)) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                return Err(message);
            }
            Err(_) => return Err("the gateway thread ended before it started serving".to_string()),
        };
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is joinable and not joined, so its pthread_t is valid.
        let cpu_clock = (unsafe { libc::pthread_getcpuclockid(started.thread, &mut clock) } == 0).then_some(clock);
        Ok(Gateway { address: started.address, shared, shutdown, done: Mutex::new(Some(done)), thread: Some(thread), cpu_clock })
    }

    fn take_done(&self) -> Option<std::sync::mpsc::Receiver<ShutdownReport>> {
        self.done.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    /// Returns the 127.0.0.1 address that clients send requests to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }

    pub fn gauge(&self) -> FleetGauge {
        FleetGauge(Arc::clone(&self.shared))
    }

    pub fn stats(&self) -> GatewayStats {
        let pool = self.shared.pool();
        GatewayStats {
            counters: pool.counters(),
            instances: pool.instance_count(),
            peak_instances: pool.peak_instances(),
            instance_seconds: pool.instance_seconds(Instant::now()),
            queue_length: pool.queue_length(),
            destroy_failures: self.shared.destroy_failures.lock().expect("no code panics while holding the lock").len()
                as u64,
        }
    }

    /// Returns every recorded request, in the order the responses were ready.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.shared.records.lock().expect("no code panics while holding the lock").clone()
    }

    /// Returns the ready sandboxes, busy or idle.
    pub fn live_sandboxes(&self) -> Vec<LaunchedSandbox> {
        self.shared.pool().sandboxes().iter().map(|sandbox| sandbox.launched.clone()).collect()
    }

    /// CPU time of the gateway thread so far: its accept loop, forwarding, engine calls
    /// and probes of starting sandboxes.
    pub fn gateway_cpu(&self) -> Option<Duration> {
        let stored = |shared: &Shared| *shared.final_cpu.lock().expect("no code panics while holding the lock");
        if let Some(final_cpu) = stored(&self.shared) {
            return Some(final_cpu);
        }
        let running = self.cpu_clock.and_then(clock_time);
        // The thread may have ended between the two reads; its stored value is exact.
        stored(&self.shared).or(running)
    }

    /// Memory and CPU of the ready sandboxes, and the CPU of every sandbox so far.
    pub fn accounting(&self) -> Result<GatewayAccounting, String> {
        let sandboxes = self.shared.pool().sandboxes();
        let mut usage = SandboxUsage::default();
        for sandbox in &sandboxes {
            let one = self.shared.backend.usage(&sandbox.launched)?;
            usage.memory_bytes += one.memory_bytes;
            usage.runtime_bytes += one.runtime_bytes;
            usage.cpu_time += one.cpu_time;
        }
        let retired = *self.shared.retired_cpu.lock().expect("no code panics while holding the lock");
        Ok(GatewayAccounting {
            live_sandboxes: sandboxes.len(),
            usage,
            sandbox_cpu: retired + usage.cpu_time,
            gateway_cpu: self.gateway_cpu(),
        })
    }

    /// Stops accepting, rejects queued requests, and removes every sandbox. Returns an
    /// error naming each sandbox that could not be removed.
    pub async fn shutdown(mut self) -> Result<ShutdownReport, String> {
        let _ = self.shutdown.send(true);
        let done = self.take_done().expect("only shutdown and drop take it");
        let thread = self.thread.take();
        let limit = self.shared.config.ready_timeout + SHUTDOWN_MARGIN * 2;
        let name = self.shared.config.name.clone();
        let waited = tokio::task::spawn_blocking(move || {
            let report = done.recv_timeout(limit);
            if report.is_ok() {
                if let Some(thread) = thread {
                    let _ = thread.join();
                }
            }
            report
        })
        .await
        .map_err(|error| format!("the wait for gateway {name} failed: {error}"))?;
        match waited {
            Ok(report) if report.failures.is_empty() => Ok(report),
            Ok(report) => Err(report.failures.join("; ")),
            Err(_) => Err(format!("gateway {name} did not shut down within {limit:?}")),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let Some(done) = self.take_done() else { return };
        let _ = self.shutdown.send(true);
        let limit = self.shared.config.ready_timeout + SHUTDOWN_MARGIN * 2;
        match done.recv_timeout(limit) {
            Ok(report) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                for failure in &report.failures {
                    tracing::error!(gateway = %self.shared.config.name, error = %failure, "sandbox left behind at drop");
                }
            }
            Err(_) => tracing::error!(
                gateway = %self.shared.config.name,
                "the gateway did not shut down within {limit:?} of its drop; its sandboxes may remain until the next run removes them",
            ),
        }
    }
}
