//! Bandwidth shaping of one TCP source port on the loopback device with `tc`, so that a
//! pull from the local registry runs at a link profile's bandwidth.
//!
//! The shaping is an HTB root qdisc on `lo` with handle `dbe1:`, which marks it as
//! deploybench's. Class `dbe1:1` is the default class for all other loopback traffic
//! and is effectively unlimited (100 Gbit/s). Class `dbe1:2` has the profile's rate,
//! and a u32 filter sends it only IPv4 TCP packets whose source port is the shaped
//! port, that is, the data a registry on that port sends. Delay is not applied: it needs
//! netem, which this kernel may lack, so callers compute it.
//!
//! Only one shaping can be active per host, because `lo` has one root qdisc. A lock
//! file held with flock(2) serializes deploybench processes, and [`PortShaping`]
//! removes the qdisc when it is dropped, during a panic too. A qdisc left by a killed
//! process is removed by [`remove_leftover_shaping`] or by the next [`PortShaping::apply`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// The device the registry traffic crosses.
pub const DEVICE: &str = "lo";
/// Handle of deploybench's root qdisc on [`DEVICE`].
pub const ROOT_HANDLE: &str = "dbe1:";
/// Class of all unfiltered traffic.
const DEFAULT_CLASS: &str = "dbe1:1";
/// Class of the shaped port.
const SHAPED_CLASS: &str = "dbe1:2";
/// Rate of the default class, above what loopback TCP reaches on current hardware, so
/// that other loopback traffic is not limited.
const DEFAULT_RATE: &str = "100gbit";
/// HTB quanta in bytes. The shaped class never borrows, so its quantum only has to
/// exceed the loopback MTU of 65536 bytes; the kernel warns above 200000.
const SHAPED_QUANTUM: u32 = 65_536;
const DEFAULT_QUANTUM: u32 = 200_000;
/// Smallest bucket of the shaped class: two loopback packets of up to 64 KiB.
const MIN_BURST_BYTES: u64 = 256 * 1024;
/// Bucket size in seconds at the shaped rate, used when it exceeds [`MIN_BURST_BYTES`].
const BURST_SECONDS: f64 = 0.01;

#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    #[error("shaping needs root (tc changes qdiscs), but this process runs as uid {uid}")]
    NotRoot { uid: u32 },
    #[error("cannot run tc: {source}; install iproute2")]
    TcMissing {
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    #[error("{DEVICE} already has a root qdisc that deploybench did not create ({qdisc}); it is left alone")]
    Foreign { qdisc: String },
    #[error(
        "another deploybench process is shaping {DEVICE} (it holds {lock}); only one shaping can be active per host"
    )]
    Busy { lock: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bandwidth {mbit} Mbit/s is invalid: expected a positive finite number")]
    InvalidBandwidth { mbit: f64 },
    #[error("cannot read the byte counter of class {SHAPED_CLASS} from `tc -s class show dev {DEVICE}`")]
    NoCounter,
}

/// The shaping of one source port on [`DEVICE`]; removed on [`remove`] or drop.
///
/// [`remove`]: PortShaping::remove
#[derive(Debug)]
pub struct PortShaping {
    port: u16,
    bandwidth_mbit: f64,
    /// Held until the qdisc is gone; `None` once removed.
    lock: Option<File>,
}

