//! Deploy cycles (`deploy_cycle_s`): a new version of the service built, pushed,
//! pulled, started and healthy, with the old instance replaced, blue-green.
//!
//! Every deployment model provides its cycle through [`DeployTarget`]. This module
//! implements it for the container models ([`ContainerDeploy`]) and turns the phases
//! into samples ([`measure_deploy_cycles`]). Each cycle gives one sample per phase
//! (`build`, `push`, `pull`, `start`, `healthy`, `replace`, in seconds) and their sum
//! under the phase `""`. The sum comes first, so a table that takes the first
//! `deploy_cycle_s` summary of a model reads the whole cycle.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions, StopContainerOptions};
use bollard::Docker;
use tokio::time::Instant;

use super::boot::Probe;
use super::pull::{labels, recipe_of, unique_token, PullError};
use crate::artifacts::marked;
use crate::artifacts::{ArtifactCache, ArtifactError, Recipe, ServiceBinary, SERVICE_PORT};
use crate::engine::registry::{remove_image, LocalRegistry, RegistryError};
use crate::results::Sample;
use crate::scenario::{ContainerLimits, DeploySettings, ModelKind};

/// Metric of every deploy-cycle sample, in seconds.
pub const METRIC: &str = "deploy_cycle_s";
/// Phase names in cycle order; the whole cycle has the phase `""`.
pub const PHASES: [&str; 6] = ["build", "push", "pull", "start", "healthy", "replace"];

/// Time allowed from the start of a new instance to its first 200 from /health.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(120);
/// Interval between /health probes of a new instance.
const HEALTH_POLL: Duration = Duration::from_millis(2);
/// Seconds the old instance gets between SIGTERM and SIGKILL, as in the container models.
const STOP_TIMEOUT_S: i64 = 2;

/// The timed phases of one deploy cycle; `None` for a phase a model does not have.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployPhases {
    /// The new version's artifact built from the changed service.
    pub build: Option<Duration>,
    /// The artifact sent to where deploy targets fetch it (a registry).
    pub push: Option<Duration>,
    /// The artifact fetched onto the deploy target.
    pub pull: Option<Duration>,
    /// The new instance created and started.
    pub start: Option<Duration>,
    /// From the end of `start` to the new instance's first 200 from /health.
    pub healthy: Option<Duration>,
    /// The old instance stopped and removed.
    pub replace: Option<Duration>,
}

impl DeployPhases {
    /// Returns the phases a model has, by name, in cycle order.
    pub fn named(&self) -> Vec<(&'static str, Duration)> {
        let values = [self.build, self.push, self.pull, self.start, self.healthy, self.replace];
        PHASES.into_iter().zip(values).filter_map(|(name, value)| Some((name, value?))).collect()
    }

    /// Returns the whole cycle: the sum of the phases.
    pub fn total(&self) -> Duration {
        self.named().into_iter().map(|(_, value)| value).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("deploy cycles are not implemented for {model}")]
    Unsupported { model: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("cannot {action} {target}: {source}")]
    Engine {
        action: &'static str,
        target: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("version {version} of {model} did not become healthy: {message}")]
    Unhealthy { model: String, version: u32, message: String },
    /// A failure of a deploy target outside this module, such as the vm model.
    #[error("deploy cycle of {model} failed: {message}")]
    Target { model: String, message: String },
}

impl From<PullError> for DeployError {
    fn from(error: PullError) -> DeployError {
        match error {
            PullError::Unsupported { model } => DeployError::Unsupported { model: model.to_string() },
            PullError::Registry(error) => DeployError::Registry(error),
            PullError::Artifact(error) => DeployError::Artifact(error),
            other => DeployError::Target { model: String::new(), message: other.to_string() },
        }
    }
}

/// A deployment model whose deploy cycle can be measured.
///
/// A vm or function model implements it with its own meaning of each phase, for
/// example `build` as a new disk image, and leaves phases it lacks as `None`.
#[async_trait]
pub trait DeployTarget: Send {
    /// Label of the model in results, for example `distroless`.
    fn label(&self) -> String;

