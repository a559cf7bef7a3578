//! The refservice binary that every image carries, built as a static executable so that
//! it runs on a base with no C library.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::ArtifactError;
use super::process;

/// The target the service is built for. The image recipes name the matching Docker
/// architecture, `amd64`.
pub const SERVICE_TARGET: &str = "x86_64-unknown-linux-gnu";

/// A built service binary and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBinary {
    pub path: PathBuf,
    /// Lowercase hex.
    pub sha256: String,
    pub size_bytes: u64,
}

impl ServiceBinary {
    /// Hashes the executable at `path` after checking that it is a static x86-64 ELF
    /// file, because a dynamically linked one fails to start in the distroless image.
    pub fn from_path(path: &Path) -> Result<ServiceBinary, ArtifactError> {
        let bytes = fs::read(path).map_err(ArtifactError::io("read", path))?;
        check_static_elf(&bytes).map_err(|reason| ArtifactError::InvalidBinary { path: path.to_path_buf(), reason })?;
        Ok(ServiceBinary {
            path: path.to_path_buf(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            size_bytes: bytes.len() as u64,
        })
    }
}

/// Builds refservice as a static executable with `cargo build --profile service --target
/// x86_64-unknown-linux-gnu` and `RUSTFLAGS=-C target-feature=+crt-static`, into
/// `<workspace_root>/target/static` so that the flags do not invalidate the normal build.
/// Cargo's freshness check makes a repeated call cheap. Blocks until cargo finishes.
pub fn build_service_binary(workspace_root: &Path) -> Result<ServiceBinary, ArtifactError> {
    let target_dir = workspace_root.join("target").join("static");
    // Under `cargo test` or `cargo run`, CARGO names the cargo that is running.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root)
        .args(["build", "--profile", "service", "-p", "refservice", "--target", SERVICE_TARGET, "--target-dir"])
        .arg(&target_dir)
        // With an explicit --target, RUSTFLAGS reach the target crates only, not build scripts.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    process::run(
        "build refservice",
        &mut command,
        "install the Rust toolchain (https://rustup.rs) or set CARGO to the cargo binary",
    )?;
    ServiceBinary::from_path(&target_dir.join(SERVICE_TARGET).join("service").join("refservice"))
}

/// Checks that `bytes` is a 64-bit little-endian x86-64 ELF executable without a
/// PT_INTERP program header, that is, one that needs no dynamic loader.
fn check_static_elf(bytes: &[u8]) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    const EM_X86_64: u16 = 62;
    let u16_at = |offset: usize| bytes.get(offset..offset + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |offset: usize| bytes.get(offset..offset + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |offset: usize| bytes.get(offset..offset + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));

    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err("it is not a 64-bit little-endian ELF file".to_string());
    }
    if u16_at(18) != Some(EM_X86_64) {
        return Err(format!("it is built for ELF machine {:?}, not x86-64 (62)", u16_at(18)));
    }
    let truncated = || "its ELF program headers are truncated".to_string();
    let table_offset = u64_at(32).ok_or_else(truncated)? as usize;
    let entry_size = u16_at(54).ok_or_else(truncated)? as usize;
    let entry_count = u16_at(56).ok_or_else(truncated)? as usize;
    if table_offset.saturating_add(entry_size.saturating_mul(entry_count)) > bytes.len() || entry_size < 56 {
        return Err(truncated());
    }
    for index in 0..entry_count {
        let entry = table_offset + index * entry_size;
        if u32_at(entry).ok_or_else(truncated)? != PT_INTERP {
            continue;
        }
        let offset = u64_at(entry + 8).ok_or_else(truncated)? as usize;
        let size = u64_at(entry + 32).ok_or_else(truncated)? as usize;
        let interpreter = bytes.get(offset..offset + size).map(String::from_utf8_lossy).unwrap_or_default();
        return Err(format!("it is dynamically linked and needs the loader {}", interpreter.trim_end_matches('\0')));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns a minimal ELF header with one program header of type `program_type`.
    fn elf_with_program_header(program_type: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 64 + 56 + 16];
        bytes[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&1u16.to_le_bytes());
        bytes[64..68].copy_from_slice(&program_type.to_le_bytes());
        bytes[72..80].copy_from_slice(&120u64.to_le_bytes());
        bytes[96..104].copy_from_slice(&11u64.to_le_bytes());
        bytes[120..131].copy_from_slice(b"/lib/ld.so\0");
        bytes
    }

    #[test]
    fn static_elf_accepted() {
        // Program header type 1 is PT_LOAD.
        assert_eq!(check_static_elf(&elf_with_program_header(1)), Ok(()));
    }

    #[test]
    fn interpreter_rejected() {
        let error = check_static_elf(&elf_with_program_header(3)).unwrap_err();
        assert_eq!(error, "it is dynamically linked and needs the loader /lib/ld.so");
    }

    #[test]
    fn test_binary_is_dynamic() {
        // Test executables are linked dynamically against glibc by default.
        let bytes = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(check_static_elf(&bytes).unwrap_err().contains("dynamically linked"));
    }

    #[test]
    fn non_elf_rejected() {
        assert!(check_static_elf(b"#!/bin/sh\n").unwrap_err().contains("not a 64-bit"));
        let mut truncated = elf_with_program_header(1);
        truncated.truncate(70);
        assert!(check_static_elf(&truncated).unwrap_err().contains("truncated"));
    }
}
