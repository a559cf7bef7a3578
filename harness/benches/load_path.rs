//! Criterion benchmarks of the load generator's per-request work: recording latencies
//! in an HdrHistogram, and one request over a keep-alive connection to an in-process
//! server on 127.0.0.1.
//!
//! Run with `cargo bench -p deploybench --bench load_path`. The request benchmark
//! includes the server's time, because client and server share the machine, so it
//! bounds the generator's cost from above. `scripts/compare-load-generators.sh`
//! measures throughput and CPU per request against wrk and oha.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use deploybench::load::connection::{Connection, RequestTemplate};

/// Records latencies spread like a real run's: mostly below a millisecond, a tail to
/// about 100 ms. The histogram has the 3 significant digits that the generator uses.
fn histogram_recording(criterion: &mut Criterion) {
    let latencies_us: Vec<u64> = (0..1024u64).map(|index| 50 + (index * index * 97) % 100_000).collect();
    let mut group = criterion.benchmark_group("histogram");
    group.throughput(Throughput::Elements(latencies_us.len() as u64));

    group.bench_function("record_1024", |bench| {
        let mut histogram = Histogram::<u64>::new(3).expect("3 significant digits is within 0..=5");
        bench.iter(|| {
            for &latency in &latencies_us {
                histogram
                    .record(black_box(latency))
                    .expect("an auto-resizing histogram accepts every latency");
            }
        });
    });

    // One merge of a per-second histogram into the run's total, as each worker does
    // once per second.
    group.throughput(Throughput::Elements(1));
    group.bench_function("merge_per_second_interval", |bench| {
        let mut interval = Histogram::<u64>::new(3).expect("3 significant digits");
        for &latency in &latencies_us {
            interval.record(latency).expect("record");
        }
        let mut total = Histogram::<u64>::new(3).expect("3 significant digits");
        bench.iter(|| total.add(black_box(&interval)).expect("merge"));
    });
    group.finish();
}

/// Starts a hyper server on a free 127.0.0.1 port in its own runtime thread that
/// responds to every request with a small body, as refservice's `GET /` does.
fn start_server() -> SocketAddr {
    let (address_sender, address_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
            address_sender
                .send(listener.local_addr().expect("local address"))
                .expect("send the server address");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = service_fn(|_| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"service\":\"bench\"}\n",
                    ))))
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    address_receiver.recv().expect("server address")
}

/// Measures one request and response, the generator's hot path without pacing, over a
/// keep-alive connection and over a new connection per request.
fn request_path(criterion: &mut Criterion) {
    let target = start_server();
    let uri: Uri = "/".parse().expect("path");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut group = criterion.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    // Each new connection leaves a socket in TIME_WAIT for a minute, so the group runs
    // for a few seconds only, well below the 28 000 ephemeral ports of a default Linux.
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(20);

    for (name, close) in [("keep_alive", false), ("new_connection", true)] {
        let template = RequestTemplate::new(&uri, target, close);
        group.bench_function(BenchmarkId::new("exchange", name), |bench| {
            bench.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut connection = None;
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let open = match connection.as_mut() {
                            Some(existing) if Connection::is_reusable(existing) => existing,
                            _ => connection.insert(
                                Connection::open(target, Duration::from_secs(5))
                                    .await
                                    .expect("connect to the bench server"),
                            ),
                        };
                        let status = open.exchange(&template).await.expect("exchange");
                        black_box(status);
                    }
                    started.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, histogram_recording, request_path);
criterion_main!(benches);
