//! The `vm` model: QEMU boots the kernel of the Debian disk from
//! `workloads/images/vm.toml`, systemd starts the service, and the harness reaches it
//! through a user-mode network forward on 127.0.0.1.
//!
//! The accelerator is chosen once, in `prepare`: KVM when a short test boot under KVM
//! works, else TCG (or as the scenario's `[vm] accelerator` sets), and the label records
//! it. Each boot writes to its own qcow2 overlay in a temporary folder that also contains
//! the QMP socket and the serial console log. The folder goes when the instance stops
//! or its handle drops, and QEMU is killed when its handle drops.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Accounting, BootPhases, DeploymentModel, Instance, InstanceHandle, ModelEnv, ModelError, PreparedArtifact};
use crate::artifacts::vm_disk::{ensure_vm_disk, VmDisk, VmDiskRecipe};
use crate::artifacts::{ServiceBinary, SERVICE_PORT};
use crate::engine::qemu::qmp::{QmpClient, QmpError};
use crate::engine::qemu::serial::{ConsolePhases, SerialConsole};
use crate::engine::qemu::{self, Accelerator, PortForward, VmSpec};
use crate::measure::boot::Probe;
use crate::measure::procfs;
use crate::scenario::{ModelKind, VmAccelerator};

/// Time the KVM test boot gets to reach the initramfs. A working KVM needs about a
/// second; a nested KVM that hangs its guests never gets there.
const KVM_PROBE_LIMIT: Duration = Duration::from_secs(5);
/// Time from QMP `system_powerdown` to QEMU's exit before `quit` is sent. systemd
/// stops every unit first, which under TCG takes several seconds.
const POWERDOWN_GRACE: Duration = Duration::from_secs(30);
/// Time QEMU gets to exit after `quit` before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(5);
/// Time allowed for connecting to QMP and for one command's reply.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of QEMU's stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 4096;

/// The `vm` deployment model.
#[derive(Default)]
pub struct VmModel {
    disk: Option<VmDisk>,
    accelerator: Option<Accelerator>,
}

/// A running VM: the QEMU process and the files it uses.
#[derive(Debug)]
pub struct VmHandle {
    // Fields drop in order: QEMU is killed before its folder is deleted.
    child: Child,
    pid: u32,
    accelerator: Accelerator,
    console: SerialConsole,
    stderr: OutputTail,
    /// Times of the boot events read from the serial console.
    console_phases: ConsolePhases,
    qmp_socket: PathBuf,
    /// Temporary folder with the overlay, the QMP socket and the serial log.
    directory: tempfile::TempDir,
}

/// The guest's own view of its memory, from the virtio balloon driver's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMemory {
    pub total_bytes: u64,
    /// The guest kernel's MemAvailable.
    pub available_bytes: u64,
    pub free_bytes: u64,
}

impl GuestMemory {
    /// Memory in use as the guest counts it: total less available.
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.available_bytes)
    }

    /// Reads the value of QOM property `guest-stats` of a virtio balloon device. QEMU
    /// reports -1 for a statistic the guest has not sent, and `last-update` 0 before the
    /// first report.
    pub fn from_stats(value: &Value) -> Result<GuestMemory, String> {
        if value.get("last-update").and_then(Value::as_u64) == Some(0) {
            return Err("the guest's balloon driver has not reported memory statistics yet".to_string());
        }
        let statistic = |name: &str| {
            value
                .get("stats")
                .and_then(|stats| stats.get(name))
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("the balloon statistics lack {name}: {value}"))
        };
        Ok(GuestMemory {
            total_bytes: statistic("stat-total-memory")?,
            available_bytes: statistic("stat-available-memory")?,
            free_bytes: statistic("stat-free-memory")?,
        })
    }
}

impl VmHandle {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn accelerator(&self) -> Accelerator {
        self.accelerator
    }

    /// Times of the kernel's first console line and of systemd's first line.
    pub fn console_phases(&self) -> ConsolePhases {
        self.console_phases
    }

