//! Assembles report.md from the sections the other report modules render.

use std::fmt::Write;

use super::data::RunData;
use super::plots::{PlotFiles, FUNCTION_PLOT_NAMES, PLOT_NAMES};
use super::{findings, function, pull, record, tables};

/// Alternative text of each plot in [`PLOT_NAMES`], in the same order.
const PLOT_ALT_TEXTS: [&str; 5] = [
    "boot time",
    "memory overhead",
    "latency percentiles",
    "image size",
    "cold pull time against image size",
];

/// Alternative text of each plot in [`FUNCTION_PLOT_NAMES`], in the same order.
const FUNCTION_PLOT_ALT_TEXTS: [&str; 2] = [
    "function cold start against warm request",
    "function instances over time",
];

pub fn render(data: &RunData, plot_files: &PlotFiles) -> String {
    let meta = &data.meta;
    let mut out = String::new();

    let _ = writeln!(
        out,
        "# deploybench run: {}, started {}\n",
        meta.scenario_name, meta.started_at
    );
    if !meta.complete {
        let reason = meta.incomplete_reason.as_deref().unwrap_or("run.json gives no reason");
        let _ = writeln!(
            out,
            "> **This run is incomplete: {reason}.** The tables below show only what the run stored before it stopped.\n"
        );
    }
    for note in &data.notes {
        let _ = writeln!(out, "> {note}\n");
    }

    out.push_str("## Key findings\n\n");
    out.push_str(
        "Our measurements beside the \"Key Findings\" table of the Codcompass article \"Docker \
         Containerization: Production-Grade Architecture & Implementation\". Boot time is \
         `boot_ms` at phase `first_200`, and memory overhead is `memory_overhead_mib`, the memory \
         an idle instance uses beyond the bare process.\n\n",
    );
    let rows = findings::rows(data);
    out.push_str(&findings::table(&rows));

    out.push_str("\n## Where we disagree with the report\n\n");
    out.push_str(&findings::disagreements(&rows));

    out.push_str("\n## Measurements\n\n");
    out.push_str("Medians over repetitions. Spread columns are empty where a figure has a single sample.\n\n");
    section(&mut out, "### Boot phases", &tables::boot(data));
    section(&mut out, "### Memory", &tables::memory(data));
    section(&mut out, "### Image size", &tables::image(data));
    section(&mut out, "### Load", &tables::load(data));
    if let Some(function) = function::section(data) {
        section(
            &mut out,
            "### Function model: cold starts behind the gateway",
            &function,
        );
    }
    // Pulls and deploys are optional steps, so a run without them gets no empty sections.
    if !data.models_with(crate::measure::pull::METRIC).is_empty() {
        section(&mut out, "### Pull latency", &pull::table(data));
        section(&mut out, "### Pull time against the 80% claim", &pull::claim(data));
    }
    if !data.models_with(crate::measure::deploy::METRIC).is_empty() {
        section(&mut out, "### Deploy cycle", &pull::deploy_table(data));
    }
    if let Some(other) = tables::other(data) {
        section(&mut out, "### Other metrics", &other);
    }

    out.push_str("## Run record\n\n");
    section(&mut out, "### Run-time checks", &record::checks(meta));
    section(&mut out, "### Deployment models", &record::outcomes(meta));
    section(&mut out, "### Failed repetitions", &record::failures(meta));
    if let Some(artifacts) = record::artifacts(meta) {
        section(&mut out, "### Artifacts", &artifacts);
    }
    section(&mut out, "### Host and engine", &record::context(meta));

    out.push_str("## Plots\n\n");
    for reason in &plot_files.skipped {
        let _ = writeln!(out, "> {reason}\n");
    }
    let function_plots = FUNCTION_PLOT_NAMES.iter().zip(FUNCTION_PLOT_ALT_TEXTS);
    for (name, alt) in PLOT_NAMES.iter().zip(PLOT_ALT_TEXTS).chain(function_plots) {
        let written = |extension: &str| {
            plot_files.written.iter().any(|path| {
                path.file_name()
                    .is_some_and(|file| file.to_string_lossy() == format!("{name}.{extension}"))
            })
        };
        if written("png") {
            let _ = writeln!(out, "![{alt}]({name}.png)\n\n[{name}.svg]({name}.svg)\n");
        } else if written("svg") {
            let _ = writeln!(out, "![{alt}]({name}.svg)\n");
        }
    }
    out
}

fn section(out: &mut String, heading: &str, body: &str) {
    let _ = writeln!(out, "{heading}\n\n{body}");
}
