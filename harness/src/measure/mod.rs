//! Measurement of instances: the boot probe, memory, and CPU accounting.
//!
//! Everything here reads the kernel's own accounting (cgroups and /proc), probes the
//! instance over TCP, or times the engine's own calls. The only estimates are the link
//! delays of pull figures, which [`pull`] computes and labels as computed.

pub mod boot;
pub mod cgroup;
pub mod deploy;
pub mod hardening;
pub mod procfs;
pub mod pull;
