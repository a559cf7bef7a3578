//! The container models: `distroless` (hardened) and `fat-image` (VM-style legacy),
//! both on the Docker engine with runc.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::{Config, CreateContainerOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions};
use bollard::models::{HostConfig, PortBinding};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::{Accounting, BootPhases, DeploymentModel, Instance, InstanceHandle, ModelEnv, ModelError, PreparedArtifact};
use crate::artifacts::{self, ServiceBinary, SERVICE_PORT};
use crate::engine::docker::{owner_label_value, MANAGED_LABEL, OWNER_LABEL, RUN_LABEL};
use crate::measure::boot::Probe;
use crate::measure::cgroup::Cgroup;
use crate::measure::procfs;
use crate::scenario::{ContainerLimits, ModelKind};

/// Seconds a container gets between SIGTERM and SIGKILL when stopped.
const STOP_TIMEOUT_S: i64 = 2;
/// Log lines quoted in the error of a boot that never became healthy.
const LOG_TAIL_LINES: &str = "20";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerFlavor {
    /// Static binary, user 65532, read-only root, no capabilities, limits.
    Distroless,
    /// Whole Debian userland under a supervisor, running as root, no limits.
    FatImage,
}

pub struct ContainerModel {
    flavor: ContainerFlavor,
    image: Option<String>,
    /// The engine, kept from prepare so that accounting can tell why a container died.
    engine: Option<Docker>,
}

impl ContainerModel {
    pub fn new(flavor: ContainerFlavor) -> ContainerModel {
        ContainerModel { flavor, image: None, engine: None }
    }

    fn docker<'a>(&self, env: &'a ModelEnv) -> Result<&'a Docker, ModelError> {
        env.docker.as_ref().ok_or(ModelError::Unavailable {
            model: self.kind(),
            reason: "the Docker engine is not reachable; run scripts/setup.sh".to_string(),
        })
    }

    fn container_config(&self, image: &str, env: &ModelEnv) -> Config<String> {
        let labels = HashMap::from([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            (RUN_LABEL.to_string(), env.run_id.clone()),
            (OWNER_LABEL.to_string(), owner_label_value()),
        ]);
        instance_config(self.kind(), image, &env.scenario.limits, env.scenario.service.ready_delay, labels)
    }

    /// Reads the container's pid, bridge address and published 127.0.0.1 port.
    async fn started_details(&self, docker: &Docker, id: &str) -> Result<(u32, Option<IpAddr>, u16), String> {
        let details = docker.inspect_container(id, None).await.map_err(|error| format!("inspect: {error}"))?;
        let pid = details
            .state
            .as_ref()
            .and_then(|state| state.pid)
            .filter(|&pid| pid > 0)
            .ok_or("the container has no running process")?;
        let network = details.network_settings.ok_or("the container has no network settings")?;
        let bridge_ip = network
            .ip_address
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .and_then(|ip| ip.parse().ok());
        let port = network
            .ports
            .and_then(|ports| ports.get(&format!("{SERVICE_PORT}/tcp")).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|binding| binding.host_port))
            .and_then(|port| port.parse().ok())
            .ok_or("the engine published no port for the service")?;
        Ok((pid as u32, bridge_ip, port))
    }

    /// Probes a started container until healthy and records its phases.
    async fn probe_started(
        &self,
        docker: &Docker,
        id: &str,
        probe: Probe,
    ) -> Result<(u32, SocketAddr, Option<Duration>, Duration), String> {
        let (pid, bridge_ip, port) = self.started_details(docker, id).await?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // The published port is served by the engine's proxy, which accepts before the
        // service does, so the first accept is probed on the container's own address.
        // NOTE: the accept probe begins only after the inspect call returns, so a
        // service that listens within those few milliseconds reads slightly late.
        let accept = async {
            match bridge_ip {
                Some(ip) => probe.first_accept(SocketAddr::new(ip, SERVICE_PORT)).await.map(Some),
                None => Ok(None),
            }
        };
        let (first_accept, first_200) = tokio::join!(accept, probe.first_200(address));
        let first_200 = first_200.map_err(|error| error.to_string())?;
        Ok((pid, address, first_accept.ok().flatten(), first_200))
    }


    /// Why a container is no longer running, when it is not: killed by the kernel for
    /// exceeding its memory limit, or exited with a code. `None` while it runs.
    pub(crate) async fn exit_reason(docker: &Docker, id: &str) -> Option<String> {
        let details = docker.inspect_container(id, None).await.ok()?;
        let state = details.state.as_ref()?;
        if state.running == Some(true) {
            return None;
        }
        if state.oom_killed == Some(true) {
            let limit = details.host_config.as_ref().and_then(|config| config.memory).filter(|&bytes| bytes > 0);
            return Some(match limit {
                Some(bytes) => format!("the container was killed for exceeding its memory limit of {} MiB", bytes >> 20),
                None => "the container was killed by the out-of-memory killer".to_string(),
            });
        }
        Some(format!("the container exited with code {}", state.exit_code.unwrap_or(-1)))
    }

    /// Like `exit_reason`, but gives the engine up to 2 s to notice a process that
    /// just died: its files in /proc vanish before the engine updates its state.
    async fn await_exit_reason(docker: &Docker, id: &str) -> Option<String> {
        for _ in 0..20 {
            if let Some(reason) = Self::exit_reason(docker, id).await {
                return Some(reason);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        docker.remove_container(id, Some(options)).await
    }
}

/// Returns the last lines of a container's log, for error messages.
pub(crate) async fn log_tail(docker: &Docker, id: &str) -> String {
    let options = LogsOptions::<String> { stdout: true, stderr: true, tail: LOG_TAIL_LINES.into(), ..Default::default() };
    let mut stream = docker.logs(id, Some(options));
    let mut lines = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        lines.push_str(&chunk.to_string());
    }
    if lines.trim().is_empty() {
        "(no log output)".to_string()
    } else {
        lines.trim_end().to_string()
    }
}

