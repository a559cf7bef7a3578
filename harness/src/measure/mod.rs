//! Measurement of instances: the boot probe, memory, and CPU accounting.
//!
//! Everything here reads the kernel's own accounting (cgroups and /proc), probes the
//! instance over TCP, or times the engine's own calls. The only estimates are in pull
//! figures: link delays always, and transfer times where tc shaping is not possible.
//! [`pull`] labels each figure with how it came about.

pub mod boot;
pub mod cgroup;
pub mod deploy;
pub mod hardening;
pub mod procfs;
pub mod pull;
