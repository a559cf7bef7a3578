//! One worker: one connection, its share of the schedule, and its own histograms.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::StatusCode;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::connection::{Connection, ExchangeError, RequestTemplate};
use super::interval::{IntervalRecorder, IntervalStore};
use super::report::{new_histogram, record_duration, ErrorKind};
use super::schedule::Schedule;
use super::validity::GENERATOR_LAG_LIMIT;
use super::workload::{ConnectionReuse, Workload};

/// A send that leaves later than this after its intended time counts as late.
pub(super) const LATE_THRESHOLD: Duration = Duration::from_millis(1);

/// Pause of a closed-loop worker after a failed connect before it tries again.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(1);

/// Samples and counts of one worker. All of them cover only requests intended in the
/// measured window, except `connect_time`, which covers every connect of the worker.
#[derive(Debug)]
pub(super) struct WorkerStats {
    pub scheduled: u64,
    pub sent: u64,
    pub completed: u64,
    pub unsent: u64,
    pub connects: u64,
    pub reconnects: u64,
    pub late_sends: u64,
    pub generator_late_sends: u64,
    pub max_send_lag: Duration,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    pub connect_time: Histogram<u64>,
    pub generator_lag: Histogram<u64>,
    /// When the worker's last request finished or gave up.
    pub finished: Instant,
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            scheduled: 0,
            sent: 0,
            completed: 0,
            unsent: 0,
            connects: 0,
            reconnects: 0,
            late_sends: 0,
            generator_late_sends: 0,
            max_send_lag: Duration::ZERO,
            errors: BTreeMap::new(),
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            connect_time: new_histogram(),
            generator_lag: new_histogram(),
            finished: Instant::now(),
        }
    }
}

/// The fixed inputs of one worker task.
pub(super) struct Worker {
    pub index: usize,
    pub schedule: Arc<Schedule>,
    /// One entry per worker, notified by the timer thread at each intended send time of
    /// an open loop. Closed loops have no timer thread and never wait on them.
    pub wakers: Arc<[Notify]>,
    /// Bit set of the [`ErrorKind`]s already logged by any worker of the run, indexed by
    /// discriminant.
    pub logged_kinds: Arc<AtomicU32>,
    pub template: RequestTemplate,
    pub target: SocketAddr,
    pub request_timeout: Duration,
    pub workload: Workload,
    pub intervals: IntervalStore,
}

/// Mutable state of a running worker.
struct WorkerState {
    stats: WorkerStats,
    connection: Option<Connection>,
    intervals: IntervalRecorder,
}

impl Worker {
    /// Sends this worker's share of the load over `connection`, reconnecting after
    /// failures, and returns its samples. Its per-second statistics go to `intervals`.
    pub async fn run(self, connection: Option<Connection>) -> WorkerStats {
        let mut state = WorkerState {
            stats: WorkerStats::new(),
            connection,
            intervals: IntervalRecorder::new(self.schedule.window_start(), Arc::clone(&self.intervals)),
        };
        if self.workload.arrival.is_open_loop() {
            self.run_paced(&mut state).await;
        } else {
            self.run_closed(&mut state).await;
        }
        state.intervals.flush();
        state.stats.finished = Instant::now();
        state.stats
    }

    /// Sends at the intended times of the schedule, however late the previous response.
    async fn run_paced(&self, state: &mut WorkerState) {
        let deadline = self.schedule.deadline();
        let waker = &self.wakers[self.index];
        let mut sends = self.schedule.sends(self.index);

        while let Some(send) = sends.next() {
            if send.in_window {
                state.stats.scheduled += 1;
            }
            // A worker that fell behind stops at the deadline and leaves its backlog unsent.
            // NOTE: unsent requests get no latency sample, although each waited at least
            // from its intended time to the deadline, so an overloaded run understates
            // the corrected latency. `unsent` in the report counts them.
            if Instant::now() >= deadline {
                let rest = sends.filter(|send| send.in_window).count() as u64;
                state.stats.scheduled += rest;
                state.stats.unsent += rest + u64::from(send.in_window);
                break;
            }

            let idle = Instant::now() < send.intended;
            wait_until(send.intended, waker).await;
            if idle && send.in_window {
                let lag = Instant::now() - send.intended;
                record_duration(&mut state.stats.generator_lag, lag);
                if lag > GENERATOR_LAG_LIMIT {
                    state.stats.generator_late_sends += 1;
                }
            }
            self.attempt(state, send.intended, send.in_window).await;
        }
    }

