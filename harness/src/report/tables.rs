//! Per-metric tables: boot phases, memory, image size, load, and every other stored metric.

use std::fmt::Write;

use crate::results::Summary;

use super::data::RunData;
use super::{format, function};

/// Metrics that a dedicated table or the key findings already show.
const COVERED_METRICS: &[&str] = &[
    "boot_ms",
    "memory_mib",
    "memory_overhead_mib",
    "image_mib",
    "latency_ms",
    "service_time_ms",
    "requests",
    "achieved_rps",
    "target_rps",
    "errors",
    "cpu_ms_per_1k_req",
    "utilization_pct",
    crate::measure::pull::METRIC,
    crate::measure::pull::ROUND_TRIPS_METRIC,
    crate::measure::deploy::METRIC,
];

const LATENCY_PHASES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

/// Renders a table with one row per summary: model, measure, unit, n, median and spread.
/// The spread columns stay empty for a single sample.
fn long_table(rows: &[(&str, &Summary)]) -> String {
    let mut out = String::from(
        "| Model | Measure | Unit | n | Median | p95 | 95% CI of the median | Min–max |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (measure, summary) in rows {
        let (p95, interval, extremes) = if summary.n > 1 {
            (
                format::number(summary.p95),
                format!(
                    "{}–{}",
                    format::number(summary.ci95_low),
                    format::number(summary.ci95_high)
                ),
                format!("{}–{}", format::number(summary.min), format::number(summary.max)),
            )
        } else {
            ("—".to_string(), "—".to_string(), "—".to_string())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {p95} | {interval} | {extremes} |",
            format::cell(&summary.model),
            format::cell(measure),
            format::cell(&summary.unit),
            summary.n,
            format::number(summary.median),
        );
    }
    out
}

/// Formats a summary for a wide table: the median, with p95 and n when there are several samples.
fn compact(summary: Option<&Summary>) -> String {
    match summary {
        Some(summary) if summary.n > 1 => format!(
            "{} (p95 {}, n {})",
            format::number(summary.median),
            format::number(summary.p95),
            summary.n
        ),
        Some(summary) => format::number(summary.median),
        None => "—".to_string(),
    }
}

fn no_samples(metric: &str) -> String {
    format!("The run stored no `{metric}` samples.\n")
}

/// Renders the boot phases: the ms from the first start call to each event, per model.
pub fn boot(data: &RunData) -> String {
    let phases = data.phases("boot_ms");
    let mut rows = Vec::new();
    for model in data.models_with("boot_ms") {
        let mut model_rows: Vec<(&str, &Summary)> = phases
            .iter()
            .filter_map(|phase| Some((phase.as_str(), data.summary(model, "boot_ms", phase)?)))
            .collect();
        // Every phase counts from the same start call, so sorting by median lists the
        // phases in the order they happened, whatever order the samples came in.
        model_rows.sort_by(|a, b| a.1.median.total_cmp(&b.1.median));
        rows.extend(model_rows);
    }
    if rows.is_empty() {
        return no_samples("boot_ms");
    }
    let mut out = String::from(
        "Each phase is the time from the harness's first start call to that event, so the \
         `first_200` row is the boot time. Phases are listed in the order of their medians, and a \
         model without a phase has no row for it.\n\n",
    );
    out.push_str(&long_table(&rows));
    out
}

/// Renders memory per instance (instance, runtime, total) and the overhead over the process floor.
pub fn memory(data: &RunData) -> String {
    let mut models = data.models_with("memory_mib");
    for model in data.models_with("memory_overhead_mib") {
        if !models.contains(&model) {
            models.push(model);
        }
    }
    let phases = data.phases("memory_mib");
    let mut rows = Vec::new();
    for model in models {
        for phase in &phases {
            if let Some(summary) = data.summary(model, "memory_mib", phase) {
                rows.push((phase.as_str(), summary));
            }
        }
        if let Some(summary) = data.summary(model, "memory_overhead_mib", "") {
            rows.push(("overhead", summary));
        }
    }
    if rows.is_empty() {
        return no_samples("memory_mib");
    }
    let mut out = String::from(
        "`instance` is the cgroup's usage minus inactive file cache (for `process`, its RSS), \
         `runtime` is the container shim's PSS, `total` is their sum, and `overhead` is the total \
         minus the median total of `process`. For `function`, `total` is one warm instance \
         without the gateway, and `idle_after_window` is the memory of the sandboxes the engine \
         still listed after a load pattern's keep-warm window, 0 when none was left.\n\n",
    );
    out.push_str(&long_table(&rows));
    out
}

