//! Boots the vm model once under QEMU and gets a 200 from /health through the
//! 127.0.0.1 forward, then checks its phases, accounting, shutdown and cleanup.
//!
//! On a cold cache the disk is built first, which took 6 to 7 minutes on a 2-core host
//! that was running other builds (load average 4 to 8). Boots under TCG took 55 to 86 s
//! there, depending on that load.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deploybench::artifacts::{build_service_binary, ArtifactCache};
use deploybench::measure::boot::health_status;
use deploybench::models::{self, InstanceHandle, ModelEnv};
use deploybench::scenario::{ModelKind, Scenario};

const SCENARIO: &str = r#"
models = ["vm"]
[vm]
boots = 1
timeout_s = 300
"#;

const MIB: u64 = 1024 * 1024;

/// Returns true when QEMU can run. Outside CI, a missing QEMU prints the reason and the
/// test skips.
async fn qemu_present() -> bool {
    match deploybench::engine::qemu::version().await {
        Ok(version) => {
            eprintln!("{version}");
            true
        }
        Err(reason) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {reason}");
            false
        }
        Err(reason) => panic!("CI needs QEMU: {reason}"),
    }
}

/// Returns the temporary folders of VM instances that exist now.
fn vm_folders() -> BTreeSet<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("deploybench-vm-"))
        .map(|entry| entry.path())
        .collect()
}

/// Returns the children of this test process that are QEMU and still alive (zombies
/// excluded).
fn live_qemu_children() -> Vec<u32> {
    let own_pid = std::process::id().to_string();
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|entry| entry.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((name, rest)) = stat.split_once(") ") else { continue };
        // After the name: state, then the parent pid.
        let mut fields = rest.split_whitespace();
        let (state, parent) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        if name.ends_with("(qemu-system-x86") && parent == own_pid && state != "Z" {
            children.push(pid);
        }
    }
    children
}

fn process_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.split_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_boots_and_answers_health() {
    if !qemu_present().await {
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let scenario = Scenario::parse(SCENARIO, Path::new("vm-test.toml")).unwrap();
    let env = ModelEnv {
        scenario,
        run_id: format!("test-{}", std::process::id()),
        workspace_root: workspace.clone(),
        cache: ArtifactCache::default_location(),
        docker: None,
    };
    let binary = build_service_binary(&workspace).unwrap();
    let folders_before = vm_folders();

    let mut model = models::create(ModelKind::Vm);
    let prepared_at = Instant::now();
    let artifact = model.prepare(&env, &binary, &|message: &str| eprintln!("progress: {message}")).await.unwrap();
    eprintln!(
        "disk {} ({:.0} MiB, {}) prepared in {:.1} s",
        artifact.name,
        artifact.size_bytes as f64 / MIB as f64,
        if artifact.reused { "cached" } else { "built" },
        prepared_at.elapsed().as_secs_f64()
    );
    let label = model.label();
    assert!(label == "vm (tcg)" || label == "vm (kvm)", "{label}");
    assert!(artifact.size_bytes > 100 * MIB, "a Debian userland with a kernel: {artifact:?}");
    assert!(artifact.size_bytes < 2048 * MIB, "the qcow2 holds only used blocks: {artifact:?}");

    let instance = model.boot(&env, 0).await.unwrap();
    let phases = instance.phases.clone();
    assert!(instance.address.ip().is_loopback(), "forwarded on {}", instance.address);
    assert_eq!(phases.first_accept, None, "the user-mode forward hides the service's accept");
    let create = phases.create.expect("the overlay creation is the create phase");
    let start = phases.start.expect("the QEMU spawn is the start phase");
    assert!(create <= start, "{phases:?}");
    assert!(phases.first_200 < Duration::from_secs(300), "{phases:?}");

    let InstanceHandle::Vm(handle) = &instance.handle else {
        panic!("the vm model boots a VM");
    };
    let (pid, folder) = (handle.pid(), handle.directory().to_path_buf());
    let console = handle.console_phases();
    let kernel = console.kernel.expect("the kernel banner is on the serial console");
    let init = console.init.expect("systemd's first line is on the serial console");
    assert!(start <= kernel, "{console:?}");
    assert!(kernel <= init, "{console:?}");
    assert!(init <= phases.first_200, "{console:?} {phases:?}");
    let named: Vec<&str> = handle.named_phases(&phases).into_iter().map(|(name, _)| name).collect();
    assert_eq!(named, ["create", "start", "kernel_start", "init_reached", "first_200"]);
    assert!(folder.join("overlay.qcow2").is_file());
    assert!(folder.join("serial.log").is_file());
    eprintln!("{label}: phases {phases:?}, console {console:?}");

    assert_eq!(health_status(instance.address).await.unwrap(), 200);

    let accounting = model.accounting(&instance).await.unwrap();
    eprintln!("accounting: {:.1} MiB PSS, {:?} CPU", accounting.instance_bytes as f64 / MIB as f64, accounting.cpu_time);
    assert!(accounting.instance_bytes > 32 * MIB, "QEMU holds the guest's touched memory: {accounting:?}");
    assert_eq!(accounting.runtime_bytes, 0);
    assert!(accounting.cpu_time > Duration::ZERO, "{accounting:?}");

    // The balloon driver reports every 2 s once the guest has loaded it.
    let mut guest = Err(String::from("not read"));
    for _ in 0..15 {
        guest = handle.guest_memory().await;
        if guest.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let guest = guest.expect("the guest reports its memory through the balloon");
    eprintln!(
        "guest memory: {:.1} MiB used of {:.1} MiB",
        guest.used_bytes() as f64 / MIB as f64,
        guest.total_bytes as f64 / MIB as f64
    );
    assert!(guest.total_bytes <= 1024 * MIB, "{guest:?}");
    assert!(guest.used_bytes() > 16 * MIB, "{guest:?}");

    let stopped_at = Instant::now();
    model.stop(&env, instance).await.unwrap();
    eprintln!("stopped in {:.1} s", stopped_at.elapsed().as_secs_f64());
    assert!(!process_alive(pid), "QEMU {pid} outlived stop");
    assert!(!folder.exists(), "{} outlived stop", folder.display());

    // A boot abandoned halfway kills QEMU and deletes its folder.
    let abandoned = tokio::time::timeout(Duration::from_secs(3), model.boot(&env, 1)).await;
    assert!(abandoned.is_err(), "a VM boot cannot finish within 3 s");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live_qemu_children(), Vec::<u32>::new(), "QEMU outlived its abandoned boot");
    assert_eq!(vm_folders(), folders_before, "VM folders left behind");
}