impl PortShaping {
    /// Limits the TCP data sent from `port` on 127.0.0.1 to `bandwidth_mbit` (10^6
    /// bit/s). Fails without changing anything when another process shapes or
    /// another qdisc is installed; removes its own leftover qdisc first.
    pub fn apply(port: u16, bandwidth_mbit: f64) -> Result<PortShaping, ShapingError> {
        if !(bandwidth_mbit.is_finite() && bandwidth_mbit > 0.0) {
            return Err(ShapingError::InvalidBandwidth { mbit: bandwidth_mbit });
        }
        check_root()?;
        let lock = acquire_lock()?;
        remove_own_qdisc()?;
        if let Some(qdisc) = foreign_root_qdisc()? {
            return Err(ShapingError::Foreign { qdisc });
        }

        tc_words(&format!("qdisc add dev {DEVICE} root handle {ROOT_HANDLE} htb default 1"))?;
        // From here on, dropping the guard removes the qdisc, also when a later step fails.
        let shaping = PortShaping { port, bandwidth_mbit, lock: Some(lock) };

        tc_words(&format!(
            "class add dev {DEVICE} parent {ROOT_HANDLE} classid {DEFAULT_CLASS} htb rate {DEFAULT_RATE} \
             ceil {DEFAULT_RATE} burst 16m cburst 16m quantum {DEFAULT_QUANTUM}"
        ))?;
        let rate_bit = (bandwidth_mbit * 1e6).round().max(1.0) as u64;
        let burst = burst_bytes(rate_bit);
        tc_words(&format!(
            "class add dev {DEVICE} parent {ROOT_HANDLE} classid {SHAPED_CLASS} htb rate {rate_bit}bit \
             ceil {rate_bit}bit burst {burst} cburst {burst} quantum {SHAPED_QUANTUM}"
        ))?;
        // Matches IPv4 TCP (protocol 6) from the shaped source port.
        tc_words(&format!(
            "filter add dev {DEVICE} parent {ROOT_HANDLE} protocol ip prio 1 u32 \
             match ip protocol 6 0xff match ip sport {port} 0xffff flowid {SHAPED_CLASS}"
        ))?;
        tracing::info!(port, bandwidth_mbit, device = DEVICE, "shaping applied");
        Ok(shaping)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bandwidth_mbit(&self) -> f64 {
        self.bandwidth_mbit
    }

    /// Returns the bytes the shaped class has sent since [`apply`](PortShaping::apply),
    /// which shows that the filter matched the traffic.
    pub fn sent_bytes(&self) -> Result<u64, ShapingError> {
        let output = tc(&["-s", "class", "show", "dev", DEVICE])?;
        parse_class_bytes(&output, SHAPED_CLASS).ok_or(ShapingError::NoCounter)
    }

    /// Removes the qdisc, its classes and its filter, and releases the lock.
    pub fn remove(mut self) -> Result<(), ShapingError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), ShapingError> {
        let Some(lock) = self.lock.take() else { return Ok(()) };
        let removed = remove_own_qdisc();
        drop(lock);
        if removed.is_ok() {
            tracing::info!(port = self.port, device = DEVICE, "shaping removed");
        }
        removed.map(|_| ())
    }
}

impl Drop for PortShaping {
    fn drop(&mut self) {
        if let Err(error) = self.remove_now() {
            tracing::error!(%error, device = DEVICE, "cannot remove the shaping qdisc; remove it with `tc qdisc del dev lo root handle dbe1:`");
        }
    }
}

/// Checks that shaping can work here: root and a runnable `tc`. It does not add a
/// qdisc, so an unsupported HTB shows only in [`PortShaping::apply`].
pub fn check_available() -> Result<(), ShapingError> {
    check_root()?;
    Command::new("tc").arg("-V").output().map_err(|source| ShapingError::TcMissing { source })?;
    Ok(())
}

/// Removes a root qdisc with deploybench's handle that a killed process left on
/// [`DEVICE`]; returns true when it removed one. While another process holds the lock
/// its qdisc is in use, so nothing is removed and the result is false.
pub fn remove_leftover_shaping() -> Result<bool, ShapingError> {
    check_root()?;
    let lock = match acquire_lock() {
        Ok(lock) => lock,
        Err(ShapingError::Busy { .. }) => return Ok(false),
        Err(error) => return Err(error),
    };
    let removed = remove_own_qdisc()?;
    drop(lock);
    if removed {
        tracing::warn!(device = DEVICE, handle = ROOT_HANDLE, "removed a shaping qdisc left by an earlier run");
    }
    Ok(removed)
}

/// Returns true when [`DEVICE`]'s root qdisc has deploybench's handle.
pub fn own_qdisc_present() -> Result<bool, ShapingError> {
    Ok(root_qdisc()?.is_some_and(|line| is_own(&line)))
}

fn check_root() -> Result<(), ShapingError> {
    // SAFETY: geteuid(2) takes no arguments and always succeeds (POSIX).
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        Ok(())
    } else {
        Err(ShapingError::NotRoot { uid })
    }
}

