//! The local registry, image push and pull through it, link shaping on the loopback,
//! and one short pull and deploy-cycle measurement, on the real engine and kernel.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deploybench::artifacts::{build_service_binary, ArtifactCache};
use deploybench::engine::docker::{owner_label_value, MANAGED_LABEL, OWNER_LABEL, RUN_LABEL};
use deploybench::engine::images::{build_from_context, find_image};
use deploybench::engine::registry::{remove_image, LocalRegistry};
use deploybench::engine::shaping::{self, PortShaping};
use deploybench::measure::{deploy, pull};
use deploybench::scenario::{ContainerLimits, DeploySettings, LinkProfile, ModelKind, PullSettings};

/// Serializes the tests that change the loopback's qdisc, since `lo` has one root qdisc.
static SHAPING: Mutex<()> = Mutex::new(());

/// Returns true when tc shaping works here. Outside CI a missing prerequisite returns
/// false and prints why, and in CI it fails the test.
fn shaping_available() -> bool {
    match shaping::check_available() {
        Ok(()) => true,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {error}");
            false
        }
        Err(error) => panic!("CI needs link shaping: {error}"),
    }
}

fn lock_shaping() -> std::sync::MutexGuard<'static, ()> {
    SHAPING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (RUN_LABEL.to_string(), "registry-test".to_string()),
        (OWNER_LABEL.to_string(), owner_label_value()),
    ])
}

/// Builds a context with a Dockerfile that copies one small file with `text` onto
/// `scratch`. Tests pass distinct texts, because the builder shares the cached layer
/// of equal contexts, and one test's removal would prune it under another's build.
fn tiny_context(text: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in
        [("Dockerfile", &b"FROM scratch\nCOPY hello.txt /hello.txt\n"[..]), ("hello.txt", text.as_bytes())]
    {
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, contents).unwrap();
    }
    builder.into_inner().unwrap()
}

fn refused(address: std::net::SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_image_push_pull_round_trip() {
    let Some(docker) = common::engine().await else { return };
    let registry = LocalRegistry::start().await.unwrap();
    let address = registry.address();
    let folder = registry.folder().to_path_buf();
    assert!(address.ip().is_loopback(), "{address}");

    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tag = format!("{}-{nanos}", std::process::id());
    let local = format!("deploybench/registry-test:{tag}");
    let id =
        build_from_context(&docker, &local, tiny_context(&format!("round trip {tag}\n")), &labels()).await.unwrap();
    registry.push(&docker, &local, "deploybench/registry-test", &tag).await.unwrap();

    let manifest = registry.manifest("deploybench/registry-test", &tag).await.unwrap();
    assert_eq!(manifest.layers.len(), 1, "{manifest:?}");
    assert!(manifest.layer_bytes() > 0, "{manifest:?}");
    assert!(manifest.layer_bytes() < 4096, "a one-line file compresses to a few hundred bytes: {manifest:?}");

    let remote = format!("{}:{tag}", registry.repository("deploybench/registry-test"));
    assert!(remove_image(&docker, &local).await.unwrap());
    assert!(remove_image(&docker, &remote).await.unwrap());
    assert!(find_image(&docker, &id).await.unwrap().is_none(), "image {id} still present");

    let stats = registry.pull(&docker, "deploybench/registry-test", &tag).await.unwrap();
    assert_eq!((stats.layers_downloaded, stats.layers_present), (1, 0), "{stats:?}");
    assert!(stats.elapsed < Duration::from_secs(30), "{stats:?}");
    let pulled = find_image(&docker, &remote).await.unwrap().expect("the pulled image is present");
    assert_eq!(pulled.id.as_deref(), Some(id.as_str()), "same configuration, same image id");
    assert!(remove_image(&docker, &remote).await.unwrap());

    registry.stop().unwrap();
    assert!(!folder.exists(), "{} left behind", folder.display());
    assert!(refused(address), "the registry still listens on {address}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_run_images_removed() {
    let Some(docker) = common::engine().await else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let run_id = format!("leftover-test-{nanos}");
    let mut image_labels = labels();
    image_labels.insert(RUN_LABEL.to_string(), run_id.clone());
    image_labels.insert(pull::PURPOSE_LABEL.to_string(), "pull".to_string());
    let first = format!("deploybench/leftover-test:{nanos}-a");
    let id =
        build_from_context(&docker, &first, tiny_context(&format!("leftover {nanos}\n")), &image_labels).await.unwrap();
    let second = format!("deploybench/leftover-test:{nanos}-b");
    docker
        .tag_image(
            &first,
            Some(bollard::image::TagImageOptions { repo: "deploybench/leftover-test", tag: &format!("{nanos}-b") }),
        )
        .await
        .unwrap();

    assert_eq!(pull::remove_leftover_images(&docker, Some(&run_id)).await, 1);
    assert!(find_image(&docker, &first).await.unwrap().is_none(), "{first} left");
    assert!(find_image(&docker, &second).await.unwrap().is_none(), "{second} left");
    assert!(find_image(&docker, &id).await.unwrap().is_none(), "{id} left");
}

#[tokio::test]
async fn registry_removed_on_drop() {
    let registry = match LocalRegistry::start().await {
        Ok(registry) => registry,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {error}");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let (address, folder) = (registry.address(), registry.folder().to_path_buf());
    assert!(folder.join("storage").is_dir());
    // The process listens on its one loopback address and nowhere else.
    assert_eq!(registry.listening_addresses(), Ok(vec![address]));
    let check = deploybench::engine::registry::loopback_only_check("distroless", registry.listening_addresses());
    assert!(check.passed, "{check:?}");
    drop(registry);
    assert!(!folder.exists(), "{} left behind", folder.display());
    assert!(refused(address), "the registry still listens on {address}");
}

/// Serves `bytes` zero bytes to one client on a free port; returns the port.
fn serve_once(bytes: usize) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < bytes {
            let count = chunk.len().min(bytes - sent);
            stream.write_all(&chunk[..count]).unwrap();
            sent += count;
        }
    });
    (port, server)
}

