//! The real systems that deploybench drives: the Docker engine (through bollard)
//! and, for later models, a local registry and QEMU.

pub mod docker;
pub mod images;
pub mod qemu;
pub mod registry;
pub mod shaping;