    /// Phase names and values in boot order, as recorded in samples: `phases` with the
    /// VM-only phases `kernel_start` and `init_reached` between `start` and `first_200`.
    pub fn named_phases(&self, phases: &BootPhases) -> Vec<(&'static str, Duration)> {
        let mut named = phases.named();
        let first_200 = named.pop();
        if let Some(kernel) = self.console_phases.kernel {
            named.push(("kernel_start", kernel));
        }
        if let Some(init) = self.console_phases.init {
            named.push(("init_reached", init));
        }
        named.extend(first_200);
        named
    }

    /// Returns the folder of the overlay, the QMP socket and the serial log.
    pub fn directory(&self) -> &std::path::Path {
        self.directory.path()
    }

    /// Reads the guest's memory statistics over QMP.
    pub async fn guest_memory(&self) -> Result<GuestMemory, String> {
        let arguments = json!({ "path": qemu::BALLOON_PATH, "property": "guest-stats" });
        let value = tokio::time::timeout(QMP_TIMEOUT, async {
            let mut client = QmpClient::connect(&self.qmp_socket).await?;
            client.execute("qom-get", Some(arguments)).await
        })
        .await
        .map_err(|_| format!("QMP did not reply within {QMP_TIMEOUT:?}"))?
        .map_err(|error| error.to_string())?;
        GuestMemory::from_stats(&value)
    }

    /// Returns the serial console's last lines and QEMU's stderr, for error messages.
    fn failure_detail(&self) -> String {
        format!(
            "last serial console lines:\n{}\nQEMU stderr: {}",
            self.console.tail(),
            self.stderr.text().unwrap_or_else(|| "(empty)".to_string())
        )
    }

    /// Shuts the VM down: ACPI power button through QMP, then QMP `quit`, then SIGKILL,
    /// each after the previous one had its grace time. Deletes the folder. Returns how
    /// QEMU ended.
    async fn shut_down(mut self) -> Result<&'static str, String> {
        let started = Instant::now();
        if let Ok(Some(status)) = self.child.try_wait() {
            tracing::warn!(pid = self.pid, %status, "QEMU had exited before the stop");
            return self.remove_directory("exited before the stop");
        }
        let ending = match qmp_command(&self.qmp_socket, "system_powerdown").await {
            Err(error) => {
                tracing::warn!(pid = self.pid, %error, "QMP system_powerdown failed; sending quit");
                None
            }
            Ok(()) => match tokio::time::timeout(POWERDOWN_GRACE, self.child.wait()).await {
                Ok(_) => Some("powered off"),
                Err(_) => {
                    tracing::warn!(pid = self.pid, grace = ?POWERDOWN_GRACE, "the guest did not power off; sending quit");
                    None
                }
            },
        };
        let ending = match ending {
            Some(ending) => ending,
            None => self.quit_or_kill().await?,
        };
        tracing::info!(pid = self.pid, ending, elapsed_s = started.elapsed().as_secs_f64(), "VM stopped");
        self.remove_directory(ending)
    }

    fn remove_directory(self, ending: &'static str) -> Result<&'static str, String> {
        let path = self.directory.path().to_path_buf();
        self.directory
            .close()
            .map_err(|error| format!("QEMU ended ({ending}) but its folder {} cannot be deleted: {error}", path.display()))?;
        Ok(ending)
    }

    async fn quit_or_kill(&mut self) -> Result<&'static str, String> {
        match qmp_command(&self.qmp_socket, "quit").await {
            // QEMU may close the connection before its reply to quit arrives.
            Ok(()) | Err(QmpError::Closed { .. }) => {
                if tokio::time::timeout(QUIT_GRACE, self.child.wait()).await.is_ok() {
                    return Ok("quit");
                }
            }
            Err(error) => tracing::warn!(pid = self.pid, %error, "QMP quit failed; killing QEMU"),
        }
        self.child.kill().await.map_err(|error| format!("cannot kill QEMU (pid {}): {error}", self.pid))?;
        Ok("killed")
    }
}

