//! The `function` model: the distroless image started on demand by a scale-to-zero
//! gateway, as hosted function platforms do.
//!
//! A request that finds no idle warm instance starts a sandbox (a hardened distroless
//! container), waits for its first 200 from /health and is then forwarded. Idle
//! instances stay warm for `function.keep_warm_s` and are then stopped and removed.
//! `function.max_instances` bounds the fleet, each instance serves
//! `function.concurrency` requests at once (1 by default, as on AWS Lambda), and
//! requests beyond that wait in a queue of `function.queue_limit` for at most
//! `function.queue_timeout_s` before the gateway rejects them with 503.
//!
//! A boot is one cold start through a fresh gateway, timed from the first request
//! reaching the gateway, so the runner's boot loop yields cold-start times comparable
//! to the other models' boot times. [`measure_function_patterns`] measures the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::{Accounting, BootPhases, DeploymentModel, Instance, InstanceHandle, ModelEnv, ModelError, PreparedArtifact};
use crate::artifacts::{self, ServiceBinary};
use crate::scenario::ModelKind;

pub mod client;
mod forward;
pub mod gateway;
mod measure;
pub mod patterns;
mod pool;
pub mod sandbox;

#[cfg(test)]
mod tests;

pub use gateway::{FleetGauge, Gateway, GatewayConfig, GatewayStats, Outcome, RequestRecord, StartKind};
pub use measure::{measure_function_patterns, INSTANCE_SAMPLE_PERIOD};
pub use patterns::{run_bursty, run_pattern, run_spike, run_steady, PatternRun, PatternSpec};
pub use pool::{PoolCounters, PoolLimits};
pub use sandbox::{DockerSandboxes, LaunchTimings, SandboxBackend, GATEWAY_LABEL};

/// Gateways started by this process, to give each a unique name.
static GATEWAYS: AtomicU64 = AtomicU64::new(0);

/// Returns a gateway name unique on this host while this process runs:
/// `PID-NUMBER-PURPOSE`, usable in container names and labels.
pub fn gateway_name(purpose: &str) -> String {
    let number = GATEWAYS.fetch_add(1, Ordering::Relaxed);
    format!("{}-{number}-{purpose}", std::process::id())
}

/// Starts a gateway whose sandboxes run `image` with the scenario's limits.
pub async fn start_docker_gateway(env: &ModelEnv, image: &str, purpose: &str) -> Result<Gateway, String> {
    let name = gateway_name(purpose);
    let backend = Arc::new(DockerSandboxes::new(image, env, &name));
    Gateway::start(GatewayConfig::from_scenario(&env.scenario, &name), backend).await
}

/// A booted function instance: the gateway and the sandbox of its first request.
#[derive(Debug)]
pub struct FunctionInstance {
    gateway: Gateway,
}

impl FunctionInstance {
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }
}

#[derive(Default)]
pub struct FunctionModel {
    image: Option<String>,
}

impl FunctionModel {
    fn docker<'a>(&self, env: &'a ModelEnv) -> Result<&'a bollard::Docker, ModelError> {
        env.docker.as_ref().ok_or(ModelError::Unavailable {
            model: ModelKind::Function,
            reason: "the Docker engine is not reachable; run scripts/setup.sh".to_string(),
        })
    }
}

/// The gateway of a function instance.
fn gateway_of(instance: &Instance) -> &Gateway {
    let InstanceHandle::Function(function) = &instance.handle else {
        unreachable!("the function model only creates function instances");
    };
    &function.gateway
}

#[async_trait]
impl DeploymentModel for FunctionModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Function
    }

    async fn prepare(
        &mut self,
        env: &ModelEnv,
        binary: &ServiceBinary,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<PreparedArtifact, ModelError> {
        let docker = self.docker(env)?;
        let built = artifacts::ensure_distroless_image(docker, &env.cache, binary, progress)
            .await
            .map_err(|error| ModelError::Prepare { model: ModelKind::Function, message: error.to_string() })?;
        self.image = Some(built.tag.clone());
        Ok(PreparedArtifact {
            name: built.tag,
            size_bytes: built.size_bytes,
            reused: built.reused,
            recipe_hash: built.recipe_hash,
        })
    }

    /// Starts a fresh gateway and sends it `GET /health`, which starts the first
    /// sandbox. The phases count from that request reaching the gateway, and
    /// `first_200` is the sandbox's response to it.
    async fn boot(&self, env: &ModelEnv, repetition: u32) -> Result<Instance, ModelError> {
        self.docker(env)?;
        let name = format!("function-{repetition}");
        let fail = |message: String| ModelError::Boot { instance: name.clone(), message };
        let image = self.image.as_deref().ok_or_else(|| fail("prepare was not called".to_string()))?;
        let gateway = start_docker_gateway(env, image, &format!("boot-{repetition}")).await.map_err(&fail)?;

        let limit = env.scenario.boot.timeout + env.scenario.load.request_timeout;
        let response = client::get_once(gateway.address(), "/health", limit).await;
        let record = gateway.records().into_iter().next();
        let phases = match (response, record) {
            (Ok(response), Some(record)) if response.status == 200 => match (record.start, record.handler) {
                (StartKind::Cold(timings), Some(handler)) => Ok(BootPhases {
                    create: Some(timings.create),
                    start: Some(timings.start),
                    first_accept: None,
                    first_200: handler,
                }),
                _ => Err(format!("the first request was not a cold start: {record:?}")),
            },
            (Ok(response), record) => Err(format!("GET /health through the gateway returned {}: {record:?}", response.status)),
            (Err(error), _) => Err(format!("GET /health through the gateway failed: {error}")),
        };
        match phases {
            Ok(phases) => Ok(Instance {
                name,
                address: gateway.address(),
                phases,
                handle: InstanceHandle::Function(Box::new(FunctionInstance { gateway })),
            }),
            Err(message) => {
                if let Err(error) = gateway.shutdown().await {
                    tracing::warn!(%error, "cannot shut down the gateway of a failed boot");
                }
                Err(fail(message))
            }
        }
    }

    /// Memory of the warm sandboxes (one after a boot) with their shims, and the CPU
    /// time of every sandbox so far plus the gateway thread's.
    async fn accounting(&self, instance: &Instance) -> Result<Accounting, ModelError> {
        let accounting = gateway_of(instance)
            .accounting()
            .map_err(|message| ModelError::Accounting { instance: instance.name.clone(), message })?;
        Ok(Accounting {
            instance_bytes: accounting.usage.memory_bytes,
            runtime_bytes: accounting.usage.runtime_bytes,
            cpu_time: accounting.sandbox_cpu + accounting.gateway_cpu.unwrap_or_default(),
        })
    }

    async fn stop(&self, _env: &ModelEnv, instance: Instance) -> Result<(), ModelError> {
        let InstanceHandle::Function(function) = instance.handle else {
            unreachable!("the function model only creates function instances");
        };
        function
            .gateway
            .shutdown()
            .await
            .map(|_| ())
            .map_err(|message| ModelError::Stop { instance: instance.name, message })
    }
}
