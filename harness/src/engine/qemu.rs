//! QEMU: the command line of a VM booted straight into a kernel, qcow2 overlays, the
//! test boot that decides between KVM and TCG, and, in the submodules, QMP, the serial
//! console and the health probe through the user-mode network forward.
//!
//! Written against QEMU 7.2 (Debian 12) on an x86-64 host.

pub mod forward;
pub mod qmp;
pub mod serial;

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

pub const QEMU_SYSTEM: &str = "qemu-system-x86_64";
pub const QEMU_IMG: &str = "qemu-img";

/// The QOM path of the balloon device that every VM gets, whose statistics report the
/// guest's own view of its memory.
pub const BALLOON_PATH: &str = "/machine/peripheral/balloon0";
/// Seconds between two memory statistics reports of the guest's balloon driver.
const BALLOON_STATS_INTERVAL_S: u32 = 2;

/// The console line that ends a successful KVM test boot: the kernel finished its own
/// initialisation, with timers and interrupts working, and starts the initramfs.
const PROBE_DONE_LINE: &str = "Run /init as init process";
/// Guest memory of the KVM test boot, which only unpacks the initramfs.
const PROBE_MEMORY_MIB: u64 = 512;

/// The accelerator a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// Hardware virtualisation through /dev/kvm, with the host's CPU model.
    Kvm,
    /// TCG: QEMU translates guest code, one host thread per vCPU.
    Tcg,
}

impl Accelerator {
    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }

    /// Returns the `-accel` and `-cpu` options.
    fn options(self) -> [&'static str; 4] {
        match self {
            Accelerator::Kvm => ["-accel", "kvm", "-cpu", "host"],
            // `max` enables every CPU feature that TCG emulates.
            Accelerator::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }
}

impl std::fmt::Display for Accelerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A TCP port forwarded from 127.0.0.1 on the host into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub host_port: u16,
    pub guest_port: u16,
}

/// The kernel, disk, network and resources of one VM.
#[derive(Debug, Clone)]
pub struct VmSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// Kernel command line.
    pub append: &'a str,
    /// A qcow2 file attached as the first virtio disk (`/dev/vda`).
    pub disk: Option<&'a Path>,
    pub accelerator: Accelerator,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// With a forward, the VM gets a virtio NIC on QEMU's user-mode network.
    pub forward: Option<PortForward>,
    /// Unix socket on which QEMU accepts QMP connections.
    pub qmp_socket: Option<&'a Path>,
}