/// Connects to QMP, sends one command without arguments and waits for its reply.
async fn qmp_command(socket: &std::path::Path, command: &str) -> Result<(), QmpError> {
    let sent = tokio::time::timeout(QMP_TIMEOUT, async {
        let mut client = QmpClient::connect(socket).await?;
        client.execute(command, None).await.map(|_| ())
    })
    .await;
    sent.unwrap_or_else(|_| {
        Err(QmpError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no reply to {command} within {QMP_TIMEOUT:?}"))))
    })
}

/// The last bytes of a stream, read by a task until the stream ends.
#[derive(Debug)]
struct OutputTail {
    text: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl OutputTail {
    fn spawn(mut stream: impl AsyncRead + Unpin + Send + 'static) -> OutputTail {
        let text = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&text);
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            while let Ok(count) = stream.read(&mut buffer).await {
                if count == 0 {
                    break;
                }
                let mut tail = shared.lock().expect("no code panics while holding the output tail");
                tail.extend_from_slice(&buffer[..count]);
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
        });
        OutputTail { text, task }
    }

    /// Returns the text read so far, or `None` when there was none.
    fn text(&self) -> Option<String> {
        let bytes = self.text.lock().expect("no code panics while holding the output tail");
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        (!text.is_empty()).then_some(text)
    }
}

impl Drop for OutputTail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Prefix of the temporary folder of each VM instance: its overlay disk, QMP socket
/// and serial log.
const VM_FOLDER_PREFIX: &str = "deploybench-vm-";

/// Deletes VM folders in `parent` left by harness processes that are gone (QEMU dies
/// with its harness); returns how many.
pub fn remove_leftover_vm_folders(parent: &std::path::Path) -> usize {
    crate::engine::registry::remove_dead_owner_folders(parent, VM_FOLDER_PREFIX, |_| {})
}

/// Asks the kernel for a free loopback port. Another program may take it before QEMU
/// binds it; QEMU then exits with an error that the boot reports.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

impl VmModel {
    /// Picks the accelerator that the scenario requests, running the KVM test boot
    /// unless it requests TCG.
    async fn choose_accelerator(
        choice: VmAccelerator,
        disk: &VmDisk,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<Accelerator, ModelError> {
        if choice == VmAccelerator::Tcg {
            tracing::info!("TCG, as the scenario requests");
            return Ok(Accelerator::Tcg);
        }
        progress("test boot under KVM");
        match qemu::probe_kvm(&disk.kernel, &disk.initrd, KVM_PROBE_LIMIT).await {
            Ok(elapsed) => {
                tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "KVM works: the test kernel reached its initramfs");
                Ok(Accelerator::Kvm)
            }
            Err(reason) if choice == VmAccelerator::Kvm => Err(ModelError::Unavailable {
                model: ModelKind::Vm,
                reason: format!("the scenario asks for KVM, but {reason}"),
            }),
            Err(reason) => {
                tracing::warn!(%reason, "KVM is unusable; the vm model runs under TCG emulation");
                progress(&format!("KVM is unusable ({reason}); using TCG emulation"));
                Ok(Accelerator::Tcg)
            }
        }
    }
}