/// Runs `tc ARGS` and returns its standard output; a non-zero exit is an error.
fn tc(args: &[&str]) -> Result<String, ShapingError> {
    let output = Command::new("tc").args(args).output().map_err(|source| ShapingError::TcMissing { source })?;
    if !output.status.success() {
        return Err(ShapingError::Command {
            command: format!("tc {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `tc` with the whitespace-separated words of `command` as its arguments.
fn tc_words(command: &str) -> Result<String, ShapingError> {
    let words: Vec<&str> = command.split_whitespace().collect();
    tc(&words)
}

/// Returns the line of [`DEVICE`]'s root qdisc, or `None` for the kernel's default
/// (`noqueue` on loopback).
fn root_qdisc() -> Result<Option<String>, ShapingError> {
    let output = tc(&["qdisc", "show", "dev", DEVICE, "root"])?;
    Ok(output
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("qdisc ") && line.contains(" root"))
        .filter(|line| !line.starts_with("qdisc noqueue "))
        .map(str::to_string))
}

fn is_own(line: &str) -> bool {
    line.split_whitespace().nth(2) == Some(ROOT_HANDLE)
}

fn foreign_root_qdisc() -> Result<Option<String>, ShapingError> {
    Ok(root_qdisc()?.filter(|line| !is_own(line)))
}

/// Deletes the root qdisc if it has deploybench's handle; returns true when it did.
fn remove_own_qdisc() -> Result<bool, ShapingError> {
    if !own_qdisc_present()? {
        return Ok(false);
    }
    tc(&["qdisc", "del", "dev", DEVICE, "root", "handle", ROOT_HANDLE])?;
    Ok(true)
}

/// Path of the lock file that serializes shaping across processes.
fn lock_path() -> PathBuf {
    let run_lock = PathBuf::from("/run/lock");
    let folder = if run_lock.is_dir() { run_lock } else { std::env::temp_dir() };
    folder.join("deploybench-shaping.lock")
}

/// Takes the shaping lock without waiting. flock(2) locks belong to the open file, so
/// two callers in one process exclude each other as two processes do.
fn acquire_lock() -> Result<File, ShapingError> {
    let path = lock_path();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ShapingError::Lock { path: path.clone(), source })?;
    // SAFETY: flock(2) on a descriptor that `file` owns for the whole call.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(file);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(ShapingError::Busy { lock: path })
    } else {
        Err(ShapingError::Lock { path, source: error })
    }
}

/// Returns the HTB bucket size in bytes for a rate in bit/s.
fn burst_bytes(rate_bit: u64) -> u64 {
    let by_time = (rate_bit as f64 / 8.0 * BURST_SECONDS) as u64;
    by_time.max(MIN_BURST_BYTES)
}

/// Reads the `Sent N bytes` counter of `class` from `tc -s class show` output.
fn parse_class_bytes(output: &str, class: &str) -> Option<u64> {
    let mut in_class = false;
    for line in output.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("class ") {
            in_class = trimmed.split_whitespace().nth(2) == Some(class);
            continue;
        }
        if in_class && trimmed.starts_with("Sent ") {
            return trimmed.split_whitespace().nth(1)?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS_OUTPUT: &str = "class htb dbe1:1 root prio 0 rate 100Gbit ceil 100Gbit burst 16762500b cburst 16762500b \n Sent 200443651 bytes 4642 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n\nclass htb dbe1:2 root prio 0 rate 100Mbit ceil 100Mbit burst 262125b cburst 262125b \n Sent 20075144 bytes 320 pkt (dropped 0, overlimits 172 requeues 0) \n";

    #[test]
    fn class_bytes_read_per_class() {
        assert_eq!(parse_class_bytes(CLASS_OUTPUT, "dbe1:2"), Some(20_075_144));
        assert_eq!(parse_class_bytes(CLASS_OUTPUT, "dbe1:1"), Some(200_443_651));
        assert_eq!(parse_class_bytes(CLASS_OUTPUT, "dbe1:3"), None);
    }

    #[test]
    fn burst_covers_two_loopback_packets() {
        assert_eq!(burst_bytes(20_000_000), MIN_BURST_BYTES);
        assert_eq!(burst_bytes(100_000_000), MIN_BURST_BYTES);
        assert_eq!(burst_bytes(1_000_000_000), 1_250_000);
        assert_eq!(burst_bytes(10_000_000_000), 12_500_000);
    }

    #[test]
    fn own_handle_recognized() {
        assert!(is_own("qdisc htb dbe1: root refcnt 2 r2q 10 default 0x1"));
        assert!(!is_own("qdisc htb 1: root refcnt 2 r2q 10 default 0x1"));
    }

    #[test]
    fn invalid_bandwidth_rejected_before_tc() {
        assert!(matches!(PortShaping::apply(1, 0.0), Err(ShapingError::InvalidBandwidth { .. })));
        assert!(matches!(PortShaping::apply(1, f64::NAN), Err(ShapingError::InvalidBandwidth { .. })));
    }
}
