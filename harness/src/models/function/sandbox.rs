//! Sandboxes behind the gateway: the trait the gateway starts and stops them through,
//! and its implementation with hardened distroless containers on the Docker engine.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::artifacts::SERVICE_PORT;
use crate::measure::boot::Probe;
use crate::measure::cgroup::Cgroup;
use crate::measure::procfs;
use crate::models::container::{hardened_config, log_tail};
use crate::models::ModelEnv;

/// Label that names the gateway a sandbox belongs to, as `PID-NUMBER`, so the gateway
/// and the tests can list exactly its sandboxes.
pub const GATEWAY_LABEL: &str = "io.deploybench.function-gateway";
/// Seconds a sandbox gets between SIGTERM and SIGKILL when its keep-warm window ends.
const STOP_TIMEOUT_S: i64 = 2;

/// Times of one cold start, from the request reaching the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTimings {
    /// The create call returned.
    pub create: Duration,
    /// The start call returned.
    pub start: Duration,
    /// The sandbox returned 200 to its first `GET /health`.
    pub ready: Duration,
}

/// A started, healthy sandbox.
#[derive(Debug, Clone)]
pub struct LaunchedSandbox {
    /// Engine id of the container, or any unique name for a fake sandbox.
    pub id: String,
    /// Address on 127.0.0.1 where the sandbox serves.
    pub address: SocketAddr,
    pub timings: LaunchTimings,
    /// Cgroup of the sandbox, for memory and CPU accounting.
    pub cgroup: Option<Cgroup>,
    /// Pid of the sandbox's first process, whose parent is the runtime shim.
    pub pid: Option<u32>,
}

/// Resources one sandbox uses at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxUsage {
    /// Cgroup memory usage less inactive file cache.
    pub memory_bytes: u64,
    /// PSS of the runtime shim.
    pub runtime_bytes: u64,
    /// CPU time charged to the cgroup since the sandbox started.
    pub cpu_time: Duration,
}

/// Interface through which the gateway starts, stops and measures sandboxes. The gateway
/// calls every async method on its own runtime thread.
#[async_trait]
pub trait SandboxBackend: Send + Sync + 'static {
    /// Prepares the backend on the gateway's runtime, before the first request.
    async fn open(&self) -> Result<(), String> {
        Ok(())
    }

    /// Creates and starts one sandbox and waits until `GET /health` returns 200. Times
    /// count from `origin`, and the wait for health ends at `deadline`. A failed launch
    /// leaves no sandbox behind.
    async fn launch(&self, origin: Instant, deadline: Instant, poll_interval: Duration) -> Result<LaunchedSandbox, String>;

    /// Stops and removes one sandbox.
    async fn destroy(&self, sandbox: &LaunchedSandbox) -> Result<(), String>;

    /// Removes every sandbox this backend started and has not destroyed yet, including
    /// any whose launch was cut short. Returns how many it removed.
    async fn destroy_all(&self) -> Result<usize, String>;

    fn usage(&self, sandbox: &LaunchedSandbox) -> Result<SandboxUsage, String>;
}

/// Distroless containers with the hardening of the `distroless` model, labeled with
/// the run, the owner process and the gateway.
pub struct DockerSandboxes {
    /// Connected in [`SandboxBackend::open`], on the gateway's runtime, because the
    /// client's pooled connections belong to the runtime that opened them.
    docker: OnceCell<Docker>,
    config: Config<String>,
    gateway_label_value: String,
    name_prefix: String,
    next_sandbox: AtomicU64,
    /// Containers created and not yet removed.
    tracked: Mutex<HashSet<String>>,
}

impl DockerSandboxes {
    /// Prepares sandboxes of `image` for the gateway named `gateway_label_value`.
    pub fn new(image: &str, env: &ModelEnv, gateway_label_value: &str) -> DockerSandboxes {
        let mut config = hardened_config(image, env);
        config
            .labels
            .get_or_insert_with(HashMap::new)
            .insert(GATEWAY_LABEL.to_string(), gateway_label_value.to_string());
        DockerSandboxes {
            docker: OnceCell::new(),
            config,
            gateway_label_value: gateway_label_value.to_string(),
            name_prefix: format!("deploybench-{}-function-{gateway_label_value}", env.run_id),
            next_sandbox: AtomicU64::new(0),
            tracked: Mutex::new(HashSet::new()),
        }
    }

    fn docker(&self) -> Result<&Docker, String> {
        self.docker.get().ok_or_else(|| "the sandbox backend was not opened".to_string())
    }

    fn track(&self, id: &str, tracked: bool) {
        let mut set = self.tracked.lock().expect("no code panics while holding the lock");
        if tracked {
            set.insert(id.to_string());
        } else {
            set.remove(id);
        }
    }