#[async_trait]
impl DeploymentModel for VmModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Vm
    }

    /// `vm (kvm)` or `vm (tcg)` once `prepare` has chosen the accelerator.
    fn label(&self) -> String {
        match self.accelerator {
            Some(accelerator) => format!("vm ({accelerator})"),
            None => self.kind().name().to_string(),
        }
    }

    async fn prepare(
        &mut self,
        env: &ModelEnv,
        binary: &ServiceBinary,
        progress: &(dyn for<'m> Fn(&'m str) + Sync),
    ) -> Result<PreparedArtifact, ModelError> {
        let fail = |message: String| ModelError::Prepare { model: ModelKind::Vm, message };
        let version = qemu::version().await.map_err(|reason| ModelError::Unavailable { model: ModelKind::Vm, reason })?;
        tracing::info!(%version, "QEMU found");

        let recipe = VmDiskRecipe::builtin().map_err(|error| fail(error.to_string()))?;
        let disk = ensure_vm_disk(&env.cache, binary, &recipe, progress).await.map_err(|error| fail(error.to_string()))?;
        let accelerator = Self::choose_accelerator(env.scenario.vm.accelerator, &disk, progress).await?;
        let artifact = PreparedArtifact {
            name: disk.disk.display().to_string(),
            size_bytes: disk.size_bytes,
            reused: disk.reused,
            recipe_hash: disk.recipe_hash.clone(),
        };
        self.disk = Some(disk);
        self.accelerator = Some(accelerator);
        Ok(artifact)
    }

    async fn boot(&self, env: &ModelEnv, repetition: u32) -> Result<Instance, ModelError> {
        let name = format!("vm-{repetition}");
        let fail = |message: String| ModelError::Boot { instance: name.clone(), message };
        let (Some(disk), Some(accelerator)) = (&self.disk, self.accelerator) else {
            return Err(fail("prepare was not called".to_string()));
        };
        let settings = &env.scenario.vm;
        let directory = tempfile::Builder::new()
            .prefix(VM_FOLDER_PREFIX)
            .tempdir()
            .map_err(|error| fail(format!("cannot create a temporary folder: {error}")))?;
        // A harness killed with SIGKILL cannot delete the folder; the owner file lets the
        // next run or `deploybench clean` do it.
        crate::engine::registry::write_owner_file(directory.path())
            .map_err(|error| fail(format!("cannot write the owner file of {}: {error}", directory.path().display())))?;
        let overlay = directory.path().join("overlay.qcow2");
        let qmp_socket = directory.path().join("qmp.sock");
        let port = free_port().map_err(|error| fail(format!("no free loopback port: {error}")))?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

        // The overlay is the instance's own writable disk, as a container's writable
        // layer is made by container create, so its creation is the `create` phase.
        let origin = Instant::now();
        qemu::create_overlay(&disk.disk, &overlay).await.map_err(fail)?;
        let create = origin.elapsed();
        let spec = VmSpec {
            kernel: &disk.kernel,
            initrd: &disk.initrd,
            append: &disk.append,
            disk: Some(&overlay),
            accelerator,
            vcpus: settings.vcpus,
            memory_mib: settings.memory_mib,
            forward: Some(PortForward { host_port: port, guest_port: SERVICE_PORT }),
            qmp_socket: Some(&qmp_socket),
        };
        let mut child = qemu::command(&spec)
            .spawn()
            .map_err(|error| fail(format!("cannot spawn {}: {error}", qemu::QEMU_SYSTEM)))?;
        let start = origin.elapsed();
        let pid = child.id().ok_or_else(|| fail("QEMU exited at once".to_string()))?;
        let console = SerialConsole::spawn(
            child.stdout.take().expect("stdout is piped"),
            origin,
            Some(directory.path().join("serial.log")),
        );
        let stderr = OutputTail::spawn(child.stderr.take().expect("stderr is piped"));
        let mut handle = VmHandle {
            child,
            pid,
            accelerator,
            console,
            stderr,
            console_phases: ConsolePhases::default(),
            qmp_socket,
            directory,
        };

        let probe = Probe { origin, interval: env.scenario.boot.poll_interval, deadline: origin + settings.timeout };
        match wait_healthy(&mut handle, address, probe, settings.timeout).await {
            Ok(first_200) => {
                handle.console_phases = handle.console.phases();
                Ok(Instance {
                    name,
                    address,
                    phases: BootPhases { create: Some(create), start: Some(start), first_accept: None, first_200 },
                    handle: InstanceHandle::Vm(Box::new(handle)),
                })
            }
            Err(message) => {
                let detail = handle.failure_detail();
                // Dropping the handle kills QEMU and deletes its folder.
                drop(handle);
                Err(fail(format!("{message} ({accelerator}); {detail}")))
            }
        }
    }

    async fn accounting(&self, instance: &Instance) -> Result<Accounting, ModelError> {
        let InstanceHandle::Vm(handle) = &instance.handle else {
            unreachable!("the vm model only creates VM instances");
        };
        let fail = |message: String| ModelError::Accounting { instance: instance.name.clone(), message };
        Ok(Accounting {
            instance_bytes: procfs::pss_bytes(handle.pid).map_err(|error| fail(error.to_string()))?,
            runtime_bytes: 0,
            cpu_time: procfs::process_cpu_time(handle.pid).map_err(|error| fail(error.to_string()))?,
        })
    }

    async fn stop(&self, _env: &ModelEnv, instance: Instance) -> Result<(), ModelError> {
        let InstanceHandle::Vm(handle) = instance.handle else {
            unreachable!("the vm model only creates VM instances");
        };
        handle
            .shut_down()
            .await
            .map(|_| ())
            .map_err(|message| ModelError::Stop { instance: instance.name, message })
    }
}

