//! Connection to the Docker engine and the labels that mark what deploybench created.

use bollard::Docker;

/// Label set on every container, image, network and volume that deploybench creates.
pub const MANAGED_LABEL: &str = "io.deploybench.managed";
/// Label naming the run that created a container, so a crashed run's leftovers are found.
pub const RUN_LABEL: &str = "io.deploybench.run";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine: {0}; start it with `sudo scripts/setup.sh`")]
    Unreachable(#[source] bollard::errors::Error),
    #[error("Docker engine call {call} failed: {source}")]
    Call {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

/// Connects to the local engine and negotiates the API version (Debian's engine speaks 1.41).
pub async fn connect() -> Result<Docker, EngineError> {
    let docker = Docker::connect_with_local_defaults().map_err(EngineError::Unreachable)?;
    let docker = docker.negotiate_version().await.map_err(EngineError::Unreachable)?;
    docker.ping().await.map_err(EngineError::Unreachable)?;
    Ok(docker)
}