    async fn remove(&self, docker: &Docker, id: &str) -> Result<(), String> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match docker.remove_container(id, Some(options)).await {
            Ok(()) => {
                self.track(id, false);
                Ok(())
            }
            // 404: the container is already gone, which is the goal.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                self.track(id, false);
                Ok(())
            }
            Err(error) => Err(format!("cannot remove sandbox {id}: {error}")),
        }
    }

    /// Starts a created container and probes it until healthy.
    async fn start_and_probe(
        &self,
        docker: &Docker,
        id: &str,
        origin: Instant,
        create: Duration,
        deadline: Instant,
        poll_interval: Duration,
    ) -> Result<LaunchedSandbox, String> {
        docker
            .start_container::<String>(id, None)
            .await
            .map_err(|error| format!("container start failed: {error}"))?;
        let start = origin.elapsed();
        let (pid, port) = started_details(docker, id).await?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let probe = Probe { origin, interval: poll_interval, deadline };
        let ready = match probe.first_200(address).await {
            Ok(ready) => ready,
            Err(error) => return Err(format!("{error}; last log lines:\n{}", log_tail(docker, id).await)),
        };
        let cgroup = Cgroup::of_pid(pid).map_err(|error| error.to_string())?;
        Ok(LaunchedSandbox {
            id: id.to_string(),
            address,
            timings: LaunchTimings { create, start, ready },
            cgroup: Some(cgroup),
            pid: Some(pid),
        })
    }
}

#[async_trait]
impl SandboxBackend for DockerSandboxes {
    async fn open(&self) -> Result<(), String> {
        let docker = crate::engine::docker::connect().await.map_err(|error| error.to_string())?;
        let _ = self.docker.set(docker);
        Ok(())
    }

    async fn launch(&self, origin: Instant, deadline: Instant, poll_interval: Duration) -> Result<LaunchedSandbox, String> {
        let docker = self.docker()?;
        let number = self.next_sandbox.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{number}", self.name_prefix);
        let created = docker
            .create_container(Some(CreateContainerOptions { name: name.clone(), platform: None }), self.config.clone())
            .await
            .map_err(|error| format!("container create failed for {name}: {error}"))?;
        let create = origin.elapsed();
        self.track(&created.id, true);

        match self.start_and_probe(docker, &created.id, origin, create, deadline, poll_interval).await {
            Ok(sandbox) => Ok(sandbox),
            Err(message) => {
                if let Err(error) = self.remove(docker, &created.id).await {
                    tracing::warn!(%error, "cannot remove a sandbox whose launch failed");
                }
                Err(format!("sandbox {name}: {message}"))
            }
        }
    }

    async fn destroy(&self, sandbox: &LaunchedSandbox) -> Result<(), String> {
        let docker = self.docker()?;
        // A stop that fails still leaves the forced removal to end the container.
        if let Err(error) = docker.stop_container(&sandbox.id, Some(StopContainerOptions { t: STOP_TIMEOUT_S })).await {
            tracing::debug!(sandbox = %sandbox.id, %error, "stop failed, removing by force");
        }
        self.remove(docker, &sandbox.id).await
    }

    async fn destroy_all(&self) -> Result<usize, String> {
        let docker = self.docker()?;
        let options = ListContainersOptions::<String> {
            all: true,
            filters: HashMap::from([(
                "label".to_string(),
                vec![format!("{GATEWAY_LABEL}={}", self.gateway_label_value)],
            )]),
            ..Default::default()
        };
        let listed = docker
            .list_containers(Some(options))
            .await
            .map_err(|error| format!("cannot list the gateway's sandboxes: {error}"))?;
        let mut ids: HashSet<String> = listed.into_iter().filter_map(|container| container.id).collect();
        ids.extend(self.tracked.lock().expect("no code panics while holding the lock").iter().cloned());

        let mut removed = 0;
        let mut failures = Vec::new();
        for id in ids {
            match self.remove(docker, &id).await {
                Ok(()) => removed += 1,
                Err(error) => failures.push(error),
            }
        }
        if failures.is_empty() {
            Ok(removed)
        } else {
            Err(failures.join("; "))
        }
    }

    fn usage(&self, sandbox: &LaunchedSandbox) -> Result<SandboxUsage, String> {
        let (Some(cgroup), Some(pid)) = (&sandbox.cgroup, sandbox.pid) else {
            return Err(format!("sandbox {} has no cgroup", sandbox.id));
        };
        container_usage(cgroup, pid)
    }
}

/// Reads a container's memory and CPU from its cgroup and its shim's PSS.
pub fn container_usage(cgroup: &Cgroup, pid: u32) -> Result<SandboxUsage, String> {
    let memory_bytes = cgroup.memory_bytes().map_err(|error| error.to_string())?;
    let cpu_time = cgroup.cpu_time().map_err(|error| error.to_string())?;
    // The container's first process is a child of its runtime shim.
    let shim = procfs::parent_pid(pid).map_err(|error| error.to_string())?;
    let runtime_bytes = procfs::pss_bytes(shim).map_err(|error| error.to_string())?;
    Ok(SandboxUsage { memory_bytes, runtime_bytes, cpu_time })
}

/// Reads a started container's pid and its published 127.0.0.1 port.
pub async fn started_details(docker: &Docker, id: &str) -> Result<(u32, u16), String> {
    let details = docker.inspect_container(id, None).await.map_err(|error| format!("inspect: {error}"))?;
    let pid = details
        .state
        .as_ref()
        .and_then(|state| state.pid)
        .filter(|&pid| pid > 0)
        .ok_or("the container has no running process")?;
    let port = details
        .network_settings
        .and_then(|network| network.ports)
        .and_then(|ports| ports.get(&format!("{SERVICE_PORT}/tcp")).cloned().flatten())
        .and_then(|bindings| bindings.into_iter().find_map(|binding| binding.host_port))
        .and_then(|port| port.parse().ok())
        .ok_or("the engine published no port for the service")?;
    Ok((pid as u32, port))
}