/// Waits for systemd on the serial console, then polls `GET /health` until it returns
/// 200, and returns the time of that 200. Fails when QEMU exits first.
async fn wait_healthy(handle: &mut VmHandle, address: SocketAddr, probe: Probe, timeout: Duration) -> Result<Duration, String> {
    let VmHandle { child, console, .. } = handle;
    let healthy = async {
        // The service cannot reply before systemd runs, and each probe through the
        // user-mode network costs the emulated guest CPU time, so polling starts when
        // systemd's first line appears on the console.
        match tokio::time::timeout_at(probe.deadline, console.init_reached()).await {
            Err(_) => return Err(format!("systemd did not start within {timeout:?}")),
            Ok(None) => return Err("the serial console ended before systemd started".to_string()),
            Ok(Some(_)) => {}
        }
        qemu::forward::first_200(address, &probe).await
    };
    tokio::select! {
        result = healthy => result,
        status = child.wait() => {
            let status = status.map_or_else(|error| error.to_string(), |status| status.to_string());
            Err(format!("QEMU exited during the boot ({status})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_memory_from_stats() {
        let value = json!({
            "stats": {
                "stat-total-memory": 1_000_000_000u64,
                "stat-available-memory": 900_000_000u64,
                "stat-free-memory": 800_000_000u64,
                "stat-swap-in": 0,
            },
            "last-update": 1_700_000_000u64,
        });
        let memory = GuestMemory::from_stats(&value).unwrap();
        assert_eq!(memory.total_bytes, 1_000_000_000);
        assert_eq!(memory.free_bytes, 800_000_000);
        assert_eq!(memory.used_bytes(), 100_000_000);
    }

    #[test]
    fn guest_memory_before_first_report() {
        let value = json!({ "stats": { "stat-total-memory": -1 }, "last-update": 0 });
        let error = GuestMemory::from_stats(&value).unwrap_err();
        assert!(error.contains("not reported"), "{error}");
    }

    #[test]
    fn guest_memory_missing_statistic() {
        let value = json!({ "stats": { "stat-total-memory": 5, "stat-free-memory": 1, "stat-available-memory": -1 }, "last-update": 7 });
        let error = GuestMemory::from_stats(&value).unwrap_err();
        assert!(error.contains("stat-available-memory"), "{error}");
    }

    #[test]
    fn label_names_accelerator() {
        let mut model = VmModel::default();
        assert_eq!(model.label(), "vm");
        model.accelerator = Some(Accelerator::Tcg);
        assert_eq!(model.label(), "vm (tcg)");
        model.accelerator = Some(Accelerator::Kvm);
        assert_eq!(model.label(), "vm (kvm)");
    }
}
