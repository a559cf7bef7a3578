//! Run-time verification of a container's hardening, from inside the container:
//! the harness runs `refservice selfcheck` in it and checks what it reports.

use std::collections::HashMap;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

use crate::results::CheckRecord;

/// The service binary's path inside the distroless image.
const SELFCHECK_COMMAND: [&str; 2] = ["/refservice", "selfcheck"];

/// Parses the `key=value` line of `refservice selfcheck`.
pub fn parse_selfcheck(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Turns a selfcheck report into pass or fail records for the distroless hardening.
pub fn distroless_checks(model: &str, report: &HashMap<String, String>) -> Vec<CheckRecord> {
    let value = |key: &str| report.get(key).map_or("missing", String::as_str);
    let check = |name: &str, passed: bool, detail: String| CheckRecord {
        model: model.to_string(),
        check: name.to_string(),
        passed,
        detail,
    };
    vec![
        check("runs as uid 65532", value("uid") == "65532", format!("uid {}", value("uid"))),
        check(
            "root filesystem rejects writes",
            value("root_writable") == "false",
            format!("a write to / {}", if value("root_writable") == "false" { "failed" } else { "succeeded" }),
        ),
        check(
            "no effective capabilities",
            value("cap_eff").trim_start_matches('0').is_empty() && value("cap_eff") != "missing",
            format!("CapEff {}", value("cap_eff")),
        ),
        check("no-new-privileges set", value("no_new_privs") == "1", format!("NoNewPrivs {}", value("no_new_privs"))),
        check("no shell in the image", value("shell_present") == "false", format!("/bin/sh present: {}", value("shell_present"))),
        check("/tmp is writable tmpfs", value("tmp_writable") == "true", format!("a write to /tmp: {}", value("tmp_writable"))),
    ]
}

/// Runs `refservice selfcheck` inside a running container and returns its output line.
pub async fn run_selfcheck(docker: &Docker, container: &str) -> Result<String, String> {
    let options = CreateExecOptions {
        cmd: Some(SELFCHECK_COMMAND.iter().map(|part| part.to_string()).collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker
        .create_exec(container, options)
        .await
        .map_err(|error| format!("cannot create the selfcheck exec: {error}"))?;
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|error| format!("cannot start the selfcheck exec: {error}"))?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err("the selfcheck exec started detached".to_string());
    };
    let mut text = String::new();
    while let Some(chunk) = output.next().await {
        let chunk = chunk.map_err(|error| format!("cannot read the selfcheck output: {error}"))?;
        text.push_str(&chunk.to_string());
    }
    text.lines()
        .find(|line| line.starts_with("uid="))
        .map(str::to_string)
        .ok_or_else(|| format!("selfcheck printed no report: {:?}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARDENED: &str =
        "uid=65532 gid=65532 cap_eff=0000000000000000 no_new_privs=1 root_writable=false tmp_writable=true shell_present=false";

    #[test]
    fn hardened_report_passes_all() {
        let checks = distroless_checks("distroless", &parse_selfcheck(HARDENED));
        assert_eq!(checks.len(), 6);
        for check in &checks {
            assert!(check.passed, "{} failed: {}", check.check, check.detail);
        }
    }

    #[test]
    fn root_report_fails_each_point() {
        let line = "uid=0 gid=0 cap_eff=000001fffeffffff no_new_privs=0 root_writable=true tmp_writable=true shell_present=true";
        let checks = distroless_checks("fat-image", &parse_selfcheck(line));
        let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.check.as_str()).collect();
        assert_eq!(
            failed,
            vec![
                "runs as uid 65532",
                "root filesystem rejects writes",
                "no effective capabilities",
                "no-new-privileges set",
                "no shell in the image"
            ]
        );
    }

    #[test]
    fn missing_keys_fail() {
        let checks = distroless_checks("distroless", &parse_selfcheck("garbage"));
        assert!(checks.iter().all(|check| !check.passed));
    }
}
