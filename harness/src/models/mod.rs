//! Deployment models behind one trait: prepare artifacts, boot an instance, read its
//! accounting, stop it.
//!
//! A new deployment model is one new module here plus its artifact recipe.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::artifacts::{ArtifactCache, ServiceBinary};
use crate::scenario::{ModelKind, Scenario};

mod container;
pub mod function;
mod process;
mod vm;

pub use container::{ContainerFlavor, ContainerModel};
pub(crate) use container::instance_config;
pub use function::{measure_function_patterns, FunctionInstance, FunctionModel};
pub use process::ProcessModel;
pub use vm::{remove_leftover_vm_folders, GuestMemory, VmHandle, VmModel};

/// Context every model receives from the run that drives it.
#[derive(Clone)]
pub struct ModelEnv {
    pub scenario: Scenario,
    /// Identifier of the run, put on every container as a label.
    pub run_id: String,
    pub workspace_root: PathBuf,
    pub cache: ArtifactCache,
    /// Connected engine; `None` when Docker is not reachable.
    pub docker: Option<bollard::Docker>,
}

/// The artifact a model boots from.
#[derive(Debug, Clone)]
pub struct PreparedArtifact {
    /// Image tag or binary path.
    pub name: String,
    pub size_bytes: u64,
    /// True when the artifact was found in the cache and not rebuilt.
    pub reused: bool,
    pub recipe_hash: String,
}

/// Times from the harness's first start call to each observable boot event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootPhases {
    /// Container created (containers only).
    pub create: Option<Duration>,
    /// Start call returned: container started, or process spawned.
    pub start: Option<Duration>,
    /// First TCP connection accepted by the service itself, not by a proxy.
    pub first_accept: Option<Duration>,
    /// First 200 from GET /health: the boot time.
    pub first_200: Duration,
}

impl BootPhases {
    /// Phase names and values in boot order, as recorded in samples.
    pub fn named(&self) -> Vec<(&'static str, Duration)> {
        let mut phases = Vec::new();
        if let Some(create) = self.create {
            phases.push(("create", create));
        }
        if let Some(start) = self.start {
            phases.push(("start", start));
        }
        if let Some(first_accept) = self.first_accept {
            phases.push(("first_accept", first_accept));
        }
        phases.push(("first_200", self.first_200));
        phases
    }
}

/// One booted copy of the service.
#[derive(Debug)]
pub struct Instance {
    /// Human-readable name such as `distroless-3`.
    pub name: String,
    /// Address on 127.0.0.1 where the harness sends load.
    pub address: SocketAddr,
    pub phases: BootPhases,
    pub handle: InstanceHandle,
}

#[derive(Debug)]
pub enum InstanceHandle {
    Process {
        child: tokio::process::Child,
        pid: u32,
    },
    Container {
        id: String,
        pid: u32,
        cgroup: crate::measure::cgroup::Cgroup,
    },
    /// A QEMU process with its overlay disk, QMP socket and serial console.
    Vm(Box<VmHandle>),
    /// A scale-to-zero gateway with the sandboxes it started.
    Function(Box<FunctionInstance>),
}

/// Resource accounting of one instance at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accounting {
    /// The service's own memory: cgroup usage less inactive file, or the process RSS.
    pub instance_bytes: u64,
    /// Memory of per-instance runtime processes (the container shim) by PSS.
    pub runtime_bytes: u64,
    /// CPU time charged to the instance so far.
    pub cpu_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot prepare {model}: {message}")]
    Prepare { model: ModelKind, message: String },
    #[error("cannot boot {instance}: {message}")]
    Boot { instance: String, message: String },
    #[error("cannot read the accounting of {instance}: {message}")]
    Accounting { instance: String, message: String },
    #[error("cannot stop {instance}: {message}")]
    Stop { instance: String, message: String },
    #[error("{model} is not available here: {reason}")]
    Unavailable { model: ModelKind, reason: String },
    #[error(
        "the Docker engine stopped responding while {model} was measured and did not return within {waited_s} s; \
             start it again (scripts/setup.sh) and rerun"
    )]
    EngineGone { model: String, waited_s: u64 },
}

#[async_trait]
pub trait DeploymentModel: Send + Sync {
    fn kind(&self) -> ModelKind;

    /// Label used in results, tables and plots.
    fn label(&self) -> String {
        self.kind().name().to_string()
    }

    /// Builds or reuses the model's artifact.
    async fn prepare(
        &mut self,
        env: &ModelEnv,
        binary: &ServiceBinary,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<PreparedArtifact, ModelError>;

    /// Boots one instance and waits for its first 200 from /health.
    async fn boot(&self, env: &ModelEnv, repetition: u32) -> Result<Instance, ModelError>;

    async fn accounting(&self, instance: &Instance) -> Result<Accounting, ModelError>;

    /// Stops the instance and removes everything it left.
    async fn stop(&self, env: &ModelEnv, instance: Instance) -> Result<(), ModelError>;
}

/// Creates the model for a scenario entry.
pub fn create(kind: ModelKind) -> Box<dyn DeploymentModel> {
    match kind {
        ModelKind::Process => Box::new(ProcessModel::default()),
        ModelKind::Distroless => Box::new(ContainerModel::new(ContainerFlavor::Distroless)),
        ModelKind::FatImage => Box::new(ContainerModel::new(ContainerFlavor::FatImage)),
        ModelKind::Vm => Box::new(VmModel::default()),
        ModelKind::Function => Box::new(FunctionModel::default()),
    }
}
