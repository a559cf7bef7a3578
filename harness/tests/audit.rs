//! `deploybench audit` tells our two images apart: the distroless image passes every
//! item, the fat image fails with the reasons that make it a legacy image.

mod common;

use std::path::Path;
use std::process::Command;

use deploybench::artifacts::{build_service_binary, ensure_distroless_image, ensure_fat_image, ArtifactCache};

/// Runs `deploybench audit IMAGE` and returns its exit code and stdout.
fn audit(image: &str) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deploybench")).args(["audit", image]).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tells_images_apart() {
    let Some(docker) = common::engine().await else { return };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let binary = build_service_binary(workspace).unwrap();
    let cache = ArtifactCache::default_location();
    let quiet = |_: &str| {};
    let distroless = ensure_distroless_image(&docker, &cache, &binary, &quiet).await.unwrap();
    let fat = ensure_fat_image(&docker, &cache, &binary, &quiet).await.unwrap();

    let (code, text) = audit(&distroless.tag);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("FAIL"), "{text}");

    let (code, text) = audit(&fat.tag);
    assert_eq!(code, 1, "{text}");
    for line in [
        "FAIL  runs as a non-root user",
        "FAIL  has a health check",
        "FAIL  has no shell",
        "FAIL  has no package manager",
        "FAIL  is under 50 MB",
        "FAIL  is not built on a whole distribution",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("/usr/bin/dpkg"), "{text}");

    let (code, text) = audit("deploybench/no-such-image:none");
    assert_eq!(code, 2, "{text}");
}
