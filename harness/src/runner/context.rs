//! The run's context: the engine, its versions, and the git revision of deploybench.

use std::path::Path;

use bollard::Docker;

use crate::results::EngineContext;
use crate::scenario::Scenario;

/// Connects to the engine when the scenario has a container model; the error text
/// becomes the reason those models are skipped.
pub async fn connect_engine(scenario: &Scenario) -> Result<Docker, String> {
    if !scenario.models.iter().any(|kind| kind.uses_engine()) {
        return Err("no container model in the scenario".to_string());
    }
    crate::engine::docker::connect()
        .await
        .map_err(|error| error.to_string())
}

pub async fn engine_context(docker: &Docker) -> Option<EngineContext> {
    let version = docker.version().await.ok()?;
    let info = docker.info().await.ok()?;
    let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
    runtimes.sort();
    Some(EngineContext {
        docker_version: version.version.unwrap_or_default(),
        api_version: version.api_version.unwrap_or_default(),
        default_runtime: info.default_runtime.unwrap_or_default(),
        runtimes,
        storage_driver: info.driver.unwrap_or_default(),
        cgroup_driver: info
            .cgroup_driver
            .map(|driver| driver.to_string())
            .unwrap_or_default(),
        cgroup_version: info
            .cgroup_version
            .map(|version| version.to_string())
            .unwrap_or_default(),
    })
}

/// `git describe --always --dirty` of the checkout, when git and a checkout exist.
pub fn git_revision(workspace_root: &Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(workspace_root)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// QEMU's version and the accelerator in the vm model's label, such as `vm (tcg)`.
pub async fn qemu_context(outcomes: &[crate::results::ModelOutcome]) -> Option<crate::results::QemuContext> {
    let version = crate::engine::qemu::version().await.ok()?;
    let accelerator = outcomes
        .iter()
        .find_map(|outcome| {
            outcome
                .model
                .strip_prefix("vm (")?
                .strip_suffix(')')
                .map(str::to_string)
        })
        .unwrap_or_else(|| "not booted".to_string());
    Some(crate::results::QemuContext { version, accelerator })
}
