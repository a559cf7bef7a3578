//! Builds images on the real Docker engine: the distroless image end to end, a rootfs
//! import and a failing build. Each test prints a reason and returns early when the
//! engine is unreachable. The fat image is left out because debootstrap takes a minute.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::container::{Config, CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StartContainerOptions};
use bollard::image::RemoveImageOptions;
use bollard::models::{HealthStatusEnum, HostConfig, PortBinding};
use bollard::Docker;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};

use deploybench::artifacts::{self, build_service_binary, ArtifactCache, ImageArtifact, ServiceBinary, SERVICE_PORT};
use deploybench::engine::docker::MANAGED_LABEL;
use deploybench::engine::images::{self, BaseImageConfig, ImageError};

const MIB: u64 = 1024 * 1024;

/// Paths of shells and package managers, which an attacker inside the container could use.
const FORBIDDEN_PATHS: [&str; 8] = [
    "bin/sh",
    "usr/bin/sh",
    "bin/bash",
    "usr/bin/bash",
    "bin/busybox",
    "usr/bin/busybox",
    "usr/bin/apt",
    "usr/bin/dpkg",
];

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{nanos}", std::process::id())
}

fn service_binary() -> ServiceBinary {
    build_service_binary(&artifacts::source_workspace_root()).expect("refservice builds as a static binary")
}

/// Ensures the distroless image and returns it with the progress messages it sent.
async fn ensure_distroless(docker: &Docker, binary: &ServiceBinary) -> (ImageArtifact, Vec<String>, Duration) {
    let messages = Mutex::new(Vec::new());
    let progress = |message: &str| {
        eprintln!("progress: {message}");
        messages.lock().unwrap().push(message.to_string());
    };
    let started = Instant::now();
    let artifact = artifacts::ensure_distroless_image(docker, &ArtifactCache::default_location(), binary, &progress)
        .await
        .expect("the distroless image builds");
    let elapsed = started.elapsed();
    (artifact, messages.into_inner().unwrap(), elapsed)
}

/// Creates a container of `image` labelled as managed, with the service port published
/// on a free 127.0.0.1 port.
async fn create_container(docker: &Docker, image: &str, name: &str) -> String {
    let port = format!("{SERVICE_PORT}/tcp");
    let binding = PortBinding { host_ip: Some("127.0.0.1".to_string()), host_port: Some("0".to_string()) };
    let config = Config {
        image: Some(image.to_string()),
        labels: Some(HashMap::from([(MANAGED_LABEL.to_string(), "true".to_string())])),
        exposed_ports: Some(HashMap::from([(port.clone(), HashMap::new())])),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(port, Some(vec![binding]))])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: name.to_string(), platform: None };
    docker.create_container(Some(options), config).await.expect("the container is created").id
}

async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    if let Err(error) = docker.remove_container(id, Some(options)).await {
        eprintln!("cannot remove test container {id}: {error}");
    }
}

