//! HTTP/1.1 load generator that measures latency without coordinated omission.
//!
//! [`run_open_loop`] sends requests on a fixed schedule, as wrk2 does. Each of
//! `connections` workers owns one keep-alive connection and sends at
//! `rate_per_s / connections`, and the workers are staggered so that all sends together
//! are evenly spaced. A slow response never moves a worker's next send time. Instead,
//! a late send leaves at once and its lateness counts in the latency. A stall in the
//! service therefore shows up in [`LoadReport::corrected`], measured from each request's
//! intended send time, while [`LoadReport::uncorrected`] contains the service time alone.
//!
//! [`run_load`] runs the other [`Workload`] models too: Poisson arrivals, a closed
//! loop, and a new connection per request. Every report carries per-second statistics,
//! which [`write_outputs`] stores as an HdrHistogram interval log and a CSV file, and
//! the verdict of the saturation guard in [`validity`].

pub mod cli;
pub mod connection;
mod cpu;
mod error;
mod interval;
mod output;
mod report;
mod schedule;
mod spec;
mod summary;
mod ticker;
pub mod validity;
mod worker;
mod workload;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use error::LoadError;
pub use interval::IntervalStats;
pub use output::{write_outputs, OutputFiles, CSV_FILE, HLOG_FILE};
pub use report::{ErrorKind, LoadReport};
pub use spec::LoadSpec;
pub use summary::{LatencySummary, LoadSummary};
pub use workload::{Arrival, ConnectionReuse, Workload};

use connection::{Connection, RequestTemplate};
use interval::IntervalStore;
use report::{new_histogram, record_duration};
use schedule::Schedule;
use worker::{Worker, WorkerStats};

/// Time between the end of the initial connects and the first intended send, so that
/// every worker task is running before its first send is due.
const START_LEAD: Duration = Duration::from_millis(10);

/// Runs the open-loop load described by `spec` at a constant rate over keep-alive
/// connections, the default [`Workload`], and returns what the measured window saw.
///
/// See [`run_load`] for the errors and the time the run takes.
pub async fn run_open_loop(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    run_load(spec, Workload::default()).await
}

/// Runs the load described by `spec` with the given workload model and returns what
/// the measured window saw, including whether the run is valid.
///
/// With keep-alive, opens all connections first and fails with
/// [`LoadError::Unreachable`] if none of them opens. Workers whose first connect failed
/// try again at their first send. With a new connection per request, one probe connect
/// that is not counted in the report checks the target instead. No request leaves after
/// `warmup + duration`. A request still in flight then takes at most two more
/// `request_timeout` periods: a connect, and the request itself, which includes one
/// resend over a new connection when a kept-alive one turns out to be closed.
pub async fn run_load(spec: &LoadSpec, workload: Workload) -> Result<LoadReport, LoadError> {
    spec.validate_for(workload)?;
    let per_request = workload.connection_reuse == ConnectionReuse::PerRequest;
    let template = RequestTemplate::new(&spec.parse_uri()?, spec.target, per_request);
    tracing::info!(
        target_addr = %spec.target,
        path = %spec.path,
        rate_per_s = spec.rate_per_s,
        connections = spec.connections,
        warmup = ?spec.warmup,
        duration = ?spec.duration,
        %workload,
        "starting load"
    );

    let cpu_before = cpu::process_cpu_time();
    let run_began = Instant::now();
    let (connections, connect_time) = if per_request {
        probe_target(spec).await?;
        ((0..spec.connections).map(|_| None).collect(), new_histogram())
    } else {
        open_connections(spec).await?
    };

    let start = Instant::now() + START_LEAD;
    let schedule = Arc::new(spec.schedule(start, workload.arrival));
    let window_start_time = SystemTime::now() + START_LEAD + spec.warmup;
    let wakers = if workload.arrival.is_open_loop() {
        ticker::start(&schedule)
    } else {
        (0..spec.connections).map(|_| Notify::new()).collect()
    };
    let intervals: IntervalStore = Arc::new(Mutex::new(Vec::new()));
    let context = WorkerContext {
        spec,
        workload,
        schedule: &schedule,
        wakers,
        template,
        intervals: &intervals,
    };
    let workers = run_workers(context, connections).await?;

    let mut report = LoadReport::from_workers(spec, workload, &schedule, workers, connect_time);
    report.per_second = interval::take_intervals(&intervals);
    report.window_start_time = window_start_time;
    assess_generator(&mut report, run_began, cpu_before);

    tracing::info!(
        target_addr = %spec.target,
        achieved_rps = report.achieved_rps,
        sent = report.sent,
        completed = report.completed,
        errors = ?report.errors,
        late_sends = report.late_sends,
        valid = report.valid,
        "load finished"
    );
    for reason in &report.invalid_reasons {
        tracing::warn!(target_addr = %spec.target, %reason, "load run is invalid");
    }
    Ok(report)
}

