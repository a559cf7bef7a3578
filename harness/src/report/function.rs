//! The function model's section of report.md: cold start phases against warm requests,
//! the gateway's added latency, and the fleet figures of each load pattern.

use std::fmt::Write;

use crate::results::Summary;

use super::data::RunData;
use super::format;

/// Model label of the function deployment model.
pub const FUNCTION: &str = "function";

/// Metrics that only this section shows for the function model.
const SHOWN_METRICS: &[&str] = &[
    "cold_start_ms",
    "warm_ms",
    "gateway_path_ms",
    "gateway_overhead_ms",
    "cold_starts",
    "cold_start_failures",
    "queue_full_503",
    "queue_timeout_503",
    "instance_seconds",
    "gb_seconds",
    "peak_instances",
    "instances",
    "instance_sample_period_ms",
    "live_sandboxes",
    "scale_to_zero_s",
    "pattern_latency_ms",
    "pattern_requests",
];

/// Measurements in the order the section lists them: the isolated cold-versus-warm
/// sequence, then the load patterns.
const MEASUREMENTS: [&str; 4] = ["cold_warm", "steady", "bursty", "spike"];

/// True for a function summary that this section shows, so the table of other metrics
/// leaves it out.
pub fn shows(summary: &Summary) -> bool {
    summary.model == FUNCTION && SHOWN_METRICS.contains(&summary.metric.as_str())
}

/// True when the run stored any function measurement beyond the boot loop.
pub fn has_samples(data: &RunData) -> bool {
    data.summaries.iter().any(shows)
}

fn median_p95(summary: Option<&Summary>) -> String {
    match summary {
        Some(summary) if summary.n > 1 => {
            format!("{} (p95 {})", format::number(summary.median), format::number(summary.p95))
        }
        Some(summary) => format::number(summary.median),
        None => "—".to_string(),
    }
}

fn count(summary: Option<&Summary>) -> String {
    summary.map_or_else(|| "—".to_string(), |summary| format::count(summary.median))
}

/// Renders the section, or `None` when the run stored no function measurement.
pub fn section(data: &RunData) -> Option<String> {
    if !has_samples(data) {
        return None;
    }
    let mut out = String::from(
        "Cold start phases count from the request reaching the gateway: the sandbox container \
         created, started, its first 200 from `/health` (ready), and the whole response to the \
         request (handler). A warm request found an idle instance, and its time runs from \
         arrival to the whole response. Both come from an isolated sequence: a fresh gateway per \
         repetition, one cold request, then warm ones. The two gateway paths send the same \
         request in alternation through the gateway and straight to the instance's published \
         port, each on a kept-alive connection, and the overhead is the difference of their \
         medians. All times are in ms.\n\n\
         | Measure | n | Median | p95 | Min–max |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    let rows = [
        ("cold start: create", "cold_start_ms", "create"),
        ("cold start: start", "cold_start_ms", "start"),
        ("cold start: ready", "cold_start_ms", "ready"),
        ("cold start: handler", "cold_start_ms", "handler"),
        ("warm request", "warm_ms", ""),
        ("path through the gateway", "gateway_path_ms", "via_gateway"),
        ("path straight to the instance", "gateway_path_ms", "direct"),
        ("gateway overhead", "gateway_overhead_ms", ""),
    ];
    for (measure, metric, phase) in rows {
        let Some(summary) = data.summary(FUNCTION, metric, phase) else { continue };
        let spread = |value: String| if summary.n > 1 { value } else { "—".to_string() };
        let _ = writeln!(
            out,
            "| {measure} | {} | {} | {} | {} |",
            summary.n,
            format::number(summary.median),
            spread(format::number(summary.p95)),
            spread(format!("{}–{}", format::number(summary.min), format::number(summary.max))),
        );
    }

    out.push_str(&patterns_table(data));
    out.push_str(&idle_note(data));
    Some(out)
}