fn receive_all(port: u16) -> (usize, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    let mut received = 0;
    loop {
        match stream.read(&mut buffer).unwrap() {
            0 => return (received, started.elapsed()),
            count => received += count,
        }
    }
}

#[test]
fn shaping_limits_only_its_port() {
    if !shaping_available() {
        return;
    }
    let _serial = lock_shaping();
    const BYTES: usize = 2_000_000;
    let (shaped_port, shaped_server) = serve_once(BYTES);
    let (other_port, other_server) = serve_once(BYTES);

    let shaping = PortShaping::apply(shaped_port, 20.0).unwrap();
    let (received, shaped_time) = receive_all(shaped_port);
    let (other_received, other_time) = receive_all(other_port);
    let sent = shaping.sent_bytes().unwrap();
    shaping.remove().unwrap();
    shaped_server.join().unwrap();
    other_server.join().unwrap();

    assert_eq!((received, other_received), (BYTES, BYTES));
    // 2 MB at 20 Mbit/s less a 256 KiB bucket takes at least 0.7 s.
    assert!(shaped_time >= Duration::from_millis(600), "shaped transfer took {shaped_time:?}");
    assert!(other_time < Duration::from_millis(300), "unshaped transfer took {other_time:?}");
    assert!(sent >= BYTES as u64, "the shaped class carried {sent} bytes");
    assert!(!shaping::own_qdisc_present().unwrap(), "qdisc left after remove");
}

#[test]
fn shaping_removed_after_panic() {
    if !shaping_available() {
        return;
    }
    let _serial = lock_shaping();
    let outcome = std::panic::catch_unwind(|| {
        let _shaping = PortShaping::apply(9, 100.0).unwrap();
        assert!(shaping::own_qdisc_present().unwrap(), "qdisc missing while shaping");
        panic!("a failure inside the shaped section");
    });
    assert!(outcome.is_err());
    assert!(!shaping::own_qdisc_present().unwrap(), "qdisc left after a panic");
}