/// Lists the container's files as (path, mode, contents of small files) from `docker export`.
async fn exported_files(docker: &Docker, id: &str) -> BTreeMap<String, (u32, Vec<u8>)> {
    let chunks: Vec<bytes::Bytes> = docker.export_container(id).try_collect().await.expect("the container exports");
    let archive: Vec<u8> = chunks.concat();
    let mut reader = tar::Archive::new(archive.as_slice());
    let mut files = BTreeMap::new();
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
        let mode = entry.header().mode().unwrap();
        let mut contents = Vec::new();
        if entry.header().size().unwrap() < MIB {
            entry.read_to_end(&mut contents).unwrap();
        }
        files.insert(path, (mode, contents));
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distroless_image_built_and_reused() {
    let Some(docker) = common::engine().await else { return };
    let binary = service_binary();

    let (first, first_messages, first_time) = ensure_distroless(&docker, &binary).await;
    eprintln!("first call: {first:?} in {first_time:?}, {:.2} MiB", first.size_mib());
    assert!(!first_messages.is_empty(), "no progress message was sent");
    let (second, _, second_time) = ensure_distroless(&docker, &binary).await;
    eprintln!("second call: reused = {} in {second_time:?}", second.reused);
    assert!(second.reused, "the second call rebuilt the image");
    assert_eq!(second.id, first.id);
    assert_eq!(second.tag, first.tag);
    assert!(first.tag.starts_with("deploybench/distroless:"), "{}", first.tag);
    assert!(first.base_tag.starts_with("deploybench/distroless-base:"), "{}", first.base_tag);
    assert!(first.size_bytes < 10 * MIB, "the image is {} bytes", first.size_bytes);
    assert!(first.size_bytes > binary.size_bytes, "the image is smaller than the binary");

    let image = docker.inspect_image(&first.tag).await.unwrap();
    let config = image.config.expect("the image has a configuration");
    assert_eq!(config.user.as_deref(), Some("65532:65532"));
    let health_test = config.healthcheck.and_then(|check| check.test);
    assert_eq!(health_test, Some(vec!["CMD".to_string(), "/refservice".to_string(), "healthcheck".to_string()]));
    assert_eq!(config.entrypoint, Some(vec!["/refservice".to_string()]));
    assert!(config.exposed_ports.unwrap_or_default().contains_key("8080/tcp"));
    let labels = config.labels.unwrap_or_default();
    assert_eq!(labels.get(MANAGED_LABEL).map(String::as_str), Some("true"));
    assert_eq!(labels.get(artifacts::RECIPE_HASH_LABEL), Some(&first.recipe_hash));
    assert!(config.env.unwrap_or_default().contains(&"PORT=8080".to_string()));
    let base = docker.inspect_image(&first.base_tag).await.unwrap();
    let base_labels = base.config.and_then(|config| config.labels).unwrap_or_default();
    assert_eq!(base_labels.get(MANAGED_LABEL).map(String::as_str), Some("true"));

    let id = create_container(&docker, &first.tag, &format!("deploybench-test-files-{}", unique_suffix())).await;
    let files = exported_files(&docker, &id).await;
    remove_container(&docker, &id).await;
    for path in FORBIDDEN_PATHS {
        assert!(!files.contains_key(path), "the image contains {path}");
    }
    let (binary_mode, _) = files.get("refservice").expect("the image contains /refservice");
    assert_eq!(binary_mode & 0o111, 0o111, "/refservice is not executable");
    let passwd = String::from_utf8_lossy(&files.get("etc/passwd").expect("the image contains /etc/passwd").1).into_owned();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let certificates = &files.get("etc/ssl/certs/ca-certificates.crt").expect("the image contains the CA bundle").1;
    assert!(certificates.starts_with(b"-----BEGIN CERTIFICATE-----"), "the CA bundle is not PEM");
    assert_eq!(files.get("tmp").map(|(mode, _)| mode & 0o7777), Some(0o1777));
    assert!(files.contains_key("usr/share/zoneinfo/Europe/Paris"));
    assert!(files.contains_key("etc/services"));
    assert!(files.contains_key("etc/nsswitch.conf"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distroless_container_becomes_healthy() {
    let Some(docker) = common::engine().await else { return };
    let (artifact, _, _) = ensure_distroless(&docker, &service_binary()).await;
    let id = create_container(&docker, &artifact.tag, &format!("deploybench-test-health-{}", unique_suffix())).await;
    docker.start_container(&id, None::<StartContainerOptions<String>>).await.unwrap();

    let outcome = wait_until_healthy(&docker, &id, Duration::from_secs(60)).await;
    let response = match &outcome {
        Ok(port) => get_health(*port),
        Err(_) => String::new(),
    };
    remove_container(&docker, &id).await;

    let port = outcome.unwrap();
    assert!(port > 0);
    assert!(response.starts_with("HTTP/1.1 200"), "GET /health on 127.0.0.1:{port} returned {response:?}");
}

/// Waits for the engine's health check to pass and returns the published host port.
async fn wait_until_healthy(docker: &Docker, id: &str, timeout: Duration) -> Result<u16, String> {
    let started = Instant::now();
    loop {
        let container = docker.inspect_container(id, None::<InspectContainerOptions>).await.map_err(|error| error.to_string())?;
        let state = container.state.unwrap_or_default();
        let health = state.health.and_then(|health| health.status);
        if health == Some(HealthStatusEnum::HEALTHY) {
            let ports = container.network_settings.and_then(|settings| settings.ports).unwrap_or_default();
            let host_port = ports
                .get(&format!("{SERVICE_PORT}/tcp"))
                .and_then(|bindings| bindings.as_ref()?.first()?.host_port.clone())
                .ok_or("the service port is not published")?;
            return host_port.parse().map_err(|_| format!("invalid host port {host_port:?}"));
        }
        if state.running != Some(true) || started.elapsed() > timeout {
            return Err(format!("not healthy after {:?}: running {:?}, health {health:?}", started.elapsed(), state.running));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn get_health(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the published port accepts");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[tokio::test]
async fn rootfs_import_tags_image() {
    let Some(docker) = common::engine().await else { return };
    let directory = tempfile::tempdir().unwrap();
    let layer = directory.path().join("layer.tar");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "etc/hello", &b"hello\n"[..]).unwrap();
    let tarball = builder.into_inner().unwrap();
    std::fs::write(&layer, &tarball).unwrap();
    let sha256 = hex::encode(Sha256::digest(&tarball));

    let tag = format!("deploybench/test-import:{}", unique_suffix());
    let config = BaseImageConfig {
        architecture: "amd64".to_string(),
        env: vec!["PATH=/usr/bin".to_string()],
        labels: BTreeMap::from([(MANAGED_LABEL.to_string(), "true".to_string())]),
        created_by: "rootfs_import_tags_image".to_string(),
    };
    let imported = images::import_rootfs(&docker, &tag, &layer, &sha256, &config).await;
    let inspected = docker.inspect_image(&tag).await;
    let wrong_checksum = images::import_rootfs(&docker, &format!("{tag}-wrong"), &layer, &"0".repeat(64), &config).await;
    let _ = docker.remove_image(&tag, None::<RemoveImageOptions>, None).await;
    let _ = docker.remove_image(&format!("{tag}-wrong"), None::<RemoveImageOptions>, None).await;

    let id = imported.expect("the rootfs imports");
    let image = inspected.expect("the imported tag exists");
    assert_eq!(image.id.as_deref(), Some(id.as_str()));
    assert_eq!(image.root_fs.and_then(|root| root.layers), Some(vec![format!("sha256:{sha256}")]));
    let image_config = image.config.unwrap_or_default();
    assert_eq!(image_config.env, Some(vec!["PATH=/usr/bin".to_string()]));
    assert_eq!(image_config.labels.unwrap_or_default().get(MANAGED_LABEL).map(String::as_str), Some("true"));
    assert!(matches!(wrong_checksum, Err(ImageError::Stream { .. })), "{wrong_checksum:?}");
}

#[tokio::test]
async fn build_stream_error_returned() {
    let Some(docker) = common::engine().await else { return };
    let mut builder = tar::Builder::new(Vec::new());
    let dockerfile = b"FROM scratch\nCOPY missing-file /missing-file\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "Dockerfile", &dockerfile[..]).unwrap();
    let context = builder.into_inner().unwrap();

    let tag = format!("deploybench/test-build-error:{}", unique_suffix());
    let result = images::build_from_context(&docker, &tag, context, &BTreeMap::new()).await;
    let error = result.expect_err("a COPY of a missing file fails the build");
    assert!(matches!(error, ImageError::Stream { .. }), "{error:?}");
    assert!(error.to_string().contains("missing-file"), "{error}");
    assert!(images::find_image(&docker, &tag).await.unwrap().is_none());
}

#[test]
fn static_binary_hashed() {
    let binary = service_binary();
    assert!(binary.path.ends_with(Path::new("x86_64-unknown-linux-gnu/service/refservice")), "{:?}", binary.path);
    assert_eq!(binary.sha256.len(), 64);
    assert_eq!(binary.size_bytes, std::fs::metadata(&binary.path).unwrap().len());
    assert_eq!(build_service_binary(&artifacts::source_workspace_root()).unwrap(), binary);
}
