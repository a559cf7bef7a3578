//! The `process` model: the service binary as a plain child process, the floor every
//! other model is measured against.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Accounting, BootPhases, DeploymentModel, Instance, InstanceHandle, ModelEnv, ModelError, PreparedArtifact};
use crate::artifacts::ServiceBinary;
use crate::measure::{boot::Probe, procfs};
use crate::scenario::ModelKind;

/// How long a stopped process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct ProcessModel {
    binary: Option<std::path::PathBuf>,
}

/// Asks the kernel for a free loopback port. Another program may take it before the
/// service binds it; the boot then fails with the bind error rather than hanging.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[async_trait]
impl DeploymentModel for ProcessModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Process
    }

    async fn prepare(
        &mut self,
        _env: &ModelEnv,
        binary: &ServiceBinary,
        _progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<PreparedArtifact, ModelError> {
        self.binary = Some(binary.path.clone());
        Ok(PreparedArtifact {
            name: binary.path.display().to_string(),
            size_bytes: binary.size_bytes,
            reused: true,
            recipe_hash: binary.sha256.clone(),
        })
    }

    async fn boot(&self, env: &ModelEnv, repetition: u32) -> Result<Instance, ModelError> {
        let name = format!("process-{repetition}");
        let fail = |message: String| ModelError::Boot { instance: name.clone(), message };
        let binary = self.binary.as_ref().ok_or_else(|| fail("prepare was not called".to_string()))?;
        let port = free_port().map_err(|error| fail(format!("no free loopback port: {error}")))?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

        let origin = Instant::now();
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--ready-delay-ms", &env.scenario.service.ready_delay.as_millis().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // A harness killed with SIGKILL runs no drop, so the kernel ends the service.
        crate::engine::kill_with_parent(&mut command);
        let mut child = command.spawn()
            .map_err(|error| fail(format!("cannot spawn {}: {error}", binary.display())))?;
        let start = origin.elapsed();
        let pid = child.id().ok_or_else(|| fail("the process exited at once".to_string()))?;

        let probe = Probe {
            origin,
            interval: env.scenario.boot.poll_interval,
            deadline: origin + env.scenario.boot.timeout,
        };
        let probed = async {
            let first_accept = probe.first_accept(address).await?;
            let first_200 = probe.first_200(address).await?;
            Ok::<_, crate::measure::boot::ProbeError>((first_accept, first_200))
        };
        let (first_accept, first_200) = tokio::select! {
            probed = probed => probed.map_err(|error| fail(error.to_string()))?,
            status = child.wait() => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = pipe.read_to_string(&mut stderr).await;
                }
                return Err(fail(format!("the process exited before it was healthy ({status:?}): {}", stderr.trim())));
            }
        };
        Ok(Instance {
            name,
            address,
            phases: BootPhases { create: None, start: Some(start), first_accept: Some(first_accept), first_200 },
            handle: InstanceHandle::Process { child, pid },
        })
    }

    async fn accounting(&self, instance: &Instance) -> Result<Accounting, ModelError> {
        let InstanceHandle::Process { pid, .. } = &instance.handle else {
            unreachable!("the process model only creates process instances");
        };
        let fail = |message: String| ModelError::Accounting { instance: instance.name.clone(), message };
        Ok(Accounting {
            instance_bytes: procfs::rss_bytes(*pid).map_err(|error| fail(error.to_string()))?,
            runtime_bytes: 0,
            cpu_time: procfs::process_cpu_time(*pid).map_err(|error| fail(error.to_string()))?,
        })
    }

    async fn stop(&self, _env: &ModelEnv, instance: Instance) -> Result<(), ModelError> {
        let InstanceHandle::Process { mut child, pid } = instance.handle else {
            unreachable!("the process model only creates process instances");
        };
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(ModelError::Stop { instance: instance.name, message: error.to_string() }),
            Err(_) => {
                child.kill().await.map_err(|error| ModelError::Stop {
                    instance: instance.name.clone(),
                    message: format!("did not exit within {STOP_GRACE:?} of SIGTERM and cannot be killed: {error}"),
                })
            }
        }
    }
}
