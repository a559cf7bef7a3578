//! The real systems that deploybench drives: the Docker engine (through bollard),
//! a local registry, QEMU and traffic shaping.

pub mod docker;
pub mod images;
pub mod qemu;
pub mod registry;
pub mod shaping;

/// Makes the kernel send SIGKILL to the child when the thread that spawned it exits,
/// so that a child outlives no harness, even one killed with SIGKILL.
///
/// NOTE: the signal follows the spawning *thread*. Spawn from an async task, whose
/// runtime threads live as long as the runtime, not from `spawn_blocking`, whose idle
/// threads exit after a few seconds.
pub fn kill_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl(2), which is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