    /// Deploys version 0 and waits until it is healthy, untimed, so that every
    /// measured cycle has an old instance to replace.
    async fn deploy_initial(&mut self, progress: &(dyn for<'m> Fn(&'m str) + Sync)) -> Result<(), DeployError>;

    /// Deploys `version` (1, 2, …), a one-line change of the service, and replaces
    /// the running instance with it. Returns the phases it timed.
    async fn deploy_next(
        &mut self,
        version: u32,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<DeployPhases, DeployError>;

    /// Stops the running instance and removes everything the target created.
    async fn tear_down(&mut self) -> Result<(), DeployError>;
}

/// Returns the samples of one cycle: the total with phase `""` first, then each phase.
pub fn cycle_samples(label: &str, repetition: u32, phases: &DeployPhases) -> Vec<Sample> {
    let mut samples = vec![Sample::new(label, METRIC, "", repetition, phases.total().as_secs_f64(), "s")];
    for (name, value) in phases.named() {
        samples.push(Sample::new(label, METRIC, name, repetition, value.as_secs_f64(), "s"));
    }
    samples
}

/// Measures `repetitions` deploy cycles of `target` after an untimed initial deploy.
/// The target is torn down afterwards, on error too; the first error is returned.
pub async fn measure_deploy_cycles(
    target: &mut dyn DeployTarget,
    repetitions: u32,
    progress: &(dyn for<'m> Fn(&'m str) + Sync),
) -> Result<Vec<Sample>, DeployError> {
    let label = target.label();
    let measured: Result<Vec<Sample>, DeployError> = async {
        progress("deploying version 0 (untimed)");
        target.deploy_initial(progress).await?;
        let mut samples = Vec::new();
        for repetition in 0..repetitions {
            let version = repetition + 1;
            let phases = target.deploy_next(version, progress).await?;
            progress(&format!("deploy cycle {version}/{repetitions}: {:.2} s", phases.total().as_secs_f64()));
            samples.extend(cycle_samples(&label, repetition, &phases));
        }
        Ok(samples)
    }
    .await;
    let torn_down = target.tear_down().await;
    let samples = measured?;
    torn_down?;
    Ok(samples)
}

