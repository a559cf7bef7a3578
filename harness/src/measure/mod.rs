//! Measurement of instances: the boot probe, memory, and CPU accounting.
//!
//! Everything here reads the kernel's own accounting (cgroups and /proc) or probes
//! the instance over TCP; nothing is estimated.

pub mod boot;
pub mod cgroup;
pub mod hardening;
pub mod procfs;