/// Builds the container configuration of one instance of a container model, shared by
/// boots, deploys and function sandboxes. The hardening of `distroless` follows a
/// production compose file: read-only root, tmpfs /tmp noexec,nosuid, no capabilities,
/// no-new-privileges, CPU and memory limits, and a non-root user.
pub(crate) fn instance_config(
    kind: ModelKind,
    image: &str,
    limits: &ContainerLimits,
    ready_delay: Duration,
    labels: HashMap<String, String>,
) -> Config<String> {
    let port_key = format!("{SERVICE_PORT}/tcp");
    let mut host_config = HostConfig {
        // An empty host port lets the engine pick a free one, so a taken port is avoided.
        port_bindings: Some(HashMap::from([(
            port_key.clone(),
            Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
        )])),
        ..Default::default()
    };
    let mut user = None;
    if kind == ModelKind::Distroless {
        host_config.readonly_rootfs = Some(true);
        host_config.tmpfs = Some(HashMap::from([("/tmp".to_string(), "rw,noexec,nosuid,size=64m".to_string())]));
        host_config.cap_drop = Some(vec!["ALL".to_string()]);
        host_config.security_opt = Some(vec!["no-new-privileges:true".to_string()]);
        host_config.nano_cpus = Some((limits.cpus * 1e9) as i64);
        host_config.memory = Some((limits.memory_mib * 1024 * 1024) as i64);
        user = Some("65532:65532".to_string());
    }
    Config {
        image: Some(image.to_string()),
        user,
        env: Some(vec![format!("READY_DELAY_MS={}", ready_delay.as_millis())]),
        exposed_ports: Some(HashMap::from([(port_key, HashMap::new())])),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The hardened configuration of a distroless container, which the function model's
/// sandboxes reuse unchanged.
pub(crate) fn hardened_config(image: &str, env: &ModelEnv) -> Config<String> {
    ContainerModel::new(ContainerFlavor::Distroless).container_config(image, env)
}

#[async_trait]
impl DeploymentModel for ContainerModel {
    fn kind(&self) -> ModelKind {
        match self.flavor {
            ContainerFlavor::Distroless => ModelKind::Distroless,
            ContainerFlavor::FatImage => ModelKind::FatImage,
        }
    }

    async fn prepare(
        &mut self,
        env: &ModelEnv,
        binary: &ServiceBinary,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<PreparedArtifact, ModelError> {
        let docker = self.docker(env)?;
        let built = match self.flavor {
            ContainerFlavor::Distroless => artifacts::ensure_distroless_image(docker, &env.cache, binary, progress).await,
            ContainerFlavor::FatImage => artifacts::ensure_fat_image(docker, &env.cache, binary, progress).await,
        }
        .map_err(|error| ModelError::Prepare { model: self.kind(), message: error.to_string() })?;
        self.image = Some(built.tag.clone());
        self.engine = Some(docker.clone());
        Ok(PreparedArtifact {
            name: built.tag,
            size_bytes: built.size_bytes,
            reused: built.reused,
            recipe_hash: built.recipe_hash,
        })
    }

    async fn boot(&self, env: &ModelEnv, repetition: u32) -> Result<Instance, ModelError> {
        let docker = self.docker(env)?;
        let name = format!("{}-{repetition}", self.kind());
        let fail = |message: String| ModelError::Boot { instance: name.clone(), message };
        let image = self.image.as_deref().ok_or_else(|| fail("prepare was not called".to_string()))?;
        let container_name = format!("deploybench-{}-{name}", env.run_id);
        let config = self.container_config(image, env);

        let origin = Instant::now();
        let created = docker
            .create_container(Some(CreateContainerOptions { name: container_name.clone(), platform: None }), config)
            .await
            .map_err(|error| fail(format!("container create failed: {error}")))?;
        let create = origin.elapsed();
        let id = created.id;

        if let Err(error) = docker.start_container::<String>(&id, None).await {
            let _ = Self::remove(docker, &id).await;
            return Err(fail(format!("container start failed: {error}")));
        }
        let start = origin.elapsed();

        let probe = Probe { origin, interval: env.scenario.boot.poll_interval, deadline: origin + env.scenario.boot.timeout };
        match self.probe_started(docker, &id, probe).await {
            Ok((pid, address, first_accept, first_200)) => {
                let cgroup = match Cgroup::of_pid(pid) {
                    Ok(cgroup) => cgroup,
                    Err(error) => {
                        let _ = Self::remove(docker, &id).await;
                        return Err(fail(error.to_string()));
                    }
                };
                Ok(Instance {
                    name,
                    address,
                    phases: BootPhases { create: Some(create), start: Some(start), first_accept, first_200 },
                    handle: InstanceHandle::Container { id, pid, cgroup },
                })
            }
            Err(message) => {
                let message = match Self::exit_reason(docker, &id).await {
                    Some(reason) => format!("{reason}; {message}"),
                    None => message,
                };
                let logs = log_tail(docker, &id).await;
                let _ = Self::remove(docker, &id).await;
                Err(fail(format!("{message}; last log lines of {container_name}:\n{logs}")))
            }
        }
    }

    async fn accounting(&self, instance: &Instance) -> Result<Accounting, ModelError> {
        let InstanceHandle::Container { pid, cgroup, .. } = &instance.handle else {
            unreachable!("container models only create container instances");
        };
        let read = || -> Result<Accounting, String> {
            let instance_bytes = cgroup.memory_bytes().map_err(|error| error.to_string())?;
            let cpu_time = cgroup.cpu_time().map_err(|error| error.to_string())?;
            // The container's first process is a child of its runtime shim.
            let shim = procfs::parent_pid(*pid).map_err(|error| error.to_string())?;
            let runtime_bytes = procfs::pss_bytes(shim).map_err(|error| error.to_string())?;
            Ok(Accounting { instance_bytes, runtime_bytes, cpu_time })
        };
        match read() {
            Ok(accounting) => Ok(accounting),
            Err(message) => {
                // The files of a dead container vanish, so name the kernel's kill when there was one.
                let InstanceHandle::Container { id, .. } = &instance.handle else { unreachable!() };
                let message = match &self.engine {
                    Some(docker) => match Self::await_exit_reason(docker, id).await {
                        Some(reason) => format!("{reason} ({message})"),
                        None => message,
                    },
                    None => message,
                };
                Err(ModelError::Accounting { instance: instance.name.clone(), message })
            }
        }
    }

    async fn stop(&self, env: &ModelEnv, instance: Instance) -> Result<(), ModelError> {
        let InstanceHandle::Container { id, .. } = &instance.handle else {
            unreachable!("container models only create container instances");
        };
        let docker = self.docker(env)?;
        let fail = |error: bollard::errors::Error| ModelError::Stop { instance: instance.name.clone(), message: error.to_string() };
        docker
            .stop_container(id, Some(StopContainerOptions { t: STOP_TIMEOUT_S }))
            .await
            .map_err(fail)?;
        Self::remove(docker, id).await.map_err(fail)
    }
}