/// Measures the deploy cycle of a container model (`distroless` or `fat-image`),
/// `settings.repetitions` times, with a local registry started for this call.
#[allow(clippy::too_many_arguments)]
pub async fn measure_deploy_cycle(
    docker: &Docker,
    cache: &ArtifactCache,
    binary: &ServiceBinary,
    kind: ModelKind,
    settings: &DeploySettings,
    limits: &ContainerLimits,
    run_id: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Sample>, DeployError> {
    let mut target = ContainerDeploy::new(docker, cache, binary, kind, limits, run_id).await?;
    measure_deploy_cycles(&mut target, settings.repetitions, progress).await
}

/// A running version of the service.
struct Running {
    version: u32,
    container_id: String,
}

/// The deploy cycle of a container model.
///
/// Build and target host are the same engine. After the push, the new version's local
/// copies are removed (untimed), as a target host has only the running version, so
/// the pull downloads the new application layer. The base is the model's shared base
/// image, present as on a host that runs the old version. `replace` stops the old container; no traffic switch is modelled, since
/// the harness has no load balancer.
pub struct ContainerDeploy {
    docker: Docker,
    cache: ArtifactCache,
    binary: ServiceBinary,
    kind: ModelKind,
    recipe: Recipe,
    limits: ContainerLimits,
    run_id: String,
    registry: Option<LocalRegistry>,
    /// Repository in the registry and locally, for example `deploybench/deploy-distroless`.
    repository: String,
    token: String,
    base_tag: Option<String>,
    running: Option<Running>,
    /// Pulled references to remove at the end.
    pulled: Vec<String>,
}

impl ContainerDeploy {
    /// Starts a local registry for the cycles of `kind`, which must be a container model.
    pub async fn new(
        docker: &Docker,
        cache: &ArtifactCache,
        binary: &ServiceBinary,
        kind: ModelKind,
        limits: &ContainerLimits,
        run_id: &str,
    ) -> Result<ContainerDeploy, DeployError> {
        let recipe = recipe_of(kind)?;
        let registry = LocalRegistry::start().await?;
        Ok(ContainerDeploy {
            docker: docker.clone(),
            cache: cache.clone(),
            binary: binary.clone(),
            kind,
            recipe,
            limits: limits.clone(),
            run_id: run_id.to_string(),
            registry: Some(registry),
            repository: format!("deploybench/deploy-{}", kind.name()),
            token: unique_token(),
            base_tag: None,
            running: None,
            pulled: Vec::new(),
        })
    }

    fn registry(&self) -> &LocalRegistry {
        self.registry.as_ref().expect("the registry runs until tear_down")
    }

    fn tag(&self, version: u32) -> String {
        format!("{}-v{version}", self.token)
    }

    /// Runs one whole deploy of `version` and times its phases.
    async fn deploy(
        &mut self,
        version: u32,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<DeployPhases, DeployError> {
        let base_tag = match &self.base_tag {
            Some(tag) => tag.clone(),
            None => {
                let tag = marked::ensure_recipe_base(&self.docker, &self.cache, &self.recipe, progress).await?;
                self.base_tag = Some(tag.clone());
                tag
            }
        };
        let tag = self.tag(version);
        let local = format!("{}:{tag}", self.repository);
        let remote = format!("{}:{tag}", self.registry().repository(&self.repository));
        let marker = format!("{}-v{version}", self.token);
        let labels = labels(&self.run_id, "deploy");
        let mut phases = DeployPhases::default();

        progress(&format!("version {version}: building"));
        let started = Instant::now();
        marked::build_marked_app(&self.docker, &self.binary, &self.recipe, &base_tag, &marker, &local, &labels).await?;
        phases.build = Some(started.elapsed());

        progress(&format!("version {version}: pushing"));
        let started = Instant::now();
        self.registry().push(&self.docker, &local, &self.repository, &tag).await?;
        phases.push = Some(started.elapsed());

        // Untimed: the target host has no copy of the new version.
        remove_image(&self.docker, &local).await?;
        remove_image(&self.docker, &remote).await?;

        progress(&format!("version {version}: pulling"));
        self.pulled.push(remote.clone());
        let stats = self.registry().pull(&self.docker, &self.repository, &tag).await?;
        phases.pull = Some(stats.elapsed);

        progress(&format!("version {version}: starting"));
        let started = Instant::now();
        let container_id = self.start_container(&remote, version).await?;
        phases.start = Some(started.elapsed());

        let probe_origin = Instant::now();
        let healthy = self.wait_healthy(&container_id, version, probe_origin).await;
        let healthy = match healthy {
            Ok(elapsed) => elapsed,
            Err(error) => {
                let _ = self.remove_container(&container_id).await;
                return Err(error);
            }
        };
        phases.healthy = Some(healthy);
        let old = self.running.replace(Running { version, container_id });

        if let Some(old) = old {
            progress(&format!("version {version}: replacing version {}", old.version));
            let started = Instant::now();
            self.stop_container(&old.container_id).await?;
            phases.replace = Some(started.elapsed());
        }
        Ok(phases)
    }

    async fn start_container(&self, image: &str, version: u32) -> Result<String, DeployError> {
        let name = format!("deploybench-{}-deploy-{}-v{version}-{}", self.run_id, self.kind, self.token);
        let config = container_config(self.kind, image, &self.limits, &self.run_id);
        let engine_error = |action, source| DeployError::Engine { action, target: name.clone(), source };
        let created = self
            .docker
            .create_container(Some(CreateContainerOptions { name: name.clone(), platform: None }), config)
            .await
            .map_err(|source| engine_error("create the container", source))?;
        if let Err(source) = self.docker.start_container::<String>(&created.id, None).await {
            let _ = self.remove_container(&created.id).await;
            return Err(engine_error("start the container", source));
        }
        Ok(created.id)
    }

    /// Waits for the first 200 from /health on the container's published port and
    /// returns the time since `origin`.
    async fn wait_healthy(&self, id: &str, version: u32, origin: Instant) -> Result<Duration, DeployError> {
        let unhealthy = |message: String| DeployError::Unhealthy { model: self.kind.to_string(), version, message };
        let details = self.docker.inspect_container(id, None).await.map_err(|source| DeployError::Engine {
            action: "inspect the container",
            target: id.to_string(),
            source,
        })?;
        let port = details
            .network_settings
            .and_then(|network| network.ports)
            .and_then(|ports| ports.get(&format!("{SERVICE_PORT}/tcp")).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|binding| binding.host_port))
            .and_then(|port| port.parse::<u16>().ok())
            .ok_or_else(|| unhealthy("the engine published no port for the service".to_string()))?;
        let probe = Probe { origin, interval: HEALTH_POLL, deadline: origin + HEALTHY_TIMEOUT };
        probe
            .first_200(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .map_err(|error| unhealthy(error.to_string()))
    }

    async fn stop_container(&self, id: &str) -> Result<(), DeployError> {
        self.docker
            .stop_container(id, Some(StopContainerOptions { t: STOP_TIMEOUT_S }))
            .await
            .map_err(|source| DeployError::Engine { action: "stop the container", target: id.to_string(), source })?;
        self.remove_container(id).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), DeployError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(source) => Err(DeployError::Engine { action: "remove the container", target: id.to_string(), source }),
        }
    }
}

