//! An instance killed for exceeding its memory limit is reported as such, not as an
//! unexplained accounting failure.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use deploybench::artifacts::{build_service_binary, ArtifactCache};
use deploybench::models::{self, ModelEnv};
use deploybench::scenario::{ModelKind, Scenario};

const SCENARIO: &str = "models = [\"distroless\"]\n[boot]\nrepetitions = 1\n[limits]\nmemory_mib = 32\n";

/// Sends one GET and returns the status, or the error when the connection broke.
async fn get(address: SocketAddr, path: &str) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|error| error.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.map_err(|error| error.to_string())?;
    let text = String::from_utf8_lossy(&response);
    text.get(9..12).and_then(|code| code.parse().ok()).ok_or_else(|| format!("no status line in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_kill_reported() {
    let Some(docker) = common::engine().await else { return };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let env = ModelEnv {
        scenario: Scenario::parse(SCENARIO, Path::new("oom.toml")).unwrap(),
        run_id: format!("oom-test-{}", std::process::id()),
        workspace_root: workspace.clone(),
        cache: ArtifactCache::default_location(),
        docker: Some(docker),
    };
    let binary = build_service_binary(&workspace).unwrap();
    let mut model = models::create(ModelKind::Distroless);
    model.prepare(&env, &binary, &|_: &str| {}).await.unwrap();
    let instance = model.boot(&env, 0).await.unwrap();
    model.accounting(&instance).await.expect("a healthy instance has accounting");

    // 128 MiB written under a 32 MiB limit: the kernel kills the service.
    let outcome = get(instance.address, "/alloc?mib=128").await;
    assert_ne!(outcome, Ok(200), "the allocation must not succeed under the limit");

    let mut message = String::new();
    for _ in 0..50 {
        match model.accounting(&instance).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => {
                message = error.to_string();
                break;
            }
        }
    }
    assert!(message.contains("exceeding its memory limit of 32 MiB"), "{message}");
    model.stop(&env, instance).await.unwrap();
}