#[test]
fn leftover_qdisc_removed() {
    if !shaping_available() {
        return;
    }
    let _serial = lock_shaping();
    // A qdisc with deploybench's handle and no process holding the lock, as a killed
    // run leaves it.
    let status = std::process::Command::new("tc")
        .args(["qdisc", "add", "dev", shaping::DEVICE, "root", "handle", shaping::ROOT_HANDLE, "htb", "default", "1"])
        .status()
        .unwrap();
    assert!(status.success(), "tc qdisc add failed: {status}");
    assert!(shaping::own_qdisc_present().unwrap());

    assert!(shaping::remove_leftover_shaping().unwrap());
    assert!(!shaping::own_qdisc_present().unwrap(), "leftover qdisc still present");
    assert!(!shaping::remove_leftover_shaping().unwrap(), "nothing left to remove");
}

// The std lock is held across awaits so that the shaping tests of this binary wait.
// Nothing else takes it inside this runtime, so it cannot deadlock.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distroless_pull_measured() {
    let Some(docker) = common::engine().await else { return };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let binary = tokio::task::spawn_blocking(move || build_service_binary(&workspace)).await.unwrap().unwrap();
    let settings = PullSettings {
        enabled: true,
        repetitions: 1,
        profiles: vec![LinkProfile { name: "test-50m".to_string(), bandwidth_mbit: 50.0, delay_ms: 10.0 }],
    };
    // Holds the shaping lock of this binary so that the shaping tests do not see this qdisc.
    let serial = lock_shaping();
    let results = pull::measure_pulls(
        &docker,
        &ArtifactCache::default_location(),
        &binary,
        ModelKind::Distroless,
        &settings,
        "registry-test",
        &|message: &str| eprintln!("{message}"),
    )
    .await
    .unwrap();
    assert!(!shaping::own_qdisc_present().unwrap_or(false), "qdisc left after the measurement");
    drop(serial);

    let value = |phase: &str| {
        results
            .samples
            .iter()
            .find(|sample| sample.metric == pull::METRIC && sample.phase == phase)
            .map(|sample| sample.value)
    };
    let cold = value("cold/unshaped/measured").expect("cold unshaped pull");
    let warm = value("warm/unshaped/measured").expect("warm unshaped pull");
    assert!(cold > 0.0, "{:?}", results.samples);
    assert!(warm > 0.0, "{:?}", results.samples);
    let method = if results.checks[0].passed { "applied" } else { "computed" };
    let shaped = value(&format!("cold/test-50m/{method}")).unwrap_or_else(|| panic!("{:?}", results.samples));
    assert!(shaped > 0.0, "{:?}", results.samples);
    assert!(value(&format!("warm/test-50m/{method}")).is_some(), "{:?}", results.samples);
    let compressed = results
        .samples
        .iter()
        .find(|sample| sample.phase == pull::COMPRESSED_COLD_PHASE)
        .map(|sample| sample.value)
        .unwrap();
    assert!(compressed > 0.5, "distroless pulls {compressed} MiB compressed");
    assert!(compressed < 10.0, "distroless pulls {compressed} MiB compressed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distroless_deploy_cycle_measured() {
    let Some(docker) = common::engine().await else { return };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let binary = tokio::task::spawn_blocking(move || build_service_binary(&workspace)).await.unwrap().unwrap();
    let samples = deploy::measure_deploy_cycle(
        &docker,
        &ArtifactCache::default_location(),
        &binary,
        ModelKind::Distroless,
        &DeploySettings { enabled: true, repetitions: 1 },
        &ContainerLimits { cpus: 0.5, memory_mib: 128 },
        "registry-test",
        &|message: &str| eprintln!("{message}"),
    )
    .await
    .unwrap();

    let phases: Vec<&str> = samples.iter().map(|sample| sample.phase.as_str()).collect();
    assert_eq!(phases, vec!["", "build", "push", "pull", "start", "healthy", "replace"]);
    let total = samples[0].value;
    let sum: f64 = samples[1..].iter().map(|sample| sample.value).sum();
    assert!((total - sum).abs() < 1e-6, "total {total} is not the sum {sum}");
    assert!(total > 0.0, "{samples:?}");
    assert!(total < 120.0, "{samples:?}");
}