/// Renders one row per measurement with its cold starts, rejections, fleet size and cost.
fn patterns_table(data: &RunData) -> String {
    let mut out = String::from(
        "\nEach load pattern runs through a fresh gateway that starts with no instance. Latency \
         of a pattern runs from each request's intended send time to its last response byte, \
         split by whether the gateway started an instance for the request. A warm request was \
         served by an instance that already ran, possibly after waiting in the queue for it. \
         For `steady` the table shows the median and p99 of all requests, because its load \
         generator stores percentiles only. Instance-seconds sum each instance's life from the start of \
         its cold start to its removal, and GB-seconds multiply them by the memory limit in GB \
         of 1024 MiB, as AWS Lambda bills them.\n\n\
         | Measurement | Requests | Cold starts | Failed cold starts | 503: queue full | 503: queue timeout | Peak instances | Cold latency median (p95) | Warm latency median (p95) | Instance-seconds | GB-seconds | Back to zero after the last response (s) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for measurement in MEASUREMENTS {
        let Some(cold_starts) = data.summary(FUNCTION, "cold_starts", measurement) else { continue };
        let stat = |metric: &str| data.summary(FUNCTION, metric, measurement);
        let (requests, cold, warm) = match measurement {
            "cold_warm" => (
                data.summary(FUNCTION, "warm_ms", "").map(|warm| warm.n as f64 + cold_starts.median),
                median_p95(data.summary(FUNCTION, "cold_start_ms", "handler")),
                median_p95(data.summary(FUNCTION, "warm_ms", "")),
            ),
            "steady" => (
                stat("pattern_requests").map(|summary| summary.median),
                "—".to_string(),
                steady_latency(data),
            ),
            pattern => (
                stat("pattern_requests").map(|summary| summary.median),
                median_p95(data.summary(FUNCTION, "pattern_latency_ms", &format!("{pattern}_cold"))),
                median_p95(data.summary(FUNCTION, "pattern_latency_ms", &format!("{pattern}_warm"))),
            ),
        };
        let cells = [
            format::cell(measurement),
            requests.map_or_else(|| "—".to_string(), format::count),
            format::count(cold_starts.median),
            count(stat("cold_start_failures")),
            count(stat("queue_full_503")),
            count(stat("queue_timeout_503")),
            count(stat("peak_instances")),
            cold,
            warm,
            stat("instance_seconds").map_or_else(|| "—".to_string(), |s| format::number(s.median)),
            stat("gb_seconds").map_or_else(|| "—".to_string(), |s| format::number(s.median)),
            stat("scale_to_zero_s").map_or_else(|| "—".to_string(), |s| format::number(s.median)),
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Formats the steady pattern's median and p99 latency of all requests, which its load
/// generator stores as percentiles.
fn steady_latency(data: &RunData) -> String {
    let at = |phase: &str| data.summary(FUNCTION, "pattern_latency_ms", phase).map(|s| s.median);
    match (at("steady_p50"), at("steady_p99")) {
        (Some(p50), Some(p99)) => format!("{} (p99 {}), all requests", format::number(p50), format::number(p99)),
        _ => "—".to_string(),
    }
}

/// States what the engine still listed after each pattern's keep-warm window.
fn idle_note(data: &RunData) -> String {
    let sandboxes = data.summary(FUNCTION, "live_sandboxes", "idle_after_window");
    let memory = data.summary(FUNCTION, "memory_mib", "idle_after_window");
    let (Some(sandboxes), Some(memory)) = (sandboxes, memory) else {
        return String::new();
    };
    if sandboxes.max == 0.0 {
        return format!(
            "\nAfter the keep-warm window of each pattern ({} checks), the engine listed no sandbox of \
             the gateway, so no sandbox memory remained. The gateway's own memory is not measured, \
             because it runs inside the harness process and shares its heap.\n",
            sandboxes.n,
        );
    }
    format!(
        "\nAfter the keep-warm window of each pattern ({} checks), the engine still listed up to {} \
         sandboxes of the gateway, holding up to {} MiB (cgroup memory less inactive file cache, \
         plus the shim's PSS). The gateway's own memory is not measured, because it runs inside \
         the harness process and shares its heap.\n",
        sandboxes.n,
        format::count(sandboxes.max),
        format::number(memory.max),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::results::{summarize, write_meta, write_samples, write_summaries, RunMeta, Sample};

    use super::super::write_report_with_font;
    use super::FUNCTION;

    fn push(samples: &mut Vec<Sample>, metric: &str, phase: &str, values: &[f64], unit: &str) {
        for (repetition, value) in values.iter().enumerate() {
            samples.push(Sample::new(FUNCTION, metric, phase, repetition as u32, *value, unit));
        }
    }

    fn function_samples(left_sandboxes: f64) -> Vec<Sample> {
        let mut samples = Vec::new();
        push(&mut samples, "boot_ms", "first_200", &[650.0, 700.0, 680.0], "ms");
        push(&mut samples, "cold_start_ms", "create", &[40.0, 45.0, 50.0], "ms");
        push(&mut samples, "cold_start_ms", "start", &[600.0, 610.0, 640.0], "ms");
        push(&mut samples, "cold_start_ms", "ready", &[605.0, 615.0, 645.0], "ms");
        push(&mut samples, "cold_start_ms", "handler", &[606.0, 617.0, 646.0], "ms");
        push(&mut samples, "warm_ms", "", &[0.5, 0.6, 0.4, 0.5, 0.7], "ms");
        push(&mut samples, "gateway_path_ms", "via_gateway", &[0.9, 0.8, 1.0], "ms");
        push(&mut samples, "gateway_path_ms", "direct", &[0.5, 0.4, 0.6], "ms");
        push(&mut samples, "gateway_overhead_ms", "", &[0.4], "ms");
        for (phase, cold_starts, queue_full) in [("cold_warm", 3.0, 0.0), ("bursty", 8.0, 6.0)] {
            push(&mut samples, "cold_starts", phase, &[cold_starts], "cold starts");
            push(&mut samples, "cold_start_failures", phase, &[0.0], "cold starts");
            push(&mut samples, "queue_full_503", phase, &[queue_full], "requests");
            push(&mut samples, "queue_timeout_503", phase, &[0.0], "requests");
            push(&mut samples, "instance_seconds", phase, &[12.5], "s");
            push(&mut samples, "gb_seconds", phase, &[4.6875], "GB-s");
            push(&mut samples, "peak_instances", phase, &[4.0], "instances");
        }
        push(&mut samples, "pattern_requests", "bursty", &[30.0], "requests");
        push(&mut samples, "pattern_latency_ms", "bursty_cold", &[1400.0, 1500.0], "ms");
        push(&mut samples, "pattern_latency_ms", "bursty_warm", &[1200.0, 1250.0], "ms");
        push(&mut samples, "instances", "bursty", &[0.0, 2.0, 4.0, 4.0, 1.0, 0.0], "instances");
        push(&mut samples, "instance_sample_period_ms", "bursty", &[100.0], "ms");
        push(&mut samples, "scale_to_zero_s", "bursty", &[4.1], "s");
        push(&mut samples, "live_sandboxes", "idle_after_window", &[left_sandboxes], "sandboxes");
        push(&mut samples, "memory_mib", "idle_after_window", &[left_sandboxes * 12.5], "MiB");
        samples
    }

    /// Writes a run folder and its report without a font, so only SVG plots are drawn.
    fn report(folder: &Path, samples: &[Sample]) -> String {
        write_samples(folder, samples).unwrap();
        write_summaries(folder, &summarize(samples)).unwrap();
        write_meta(folder, &RunMeta { scenario_name: "test".to_string(), complete: true, ..Default::default() }).unwrap();
        write_report_with_font(folder, &folder.join("no-font.ttf")).unwrap();
        std::fs::read_to_string(folder.join(crate::results::REPORT_FILE)).unwrap()
    }

    #[test]
    fn section_lists_cold_warm_and_patterns() {
        let folder = tempfile::tempdir().unwrap();
        let report = report(folder.path(), &function_samples(0.0));

        assert!(report.contains("### Function model: cold starts behind the gateway"), "{report}");
        assert!(report.contains("| cold start: handler | 3 | 617 | "), "{report}");
        assert!(report.contains("| warm request | 5 | 0.500 | "), "{report}");
        assert!(report.contains("| gateway overhead | 1 | 0.400 | — | — |"), "{report}");
        let bursty = report.lines().find(|line| line.starts_with("| bursty |")).expect("a bursty row");
        assert!(bursty.starts_with("| bursty | 30 | 8 | 0 | 6 | 0 | 4 | 1450 (p95 "), "{bursty}");
        assert!(bursty.ends_with("| 12.5 | 4.69 | 4.10 |"), "{bursty}");
        assert!(report.contains("the engine listed no sandbox of the gateway"), "{report}");
    }

    #[test]
    fn section_metrics_not_repeated() {
        let folder = tempfile::tempdir().unwrap();
        let report = report(folder.path(), &function_samples(0.0));
        let other = report.split("### Other metrics").nth(1).unwrap_or("");
        let other = other.split("## Run record").next().unwrap_or("");
        assert!(!other.contains("cold_starts"), "{other}");
        assert!(!other.contains("instances"), "{other}");
    }

    #[test]
    fn leftover_sandboxes_stated() {
        let folder = tempfile::tempdir().unwrap();
        let report = report(folder.path(), &function_samples(2.0));
        assert!(report.contains("still listed up to 2 sandboxes of the gateway, holding up to 25.0 MiB"), "{report}");
    }

    #[test]
    fn function_plots_written_with_samples() {
        let folder = tempfile::tempdir().unwrap();
        let report = report(folder.path(), &function_samples(0.0));
        for name in super::super::plots::FUNCTION_PLOT_NAMES {
            let svg = std::fs::read_to_string(folder.path().join(format!("{name}.svg"))).unwrap();
            assert!(svg.starts_with("<svg"), "{name}");
            assert!(report.contains(&format!("({name}.svg)")), "{name} not linked:\n{report}");
        }
        let instances = std::fs::read_to_string(folder.path().join("function_instances.svg")).unwrap();
        assert!(instances.contains("bursty"), "legend names the pattern");
    }

    #[test]
    fn no_function_samples_no_section() {
        let folder = tempfile::tempdir().unwrap();
        let samples = vec![Sample::new("distroless", "boot_ms", "first_200", 0, 500.0, "ms")];
        let report = report(folder.path(), &samples);
        assert!(!report.contains("### Function model"), "{report}");
        for name in super::super::plots::FUNCTION_PLOT_NAMES {
            assert!(!folder.path().join(format!("{name}.svg")).exists(), "{name}.svg written");
        }
    }
}
