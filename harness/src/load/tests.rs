//! Runs of the load generator against in-process hyper servers on 127.0.0.1.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::*;

/// Starts a hyper HTTP/1.1 server on a free 127.0.0.1 port that responds to every
/// request with `handler`. It runs until the test's runtime shuts down.
async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_counting(handler).await.0
}

/// Starts a server like [`serve`] and also returns the number of connections it
/// accepted so far.
async fn serve_counting<F, Fut>(handler: F) -> (SocketAddr, Arc<AtomicU64>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address of the test server");
    let accepts = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepts);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let handler = handler.clone();
            let service = service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(request).await) }
            });
            tokio::spawn(async move {
                // Errors here are the client hanging up, which some tests do on purpose.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, accepts)
}

fn respond(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    *response.status_mut() = status;
    response
}

fn spec(target: SocketAddr, rate_per_s: f64, connections: usize, duration_ms: u64) -> LoadSpec {
    LoadSpec {
        target,
        path: "/work?n=1".to_owned(),
        rate_per_s,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::ZERO,
        connections,
        request_timeout: Duration::from_secs(5),
    }
}

/// Asserts that each request intended in the window was counted exactly once, as sent,
/// as unsent at the deadline, or as lost to a failed connect.
fn assert_all_requests_accounted(spec: &LoadSpec, report: &LoadReport) {
    let scheduled = spec
        .schedule(Instant::now(), report.workload.arrival)
        .measured_requests();
    let connect_errors = report.errors.get("connect").copied().unwrap_or(0);
    assert_eq!(
        report.sent + report.unsent + connect_errors,
        scheduled,
        "sent {} + unsent {} + connect errors {connect_errors} should equal the {scheduled} scheduled requests",
        report.sent,
        report.unsent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_matches_target_rate() {
    let target = serve(|_| async { respond(StatusCode::OK) }).await;
    let spec = LoadSpec {
        warmup: Duration::from_millis(500),
        ..spec(target, 200.0, 4, 2000)
    };

    let report = run_open_loop(&spec).await.expect("load run");

    // The 100 warm-up requests must not count, so exactly 400 are expected.
    assert!(
        (392..=408).contains(&report.completed),
        "completed {} is not within 2% of 400",
        report.completed
    );
    assert!(
        (report.achieved_rps - 200.0).abs() <= 4.0,
        "achieved_rps {} is not within 2% of 200",
        report.achieved_rps
    );
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
    assert_eq!(report.unsent, 0);
    assert_eq!(report.sent, report.completed);
    assert_eq!(report.corrected.len(), report.completed);
    assert_eq!(report.uncorrected.len(), report.completed);
    assert_eq!(report.connect_time.len(), 4, "one connect per connection");
    assert_eq!(report.target_rps, 200.0);
    assert!(report.measured >= spec.duration, "measured {:?}", report.measured);
    assert_all_requests_accounted(&spec, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_measures_fixed_service_delay() {
    let target = serve(|_| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        respond(StatusCode::OK)
    })
    .await;
    let spec = LoadSpec {
        warmup: Duration::from_millis(200),
        ..spec(target, 50.0, 4, 2000)
    };

    let report = run_open_loop(&spec).await.expect("load run");

    // The server sleeps at least 20 ms. Tokio timers add up to 1 ms, and the histogram
    // rounds up by 0.1%, so the rest of the 5 ms margin is left for scheduling.
    let uncorrected_p50 = LoadReport::percentile_ms(&report.uncorrected, 0.5);
    assert!(
        uncorrected_p50 >= 20.0,
        "uncorrected p50 {uncorrected_p50} ms is below the 20 ms sleep"
    );
    assert!(
        uncorrected_p50 <= 25.0,
        "uncorrected p50 {uncorrected_p50} ms is far above the 20 ms sleep"
    );
    let corrected_p50 = LoadReport::percentile_ms(&report.corrected, 0.5);
    assert!(
        corrected_p50 >= uncorrected_p50,
        "corrected p50 {corrected_p50} ms is below uncorrected p50 {uncorrected_p50} ms"
    );
    // No response can arrive before the sleep ends, and the lowest value equivalent to
    // a sample never exceeds it.
    assert!(
        report.uncorrected.min() >= 20_000,
        "fastest service time {} µs is below the 20 ms sleep",
        report.uncorrected.min()
    );
    assert_eq!(report.completed, 100);
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_shows_in_corrected_latency() {
    const STALL_AFTER: Duration = Duration::from_secs(4);
    const STALL: Duration = Duration::from_secs(1);
    // Every request that arrives in [first + 4 s, first + 5 s) waits until the stall ends.
    let first_request = Arc::new(OnceLock::new());
    let target = serve(move |_| {
        let first_request = Arc::clone(&first_request);
        async move {
            let first = *first_request.get_or_init(Instant::now);
            let stall_end = first + STALL_AFTER + STALL;
            let now = Instant::now();
            if now >= first + STALL_AFTER && now < stall_end {
                tokio::time::sleep_until(stall_end).await;
            }
            respond(StatusCode::OK)
        }
    })
    .await;
    let spec = spec(target, 100.0, 4, 10_000);

    let report = run_open_loop(&spec).await.expect("load run");

    assert_eq!(report.completed, 1000);
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);

    // About 100 of the 1000 requests were intended during the stall and waited for
    // its end, so their corrected latencies spread from 0 to 1 s and fill the top 10%.
    // p99 is then the request intended about 100 ms after the stall began.
    let corrected_p99 = LoadReport::percentile_ms(&report.corrected, 0.99);
    assert!(
        corrected_p99 >= 500.0,
        "corrected p99 {corrected_p99} ms does not show the 1 s stall"
    );
    assert!(
        corrected_p99 <= 1100.0,
        "corrected p99 {corrected_p99} ms exceeds the 1 s stall"
    );

    // Only the one request in flight on each of the 4 connections waits out the stall
    // as service time. That is 4 of 1000 samples, 0.4%, so p99 stays a normal response.
    let slow_service = report.uncorrected.count_between(500_000, u64::MAX);
    assert!(
        slow_service >= 1,
        "no service time above 500 ms, so the stall was not seen"
    );
    assert!(
        slow_service <= 4,
        "{slow_service} service times above 500 ms, expected at most one per connection"
    );
    let uncorrected_p99 = LoadReport::percentile_ms(&report.uncorrected, 0.99);
    assert!(
        uncorrected_p99 < 100.0,
        "uncorrected p99 {uncorrected_p99} ms includes the stall"
    );

    // The requests queued behind the stalled ones left late, by up to the stall.
    assert!(
        report.late_sends >= 50,
        "late_sends {} is too low for a 1 s stall",
        report.late_sends
    );
    assert!(
        report.max_send_lag >= Duration::from_millis(500),
        "max_send_lag {:?}",
        report.max_send_lag
    );

    // A stall of the instance is what the run measures, not a generator limit.
    assert!(report.valid, "invalid: {:?}", report.invalid_reasons);
    assert!(
        report.generator_late_sends <= report.late_sends / 10,
        "{} of {} late sends blamed on the generator",
        report.generator_late_sends,
        report.late_sends
    );
}

#[tokio::test]
async fn unreachable_target_returns_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let target = listener.local_addr().expect("local address");
    drop(listener);

    let result = run_open_loop(&spec(target, 10.0, 2, 500)).await;

    let error = result.expect_err("a port with no listener should fail the run");
    assert!(
        matches!(error, LoadError::Unreachable { .. }),
        "unexpected error: {error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&target.to_string()),
        "message does not name the target: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_count_as_status_5xx() {
    let target = serve(|_| async { respond(StatusCode::INTERNAL_SERVER_ERROR) }).await;
    let spec = spec(target, 100.0, 2, 1000);

    let report = run_open_loop(&spec).await.expect("load run");

    assert_eq!(report.completed, 100);
    assert_eq!(report.errors.get("status_5xx"), Some(&report.completed));
    assert_eq!(report.error_count(), report.completed, "errors: {:?}", report.errors);
    assert_eq!(
        report.corrected.len(),
        report.completed,
        "error responses still have a latency"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_responses_count_as_timeouts() {
    let target = serve(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        respond(StatusCode::OK)
    })
    .await;
    let spec = LoadSpec {
        request_timeout: Duration::from_millis(200),
        ..spec(target, 20.0, 2, 1000)
    };

    let report = run_open_loop(&spec).await.expect("load run");

    assert_eq!(report.completed, 0);
    assert!(report.sent > 0, "no request was sent");
    assert_eq!(
        report.errors.get("timeout"),
        Some(&report.sent),
        "errors: {:?}",
        report.errors
    );
    assert!(report.reconnects > 0, "a timed-out connection should be replaced");
    assert!(
        report.unsent > 0,
        "sends of 200 ms each cannot keep up with one every 100 ms per worker"
    );
    assert_all_requests_accounted(&spec, &report);
    // One request, one reconnect and one readiness wait of 200 ms each at most follow
    // the deadline. The extra second is slack for a loaded machine.
    let bound = spec.duration + 3 * spec.request_timeout + Duration::from_secs(1);
    assert!(
        report.measured <= bound,
        "measured {:?} exceeds {bound:?}",
        report.measured
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_are_replaced() {
    let target = serve(|_| async {
        let mut response = respond(StatusCode::OK);
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        response
    })
    .await;
    let spec = spec(target, 100.0, 2, 1000);

    let report = run_open_loop(&spec).await.expect("load run");

    assert_eq!(report.completed, 100);
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
    // Each worker's first request uses its initial connection and every later one a new one.
    assert_eq!(report.reconnects, 98);
    assert_eq!(report.connect_time.len(), 100);
}

#[test]
fn invalid_spec_names_field() {
    let target: SocketAddr = "127.0.0.1:9".parse().expect("socket address");
    let valid = spec(target, 10.0, 1, 1000);
    let cases = [
        (
            "rate_per_s",
            LoadSpec {
                rate_per_s: 0.0,
                ..valid.clone()
            },
        ),
        (
            "rate_per_s",
            LoadSpec {
                rate_per_s: -5.0,
                ..valid.clone()
            },
        ),
        (
            "rate_per_s",
            LoadSpec {
                rate_per_s: f64::NAN,
                ..valid.clone()
            },
        ),
        (
            "rate_per_s",
            LoadSpec {
                rate_per_s: f64::INFINITY,
                ..valid.clone()
            },
        ),
        // Sends fall at 0 s and 2 s, so none lands in the window from 1 s to 1.1 s.
        (
            "rate_per_s",
            LoadSpec {
                rate_per_s: 0.5,
                warmup: Duration::from_secs(1),
                duration: Duration::from_millis(100),
                ..valid.clone()
            },
        ),
        (
            "rate_per_s",
            LoadSpec {
                rate_per_s: 1e300,
                ..valid.clone()
            },
        ),
        (
            "connections",
            LoadSpec {
                connections: 0,
                ..valid.clone()
            },
        ),
        (
            "duration",
            LoadSpec {
                duration: Duration::ZERO,
                ..valid.clone()
            },
        ),
        (
            "duration",
            LoadSpec {
                duration: Duration::MAX,
                ..valid.clone()
            },
        ),
        (
            "request_timeout",
            LoadSpec {
                request_timeout: Duration::ZERO,
                ..valid.clone()
            },
        ),
        (
            "path",
            LoadSpec {
                path: "work".to_owned(),
                ..valid.clone()
            },
        ),
        (
            "path",
            LoadSpec {
                path: "/a b".to_owned(),
                ..valid.clone()
            },
        ),
    ];

    assert!(valid.validate().is_ok(), "the base spec should be valid");
    for (field, spec) in cases {
        let Err(error) = spec.validate() else {
            panic!("{spec:?} passed validation, expected an invalid {field}");
        };
        let message = error.to_string();
        assert!(
            matches!(&error, LoadError::InvalidSpec { field: named, .. } if *named == field),
            "expected an invalid {field}, got: {message}"
        );
        assert!(message.contains(field), "message does not name {field}: {message}");
    }
}

#[tokio::test]
async fn invalid_spec_sends_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let target = listener.local_addr().expect("local address");
    let spec = LoadSpec {
        connections: 0,
        ..spec(target, 10.0, 1, 1000)
    };

    let result = run_open_loop(&spec).await;

    assert!(matches!(
        result,
        Err(LoadError::InvalidSpec {
            field: "connections",
            ..
        })
    ));
    let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
    assert!(accepted.is_err(), "the run connected despite an invalid spec");
}

/// Starts a server whose every response takes `delay`.
async fn serve_delayed(delay: Duration) -> SocketAddr {
    serve(move |_| async move {
        tokio::time::sleep(delay).await;
        respond(StatusCode::OK)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_accurate_over_ten_seconds() {
    let target = serve(|_| async { respond(StatusCode::OK) }).await;
    let spec = spec(target, 200.0, 4, 10_000);

    let report = run_open_loop(&spec).await.expect("load run");

    assert_eq!(report.scheduled, 2000);
    assert_eq!(report.sent, 2000);
    assert_eq!(report.completed, 2000);
    assert_eq!(report.unsent, 0);
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
    assert!(
        (report.achieved_rps - 200.0).abs() <= 2.0,
        "achieved_rps {} is not within 1% of 200",
        report.achieved_rps
    );
    assert_eq!(report.scheduled_rps, 200.0);
    assert!(report.valid, "invalid: {:?}", report.invalid_reasons);
    assert!(
        report.generator_cpu > Duration::ZERO,
        "the generator's CPU time was not measured"
    );

    // Sends are 5 ms apart, so each whole second contains 200 of them, give or take the
    // one send nearest each boundary.
    let seconds = &report.per_second;
    assert!(
        (10..=11).contains(&seconds.len()),
        "{} per-second intervals for a 10 s window",
        seconds.len()
    );
    for (index, interval) in seconds.iter().enumerate() {
        assert_eq!(interval.second, index as u64);
    }
    for interval in &seconds[..10] {
        assert!(
            (198..=202).contains(&interval.sent),
            "second {} sent {}, expected 200 ± 1%",
            interval.second,
            interval.sent
        );
    }
    let sent: u64 = seconds.iter().map(|interval| interval.sent).sum();
    let completed: u64 = seconds.iter().map(|interval| interval.completed).sum();
    let latencies: u64 = seconds.iter().map(|interval| interval.corrected.len()).sum();
    assert_eq!(sent, report.sent);
    assert_eq!(completed, report.completed);
    assert_eq!(latencies, report.corrected.len());
}

#[test]
fn percentiles_within_histogram_precision() {
    let mut histogram = report::new_histogram();
    for millis in 1..=1000u64 {
        record_duration(&mut histogram, Duration::from_millis(millis));
    }

    // 3 significant digits: a reported value is at most 0.1% above the sample.
    for (quantile, expected_ms) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0), (1.0, 1000.0)] {
        let value = LoadReport::percentile_ms(&histogram, quantile);
        assert!(
            value >= expected_ms,
            "p{} {value} ms is below the sample {expected_ms} ms",
            quantile * 100.0
        );
        assert!(
            value <= expected_ms * 1.001,
            "p{} {value} ms exceeds {expected_ms} ms by more than 0.1%",
            quantile * 100.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisson_run_follows_seeded_schedule() {
    let target = serve(|_| async { respond(StatusCode::OK) }).await;
    let spec = spec(target, 200.0, 4, 1000);
    let workload = Workload {
        arrival: Arrival::Poisson { seed: 42 },
        ..Workload::default()
    };
    let expected = spec.schedule(Instant::now(), workload.arrival).measured_requests();

    let report = run_load(&spec, workload).await.expect("load run");

    assert_eq!(report.workload, workload);
    assert_eq!(report.scheduled, expected);
    assert_eq!(report.completed, expected);
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
    assert_eq!(report.target_rps, 200.0);
    assert_eq!(report.scheduled_rps, expected as f64);
    // 200 expected arrivals have a standard deviation of about 14.
    assert!(
        (140..=260).contains(&expected),
        "{expected} arrivals in 1 s at 200 req/s"
    );
    assert_all_requests_accounted(&spec, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_throughput_is_connections_over_delay() {
    const DELAY: Duration = Duration::from_millis(20);
    let target = serve_delayed(DELAY).await;
    let spec = spec(target, 0.0, 4, 2000);
    let workload = Workload {
        arrival: Arrival::Closed,
        ..Workload::default()
    };

    let report = run_load(&spec, workload).await.expect("load run");

    // 4 connections of one 20 ms request at a time carry at most 4 / 20 ms = 200 req/s,
    // so at most 4 × (2 s / 20 ms + 1) = 404 requests leave in the 2 s window.
    assert!(report.completed <= 404, "completed {}", report.completed);
    // Tokio timers round the 20 ms sleep up by up to 1 ms, and each request adds some
    // client and server time, so the throughput stays within 15% of 200 req/s.
    assert!(
        report.completed >= 340,
        "completed {} is more than 15% below 4 / 20 ms × 2 s = 400",
        report.completed
    );
    assert!(
        (170.0..=202.0).contains(&report.achieved_rps),
        "achieved_rps {} is not about 4 / 20 ms = 200",
        report.achieved_rps
    );
    assert_eq!(report.sent, report.completed);
    assert_eq!(report.scheduled, report.sent);
    assert_eq!(report.unsent, 0);
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
    assert_eq!(report.target_rps, 0.0);
    assert_eq!(report.uncorrected.len(), report.completed);
    assert!(
        report.uncorrected.min() >= 20_000,
        "fastest response {} µs is below the 20 ms delay",
        report.uncorrected.min()
    );
    assert!(report.valid, "invalid: {:?}", report.invalid_reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_connections_match_requests() {
    let (target, accepts) = serve_counting(|_| async { respond(StatusCode::OK) }).await;
    let spec = spec(target, 100.0, 2, 1000);
    let workload = Workload {
        connection_reuse: ConnectionReuse::PerRequest,
        ..Workload::default()
    };

    let report = run_load(&spec, workload).await.expect("load run");

    assert_eq!(report.completed, 100);
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
    assert_eq!(report.connects, 100);
    assert_eq!(report.connect_time.len(), 100);
    assert_eq!(report.reconnects, 0);
    // The server also accepted the probe connect that checks the target before the run.
    assert_eq!(accepts.load(Ordering::Relaxed), 101);
    // The uncorrected latency includes the connect, so it is never below it.
    assert!(
        report.uncorrected.max() >= report.connect_time.min(),
        "uncorrected latency below the connect time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_per_request_connects_each_time() {
    let (target, accepts) = serve_counting(|_| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        respond(StatusCode::OK)
    })
    .await;
    let spec = spec(target, 0.0, 2, 500);
    let workload = Workload {
        arrival: Arrival::Closed,
        connection_reuse: ConnectionReuse::PerRequest,
    };

    let report = run_load(&spec, workload).await.expect("load run");

    assert!(report.completed > 0, "no request completed");
    assert_eq!(report.error_count(), 0, "errors: {:?}", report.errors);
    assert_eq!(report.connects, report.sent);
    assert_eq!(accepts.load(Ordering::Relaxed), report.sent + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_rate_marks_run_invalid() {
    // 2 connections of one 500 ms request at a time carry at most 4 req/s, far below
    // the 100 req/s asked for.
    let target = serve_delayed(Duration::from_millis(500)).await;
    let spec = spec(target, 100.0, 2, 1000);

    let report = run_open_loop(&spec).await.expect("load run");

    assert!(!report.valid, "a run at 4% of its rate was marked valid");
    assert_eq!(report.scheduled, 100);
    assert!(report.sent <= 6, "sent {}", report.sent);
    assert_eq!(report.unsent + report.sent, 100);
    let reasons = report.invalid_reasons.join("\n");
    assert!(
        report
            .invalid_reasons
            .iter()
            .any(|reason| reason.starts_with("achieved ")),
        "no rate reason in: {reasons}"
    );
    assert!(
        report
            .invalid_reasons
            .iter()
            .any(|reason| reason.contains("were never sent")),
        "no unsent reason in: {reasons}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_hold_one_interval_per_second() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    let target = serve(|_| async { respond(StatusCode::OK) }).await;
    let spec = spec(target, 100.0, 2, 2000);
    let report = run_open_loop(&spec).await.expect("load run");
    let folder = tempfile::tempdir().expect("temporary folder");

    let files = write_outputs(&report, folder.path()).expect("write outputs");

    assert_eq!(files.hlog, folder.path().join(HLOG_FILE));
    assert_eq!(files.csv, folder.path().join(CSV_FILE));
    let seconds = report.per_second.len();
    assert!((2..=3).contains(&seconds), "{seconds} intervals for a 2 s window");

    let hlog = std::fs::read(&files.hlog).expect("read interval log");
    let mut untagged = Vec::new();
    let mut uncorrected = Vec::new();
    for entry in IntervalLogIterator::new(&hlog) {
        if let LogEntry::Interval(interval) = entry.expect("valid interval log entry") {
            match interval.tag() {
                None => untagged.push(interval.start_timestamp()),
                Some(tag) => {
                    assert_eq!(tag.as_str(), "uncorrected");
                    uncorrected.push(interval.start_timestamp());
                }
            }
        }
    }
    let expected: Vec<Duration> = (0..seconds as u64).map(Duration::from_secs).collect();
    assert_eq!(untagged, expected, "corrected interval start times");
    assert_eq!(uncorrected, expected, "uncorrected interval start times");

    let csv = std::fs::read_to_string(&files.csv).expect("read CSV");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("second,sent,completed,errors,p50_ms,p99_ms"));
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert_eq!(rows.len(), seconds);
    let sent: u64 = rows.iter().map(|row| row[1].parse::<u64>().expect("sent")).sum();
    let completed: u64 = rows.iter().map(|row| row[2].parse::<u64>().expect("completed")).sum();
    assert_eq!(sent, report.sent);
    assert_eq!(completed, report.completed);
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row[0], index.to_string());
        assert_eq!(row.len(), 6, "row {row:?}");
    }
}

#[test]
fn closed_loop_ignores_rate() {
    let target: SocketAddr = "127.0.0.1:9".parse().expect("socket address");
    let spec = spec(target, 0.0, 1, 1000);
    let closed = Workload {
        arrival: Arrival::Closed,
        ..Workload::default()
    };

    assert!(spec.validate_for(closed).is_ok());
    assert!(matches!(
        spec.validate(),
        Err(LoadError::InvalidSpec {
            field: "rate_per_s",
            ..
        })
    ));
}
