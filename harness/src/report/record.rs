//! Sections from run.json: run-time checks, model outcomes, artifacts, and the host and
//! engine context.

use std::fmt::Write;

use crate::results::RunMeta;

use super::format;

pub fn checks(meta: &RunMeta) -> String {
    if meta.checks.is_empty() {
        return "The run recorded no run-time checks.\n".to_string();
    }
    let mut out = String::from("| Model | Check | Result | Detail |\n| --- | --- | --- | --- |\n");
    for check in &meta.checks {
        let result = if check.passed { "passed" } else { "**FAILED**" };
        let _ = writeln!(
            out,
            "| {} | {} | {result} | {} |",
            format::cell(&check.model),
            format::cell(&check.check),
            format::cell(&check.detail),
        );
    }
    out
}

/// Lists the repetitions that failed, with the step and the reason; their samples are
/// missing from the figures above.
pub fn failures(meta: &RunMeta) -> String {
    if meta.failures.is_empty() {
        return "No repetition failed.\n".to_string();
    }
    let mut out = format!(
        "{} repetition(s) failed; the figures above leave out what they did not measure.\n\n\
         | Model | Repetition | Failed step | Reason |\n| --- | --- | --- | --- |\n",
        meta.failures.len()
    );
    for failure in &meta.failures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            format::cell(&failure.model),
            failure.repetition + 1,
            format::cell(&failure.stage),
            format::cell(&failure.reason),
        );
    }
    out
}

/// Renders what happened to each model, with the reason for every model not measured.
pub fn outcomes(meta: &RunMeta) -> String {
    if meta.models.is_empty() {
        return "run.json lists no model outcomes.\n".to_string();
    }
    let mut out = String::from("| Model | Status | Reason |\n| --- | --- | --- |\n");
    for outcome in &meta.models {
        let status = if outcome.status == "measured" {
            outcome.status.clone()
        } else {
            format!("**{}**", outcome.status)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            format::cell(&outcome.model),
            format::cell(&status),
            format::cell(&outcome.reason),
        );
    }
    out
}

pub fn artifacts(meta: &RunMeta) -> Option<String> {
    if meta.artifacts.is_empty() {
        return None;
    }
    let mut out = String::from(
        "| Model | Artifact | Size (MiB) | Reused from an earlier run | Recipe hash |\n| --- | --- | --- | --- | --- |\n",
    );
    for artifact in &meta.artifacts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | `{}` |",
            format::cell(&artifact.model),
            format::cell(&artifact.name),
            format::number(artifact.size_bytes as f64 / 1_048_576.0),
            if artifact.reused { "yes" } else { "no" },
            format::cell(&artifact.recipe_hash),
        );
    }
    Some(out)
}

/// Renders the host, engine and run identity as a two-column table.
pub fn context(meta: &RunMeta) -> String {
    let host = &meta.host;
    let mut rows: Vec<(&str, String)> = vec![
        ("deploybench version", meta.deploybench_version.clone()),
        ("git revision", meta.git_revision.clone().unwrap_or_default()),
        ("scenario file", meta.scenario_path.clone()),
        ("started", meta.started_at.clone()),
        ("finished", meta.finished_at.clone().unwrap_or_default()),
        ("CPU model", host.cpu_model.clone()),
        (
            "logical CPUs",
            if host.cpu_count > 0 {
                host.cpu_count.to_string()
            } else {
                String::new()
            },
        ),
        (
            "memory",
            if host.memory_total_bytes > 0 {
                format!(
                    "{} GiB",
                    format::number(host.memory_total_bytes as f64 / (1u64 << 30) as f64)
                )
            } else {
                String::new()
            },
        ),
        ("kernel", host.kernel.clone()),
        ("OS", host.os.clone()),
        ("cgroup version (host)", host.cgroup_version.clone()),
    ];
    match &meta.engine {
        Some(engine) => {
            rows.push(("Docker version", engine.docker_version.clone()));
            rows.push(("Docker API version", engine.api_version.clone()));
            rows.push(("default runtime", engine.default_runtime.clone()));
            rows.push(("runtimes", engine.runtimes.join(", ")));
            rows.push(("storage driver", engine.storage_driver.clone()));
            rows.push(("cgroup driver", engine.cgroup_driver.clone()));
            rows.push(("cgroup version (Docker)", engine.cgroup_version.clone()));
        }
        None => rows.push(("Docker engine", String::new())),
    }

    let mut out = String::from("| | |\n| --- | --- |\n");
    for (name, value) in rows {
        let value = if value.trim().is_empty() {
            "not recorded in run.json".to_string()
        } else {
            value
        };
        let _ = writeln!(out, "| {name} | {} |", format::cell(&value));
    }
    out
}