/// Fills in the generator's run time and CPU figures and the validity of `report`.
fn assess_generator(report: &mut LoadReport, run_began: Instant, cpu_before: std::io::Result<Duration>) {
    report.run_time = run_began.elapsed();
    report.cpu_capacity = cpu::capacity();
    match (cpu_before, cpu::process_cpu_time()) {
        (Ok(before), Ok(after)) => report.generator_cpu = after.saturating_sub(before),
        // NOTE: the CPU figures then stay at 0, so the CPU check passes.
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "cannot read the CPU time of the generator, so the CPU check is skipped");
        }
    }
    report.invalid_reasons = validity::invalid_reasons(report);
    report.valid = report.invalid_reasons.is_empty();
}

/// Opens and closes one connection, so that a run with a new connection per request
/// fails with [`LoadError::Unreachable`] like a keep-alive run when nothing listens.
async fn probe_target(spec: &LoadSpec) -> Result<(), LoadError> {
    match Connection::open(spec.target, spec.request_timeout).await {
        Ok(_) => Ok(()),
        Err(cause) => Err(LoadError::Unreachable {
            target: spec.target,
            connections: 1,
            cause,
        }),
    }
}

/// Opens all connections at once. Returns one slot per worker, empty where the connect
/// failed, and the connect times, or [`LoadError::Unreachable`] if none opened.
async fn open_connections(spec: &LoadSpec) -> Result<(Vec<Option<Connection>>, Histogram<u64>), LoadError> {
    let mut connect_time = new_histogram();
    let attempts = (0..spec.connections).map(|_| async {
        let began = Instant::now();
        let result = Connection::open(spec.target, spec.request_timeout).await;
        (result, began.elapsed())
    });
    let mut connections = Vec::with_capacity(spec.connections);
    let mut first_error = None;
    for (index, (result, elapsed)) in join_all(attempts).await.into_iter().enumerate() {
        match result {
            Ok(connection) => {
                record_duration(&mut connect_time, elapsed);
                connections.push(Some(connection));
            }
            Err(error) => {
                tracing::warn!(worker = index, target_addr = %spec.target, %error, "initial connect failed, the worker retries at its first send");
                first_error.get_or_insert(error);
                connections.push(None);
            }
        }
    }
    if connections.iter().all(Option::is_none) {
        return Err(LoadError::Unreachable {
            target: spec.target,
            connections: spec.connections,
            cause: first_error.expect("at least one connect was attempted and failed"),
        });
    }
    Ok((connections, connect_time))
}

/// The inputs shared by all workers of a run.
struct WorkerContext<'a> {
    spec: &'a LoadSpec,
    workload: Workload,
    schedule: &'a Arc<Schedule>,
    wakers: Arc<[Notify]>,
    template: RequestTemplate,
    intervals: &'a IntervalStore,
}

/// Runs one worker task per connection and collects their samples.
async fn run_workers(
    context: WorkerContext<'_>,
    connections: Vec<Option<Connection>>,
) -> Result<Vec<WorkerStats>, LoadError> {
    // A JoinSet aborts the workers if the caller drops this future before they finish.
    let mut tasks = JoinSet::new();
    let mut task_workers = HashMap::new();
    let logged_kinds = Arc::new(AtomicU32::new(0));
    for (index, connection) in connections.into_iter().enumerate() {
        let worker = Worker {
            index,
            schedule: Arc::clone(context.schedule),
            wakers: Arc::clone(&context.wakers),
            logged_kinds: Arc::clone(&logged_kinds),
            template: context.template.clone(),
            target: context.spec.target,
            request_timeout: context.spec.request_timeout,
            workload: context.workload,
            intervals: Arc::clone(context.intervals),
        };
        let handle = tasks.spawn(worker.run(connection));
        task_workers.insert(handle.id(), index);
    }

    let mut workers = Vec::with_capacity(context.spec.connections);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(stats) => workers.push(stats),
            Err(cause) => {
                // Every task id was inserted when its task was spawned.
                let index = task_workers[&cause.id()];
                return Err(LoadError::Worker { index, cause });
            }
        }
    }
    Ok(workers)
}