/// Returns QEMU's arguments for `spec`. The serial console goes to stdout, and there is
/// no display, no monitor and no default device.
pub fn arguments(spec: &VmSpec) -> Vec<OsString> {
    let mut arguments: Vec<OsString> = Vec::new();
    extend(&mut arguments, &["-nodefaults", "-no-user-config", "-display", "none", "-machine", "q35"]);
    extend(&mut arguments, &spec.accelerator.options());
    extend(&mut arguments, &["-smp", &spec.vcpus.to_string(), "-m", &spec.memory_mib.to_string()]);
    // A guest that reboots, on a kernel panic with panic=-1 for example, ends QEMU instead.
    extend(&mut arguments, &["-no-reboot", "-serial", "stdio"]);
    arguments.extend([OsString::from("-kernel"), spec.kernel.into(), OsString::from("-initrd"), spec.initrd.into()]);
    extend(&mut arguments, &["-append", spec.append]);

    if let Some(disk) = spec.disk {
        let mut drive = OsString::from("file=");
        drive.push(escape_option(disk));
        drive.push(",format=qcow2,if=virtio");
        arguments.extend([OsString::from("-drive"), drive]);
    }
    if let Some(PortForward { host_port, guest_port }) = spec.forward {
        // restrict=on keeps the guest off the host's network and the internet, but
        // explicit forwards still work.
        let netdev = format!("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}");
        extend(&mut arguments, &["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
    }
    let balloon = format!("virtio-balloon-pci,id=balloon0,guest-stats-polling-interval={BALLOON_STATS_INTERVAL_S}");
    extend(&mut arguments, &["-device", &balloon]);
    if let Some(socket) = spec.qmp_socket {
        let mut qmp = OsString::from("unix:");
        qmp.push(escape_option(socket));
        qmp.push(",server=on,wait=off");
        arguments.extend([OsString::from("-qmp"), qmp]);
    }
    arguments
}

fn extend(arguments: &mut Vec<OsString>, words: &[&str]) {
    arguments.extend(words.iter().map(OsString::from));
}

/// Doubles commas, the escape QEMU's option parser expects inside a value.
fn escape_option(path: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut escaped = Vec::new();
    for &byte in path.as_os_str().as_bytes() {
        escaped.push(byte);
        if byte == b',' {
            escaped.push(b',');
        }
    }
    OsString::from_vec(escaped)
}

/// Returns the command that starts the VM: stdout (the serial console) and stderr piped,
/// and the process killed when the returned child is dropped or the harness dies (see
/// [`super::kill_with_parent`] for the thread it must be spawned from).
pub fn command(spec: &VmSpec) -> Command {
    let mut command = Command::new(QEMU_SYSTEM);
    command
        .args(arguments(spec))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    super::kill_with_parent(&mut command);
    command
}

/// Returns the first line of `qemu-system-x86_64 --version`, or why it cannot run.
pub async fn version() -> Result<String, String> {
    let output = Command::new(QEMU_SYSTEM)
        .arg("--version")
        .output()
        .await
        .map_err(|error| format!("cannot run {QEMU_SYSTEM}: {error}; install it with apt-get install qemu-system-x86"))?;
    if !output.status.success() {
        return Err(format!("{QEMU_SYSTEM} --version failed ({})", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// Creates a qcow2 overlay at `overlay` whose backing file is `base`, so that the VM's
/// writes go to the overlay and `base` stays unchanged.
pub async fn create_overlay(base: &Path, overlay: &Path) -> Result<(), String> {
    let output = Command::new(QEMU_IMG)
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(overlay)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|error| format!("cannot run {QEMU_IMG}: {error}; install it with apt-get install qemu-utils"))?;
    if !output.status.success() {
        return Err(format!(
            "qemu-img create of the overlay {} on {} failed ({}): {}",
            overlay.display(),
            base.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Boots `kernel` and `initrd` under KVM, without a disk, and waits up to `limit` for the
/// kernel to start the initramfs. Returns the time that took, or why KVM is unusable: no
/// /dev/kvm, QEMU failing (a CPU model KVM rejects, for example), or no progress within
/// `limit`, which is how a nested KVM that hangs its guests shows. The test VM is killed
/// in every case.
pub async fn probe_kvm(kernel: &Path, initrd: &Path, limit: Duration) -> Result<Duration, String> {
    if let Err(error) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Err(format!("cannot open /dev/kvm: {error}"));
    }
    let spec = VmSpec {
        kernel,
        initrd,
        append: "console=ttyS0 panic=-1",
        disk: None,
        accelerator: Accelerator::Kvm,
        vcpus: 1,
        memory_mib: PROBE_MEMORY_MIB,
        forward: None,
        qmp_socket: None,
    };
    let started = Instant::now();
    let mut child = command(&spec).spawn().map_err(|error| format!("cannot spawn {QEMU_SYSTEM}: {error}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");

    let mut lines = BufReader::new(stdout).lines();
    let mut last_line = String::new();
    let outcome = tokio::time::timeout(limit, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(PROBE_DONE_LINE) {
                return true;
            }
            last_line = line;
        }
        false
    })
    .await;
    // The test VM has done its job either way, and kill_on_drop covers a failed kill.
    let _ = child.kill().await;

    match outcome {
        Ok(true) => Ok(started.elapsed()),
        Ok(false) => {
            let mut message = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut message)).await;
            let message = message.trim();
            let message = if message.is_empty() { "no error output" } else { message };
            Err(format!("QEMU under KVM exited before the kernel started its initramfs: {message}"))
        }
        Err(_) if last_line.is_empty() => {
            Err(format!("the kernel wrote nothing to the serial console within {limit:?} under KVM"))
        }
        Err(_) => Err(format!(
            "the kernel did not reach its initramfs within {limit:?} under KVM; last console line: {:?}",
            last_line.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(arguments: &[OsString]) -> Vec<String> {
        arguments.iter().map(|argument| argument.to_string_lossy().into_owned()).collect()
    }

    /// Returns the value that follows `option` in `arguments`.
    fn value_of<'a>(arguments: &'a [String], option: &str) -> Option<&'a str> {
        let index = arguments.iter().position(|argument| argument == option)?;
        arguments.get(index + 1).map(String::as_str)
    }

    fn spec<'a>(accelerator: Accelerator, disk: Option<&'a Path>, qmp: Option<&'a Path>) -> VmSpec<'a> {
        VmSpec {
            kernel: Path::new("/cache/vmlinuz"),
            initrd: Path::new("/cache/initrd.img"),
            append: "root=/dev/vda rw console=ttyS0",
            disk,
            accelerator,
            vcpus: 2,
            memory_mib: 768,
            forward: Some(PortForward { host_port: 40123, guest_port: 8080 }),
            qmp_socket: qmp,
        }
    }

    #[test]
    fn tcg_command_line() {
        let disk = Path::new("/tmp/vm/overlay.qcow2");
        let socket = Path::new("/tmp/vm/qmp.sock");
        let arguments = strings(&arguments(&spec(Accelerator::Tcg, Some(disk), Some(socket))));
        assert_eq!(value_of(&arguments, "-accel"), Some("tcg,thread=multi"));
        assert_eq!(value_of(&arguments, "-cpu"), Some("max"));
        assert_eq!(value_of(&arguments, "-smp"), Some("2"));
        assert_eq!(value_of(&arguments, "-m"), Some("768"));
        assert_eq!(value_of(&arguments, "-kernel"), Some("/cache/vmlinuz"));
        assert_eq!(value_of(&arguments, "-initrd"), Some("/cache/initrd.img"));
        assert_eq!(value_of(&arguments, "-append"), Some("root=/dev/vda rw console=ttyS0"));
        assert_eq!(value_of(&arguments, "-drive"), Some("file=/tmp/vm/overlay.qcow2,format=qcow2,if=virtio"));
        assert_eq!(value_of(&arguments, "-serial"), Some("stdio"));
        assert_eq!(value_of(&arguments, "-qmp"), Some("unix:/tmp/vm/qmp.sock,server=on,wait=off"));
        assert!(arguments.contains(&"-nodefaults".to_string()));
        assert!(arguments.contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn forward_bound_to_loopback() {
        let arguments = strings(&arguments(&spec(Accelerator::Kvm, None, None)));
        let netdev = value_of(&arguments, "-netdev").unwrap();
        assert!(netdev.contains("hostfwd=tcp:127.0.0.1:40123-:8080"), "{netdev}");
        assert!(netdev.contains("restrict=on"), "{netdev}");
        assert_eq!(value_of(&arguments, "-accel"), Some("kvm"));
        assert_eq!(value_of(&arguments, "-drive"), None);
        assert_eq!(value_of(&arguments, "-qmp"), None);
    }

    #[test]
    fn commas_in_paths_escaped() {
        let disk = Path::new("/tmp/a,b/overlay.qcow2");
        let arguments = strings(&arguments(&spec(Accelerator::Tcg, Some(disk), None)));
        assert_eq!(value_of(&arguments, "-drive"), Some("file=/tmp/a,,b/overlay.qcow2,format=qcow2,if=virtio"));
    }

    #[test]
    fn balloon_reports_statistics() {
        let arguments = strings(&arguments(&spec(Accelerator::Tcg, None, None)));
        let device = arguments.iter().find(|argument| argument.starts_with("virtio-balloon-pci")).unwrap();
        assert!(device.contains("id=balloon0"), "{device}");
        assert!(BALLOON_PATH.ends_with("/balloon0"));
        assert!(device.contains("guest-stats-polling-interval="), "{device}");
    }
}