pub fn image(data: &RunData) -> String {
    let phases = data.phases("image_mib");
    let mut rows = Vec::new();
    for model in data.models_with("image_mib") {
        for phase in &phases {
            if let Some(summary) = data.summary(model, "image_mib", phase) {
                rows.push((phase.as_str(), summary));
            }
        }
    }
    if rows.is_empty() {
        return no_samples("image_mib");
    }
    let mut out = String::from(
        "For `process` the image is the service binary alone. The `pulled_` rows describe the copy \
         of the image that the pull measurement pulls: the compressed layer bytes a cold and a warm \
         pull download, and its uncompressed size.\n\n",
    );
    out.push_str(&long_table(&rows));
    out
}

/// Renders the load figures: rates and latency in one table, errors and CPU in a second.
pub fn load(data: &RunData) -> String {
    let load_metrics = [
        "requests",
        "target_rps",
        "achieved_rps",
        "latency_ms",
        "service_time_ms",
        "errors",
        "cpu_ms_per_1k_req",
        "utilization_pct",
    ];
    let mut models: Vec<&str> = Vec::new();
    for model in &data.models {
        let has_load = data
            .samples
            .iter()
            .any(|sample| &sample.model == model && load_metrics.contains(&sample.metric.as_str()));
        if has_load {
            models.push(model);
        }
    }
    if models.is_empty() {
        return "The run stored no load samples.\n".to_string();
    }

    let mut out = String::from(
        "Latency runs from each request's intended send time to its last response byte, so it \
         includes queueing that coordinated omission would hide. Service time runs from the \
         actual send time. Latency and service time are in ms, rates in req/s.\n\n\
         | Model | Target rate | Achieved rate | Latency p50 | p90 | p99 | p99.9 | max | Service time p99 |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for model in &models {
        let mut cells = vec![
            format::cell(model),
            compact(data.summary(model, "target_rps", "")),
            compact(data.summary(model, "achieved_rps", "")),
        ];
        for phase in LATENCY_PHASES {
            cells.push(compact(data.summary(model, "latency_ms", phase)));
        }
        cells.push(compact(data.summary(model, "service_time_ms", "p99")));
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }

    out.push_str(
        "\n| Model | Completed requests | Errors by kind (total over repetitions) | CPU ms per 1000 requests | Utilization of the instance (%) | Utilization of the host (%) |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for model in &models {
        let cells = [
            format::cell(model),
            compact(data.summary(model, "requests", "completed")),
            format::cell(&errors_by_kind(data, model)),
            compact(data.summary(model, "cpu_ms_per_1k_req", "instance")),
            compact(data.summary(model, "utilization_pct", "instance")),
            compact(data.summary(model, "utilization_pct", "host")),
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Sums the error counts of one model per kind, in order of first appearance.
fn errors_by_kind(data: &RunData, model: &str) -> String {
    let mut totals: Vec<(&str, f64)> = Vec::new();
    let errors = data.samples.iter().filter(|s| s.model == model && s.metric == "errors");
    for sample in errors {
        match totals.iter_mut().find(|(kind, _)| *kind == sample.phase) {
            Some((_, total)) => *total += sample.value,
            None => totals.push((&sample.phase, sample.value)),
        }
    }
    if totals.is_empty() {
        return "none recorded".to_string();
    }
    let parts: Vec<String> = totals
        .iter()
        .map(|(kind, total)| {
            format!(
                "{}: {}",
                if kind.is_empty() { "unspecified" } else { kind },
                format::count(*total)
            )
        })
        .collect();
    parts.join(", ")
}

/// Renders every summary whose metric no other table shows, or `None` when there is none.
pub fn other(data: &RunData) -> Option<String> {
    let rows: Vec<(String, &Summary)> = data
        .summaries
        .iter()
        .filter(|summary| !COVERED_METRICS.contains(&summary.metric.as_str()) && !function::shows(summary))
        .map(|summary| {
            let measure = if summary.phase.is_empty() {
                summary.metric.clone()
            } else {
                format!("{} {}", summary.metric, summary.phase)
            };
            (measure, summary)
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let borrowed: Vec<(&str, &Summary)> = rows
        .iter()
        .map(|(measure, summary)| (measure.as_str(), *summary))
        .collect();
    Some(long_table(&borrowed))
}
