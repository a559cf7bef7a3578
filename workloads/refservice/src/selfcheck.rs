//! `refservice selfcheck`: reports, from inside its sandbox, what the process may do,
//! so the harness verifies hardening at run time instead of assuming it.

use std::path::Path;

/// One line of `key=value` pairs: uid, gid, effective capabilities, no_new_privs,
/// whether the root and /tmp accept a write, and whether /bin/sh exists.
pub fn report() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .map(|value| value.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| "unknown".to_string())
    };
    format!(
        "uid={} gid={} cap_eff={} no_new_privs={} root_writable={} tmp_writable={} shell_present={}",
        field("Uid"),
        field("Gid"),
        field("CapEff"),
        field("NoNewPrivs"),
        can_write(Path::new("/.deploybench-write-probe")),
        can_write(Path::new("/tmp/.deploybench-write-probe")),
        Path::new("/bin/sh").exists(),
    )
}

/// Tries to create and remove a file; true if and only if the create succeeded.
fn can_write(path: &Path) -> bool {
    match std::fs::write(path, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(path);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_every_key() {
        let line = report();
        for key in ["uid=", "gid=", "cap_eff=", "no_new_privs=", "root_writable=", "tmp_writable=", "shell_present="] {
            assert!(line.contains(key), "{key} missing from {line}");
        }
        assert!(!line.contains("unknown"), "{line}");
    }
}