#[async_trait]
impl DeployTarget for ContainerDeploy {
    fn label(&self) -> String {
        self.kind.name().to_string()
    }

    async fn deploy_initial(&mut self, progress: &(dyn for<'m> Fn(&'m str) + Sync)) -> Result<(), DeployError> {
        self.deploy(0, progress).await.map(|_| ())
    }

    async fn deploy_next(
        &mut self,
        version: u32,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<DeployPhases, DeployError> {
        self.deploy(version, progress).await
    }

    async fn tear_down(&mut self) -> Result<(), DeployError> {
        let mut first_error: Option<DeployError> = None;
        if let Some(running) = self.running.take() {
            if let Err(error) = self.remove_container(&running.container_id).await {
                first_error.get_or_insert(error);
            }
        }
        for reference in std::mem::take(&mut self.pulled) {
            if let Err(error) = remove_image(&self.docker, &reference).await {
                tracing::warn!(%reference, %error, "cannot remove a deploy-cycle image");
                first_error.get_or_insert(error.into());
            }
        }
        if let Some(registry) = self.registry.take() {
            if let Err(error) = registry.stop() {
                first_error.get_or_insert(error.into());
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The container configuration of a deployed version: the same settings as the
/// container models' boots, so that start and healthy match their boot phases.
fn container_config(kind: ModelKind, image: &str, limits: &ContainerLimits, run_id: &str) -> Config<String> {
    let labels = labels(run_id, "deploy").into_iter().collect();
    crate::models::instance_config(kind, image, limits, Duration::ZERO, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_sample_comes_first() {
        let phases = DeployPhases {
            build: Some(Duration::from_millis(1500)),
            push: Some(Duration::from_millis(250)),
            pull: Some(Duration::from_millis(250)),
            start: None,
            healthy: Some(Duration::from_millis(500)),
            replace: Some(Duration::from_millis(500)),
        };
        let samples = cycle_samples("distroless", 2, &phases);
        let rows: Vec<(&str, f64)> = samples.iter().map(|sample| (sample.phase.as_str(), sample.value)).collect();
        assert_eq!(
            rows,
            vec![("", 3.0), ("build", 1.5), ("push", 0.25), ("pull", 0.25), ("healthy", 0.5), ("replace", 0.5)]
        );
        assert!(samples.iter().all(|sample| sample.metric == METRIC && sample.unit == "s" && sample.repetition == 2));
    }

    #[test]
    fn missing_phases_left_out_of_total() {
        let phases = DeployPhases { start: Some(Duration::from_secs(2)), ..Default::default() };
        assert_eq!(phases.total(), Duration::from_secs(2));
        assert_eq!(phases.named(), vec![("start", Duration::from_secs(2))]);
    }

    #[test]
    fn distroless_deploy_is_hardened() {
        let limits = ContainerLimits { cpus: 0.5, memory_mib: 128 };
        let config = container_config(ModelKind::Distroless, "image", &limits, "run");
        let host = config.host_config.unwrap();
        assert_eq!(config.user.as_deref(), Some("65532:65532"));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.memory, Some(128 * 1024 * 1024));
        let binding = &host.port_bindings.unwrap()["8080/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        let fat = container_config(ModelKind::FatImage, "image", &limits, "run");
        assert_eq!(fat.user, None);
        assert_eq!(fat.host_config.unwrap().readonly_rootfs, None);
    }
}