    /// Sends each request as soon as the previous one finished, until the deadline.
    async fn run_closed(&self, state: &mut WorkerState) {
        let deadline = self.schedule.deadline();
        let window_start = self.schedule.window_start();
        // Starting together at the schedule's start keeps the warm-up exactly `warmup`.
        tokio::time::sleep_until(self.schedule.start).await;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let in_window = now >= window_start;
            if in_window {
                state.stats.scheduled += 1;
            }
            let kind = self.attempt(state, now, in_window).await;
            if kind == Some(ErrorKind::Connect) {
                // A refused connect fails within microseconds, so without a pause the
                // worker would spin on the CPU for the rest of the run.
                tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
            }
        }
    }

    /// Sends one request intended at `intended`, counts its outcome and logs the first
    /// error of each kind in the run. Returns the kind of a failure.
    async fn attempt(&self, state: &mut WorkerState, intended: Instant, in_window: bool) -> Option<ErrorKind> {
        let Err((kind, message)) = self.send(state, intended, in_window).await else {
            return None;
        };
        if in_window {
            *state.stats.errors.entry(kind).or_insert(0) += 1;
            state.intervals.record_error(Instant::now());
        }
        // Log the first error of each kind in the run and only count the rest.
        let bit = 1u32 << kind as u32;
        if self.logged_kinds.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::warn!(
                worker = self.index,
                target_addr = %self.target,
                kind = kind.as_str(),
                error = %message,
                in_window,
                "load request failed, later errors of this kind are only counted"
            );
        }
        Some(kind)
    }

    /// Sends one request and reads its response. Returns the error kind and message of
    /// a failed request, including a response whose status is not 2xx.
    ///
    /// With a new connection per request, the uncorrected latency starts before the
    /// connect, because a client of that kind waits for the connect too.
    async fn send(
        &self,
        state: &mut WorkerState,
        intended: Instant,
        in_window: bool,
    ) -> Result<(), (ErrorKind, String)> {
        let per_request = self.workload.connection_reuse == ConnectionReuse::PerRequest;
        let began = Instant::now();
        if let Err(error) = self.ensure_connection(state, in_window).await {
            return Err((ErrorKind::Connect, error.to_string()));
        }
        let sent_at = if per_request { began } else { Instant::now() };

        let result = tokio::time::timeout(self.request_timeout, self.exchange(state, in_window)).await;
        let done = Instant::now();
        if !matches!(result, Ok(Ok(_))) {
            // The connection's state is unknown after a failed or abandoned request.
            state.connection = None;
        }

        if in_window {
            let stats = &mut state.stats;
            stats.sent += 1;
            let lag = sent_at.saturating_duration_since(intended);
            if lag > LATE_THRESHOLD {
                stats.late_sends += 1;
            }
            stats.max_send_lag = stats.max_send_lag.max(lag);
            state.intervals.record_send(sent_at);
        }

        let status = match result {
            Ok(Ok(status)) => status,
            Ok(Err(failure)) => return Err(failure),
            Err(_) => {
                let message = format!("no complete response within {:?}", self.request_timeout);
                return Err((ErrorKind::Timeout, message));
            }
        };
        if in_window {
            let corrected = done - intended;
            let uncorrected = done - sent_at;
            state.stats.completed += 1;
            record_duration(&mut state.stats.corrected, corrected);
            record_duration(&mut state.stats.uncorrected, uncorrected);
            state.intervals.record_completion(done, corrected, uncorrected);
        }
        match ErrorKind::from_status(status) {
            Some(kind) => Err((kind, format!("response status {status}"))),
            None => Ok(()),
        }
    }

    /// Runs the request over `state.connection`, which must be open.
    ///
    /// A keep-alive connection that the server closed while it was idle fails before
    /// any response byte arrives. A `GET` is idempotent, so the request then goes once
    /// more over a new connection, as RFC 9110 (section 9.2.2) allows.
    async fn exchange(&self, state: &mut WorkerState, in_window: bool) -> Result<StatusCode, (ErrorKind, String)> {
        let connection = state
            .connection
            .as_mut()
            .expect("ensure_connection opened a connection");
        match connection.exchange(&self.template).await {
            Ok(status) => return Ok(status),
            Err(ExchangeError::Io(error)) => return Err((ErrorKind::Io, error.to_string())),
            Err(ExchangeError::Stale(error)) => {
                tracing::debug!(worker = self.index, %error, "keep-alive connection was closed, sending again on a new one");
            }
        }
        state.connection = None;
        if let Err(error) = self.ensure_connection(state, in_window).await {
            return Err((ErrorKind::Connect, error.to_string()));
        }
        let connection = state
            .connection
            .as_mut()
            .expect("ensure_connection opened a connection");
        connection
            .exchange(&self.template)
            .await
            .map_err(|error| (ErrorKind::Io, error.to_string()))
    }

    /// Makes `state.connection` a connection that accepts a request: a new one for every
    /// request with [`ConnectionReuse::PerRequest`], else the current one, replaced if
    /// there is none or it cannot carry another request.
    async fn ensure_connection(&self, state: &mut WorkerState, in_window: bool) -> io::Result<()> {
        let keep_alive = self.workload.connection_reuse == ConnectionReuse::KeepAlive;
        if keep_alive && state.connection.as_ref().is_some_and(Connection::is_reusable) {
            return Ok(());
        }

        let began = Instant::now();
        state.connection = None;
        let connection = Connection::open(self.target, self.request_timeout).await?;
        record_duration(&mut state.stats.connect_time, began.elapsed());
        if in_window {
            state.stats.connects += 1;
            if keep_alive {
                state.stats.reconnects += 1;
            }
        }
        state.connection = Some(connection);
        Ok(())
    }
}

/// Waits until `when`, woken by the timer thread through `waker`, or by a tokio timer
/// if that thread is missing.
async fn wait_until(when: Instant, waker: &Notify) {
    // The loop skips a permit that the timer thread stored for an earlier send while
    // this worker was still busy with a late request.
    while Instant::now() < when {
        tokio::select! {
            () = waker.notified() => {}
            () = tokio::time::sleep_until(when) => {}
        }
    }
}
