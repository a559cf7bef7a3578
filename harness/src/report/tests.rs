use std::path::Path;

use plotters::prelude::*;

use super::claims::{place, Placement, BYTES_PER_MIB, CONTAINER_CLAIM};
use super::plots::{estimate_text_size, wants_log, FontFreeSvg, Scale, PLOT_NAMES};
use super::*;
use crate::results::{
    summarize, write_meta, write_samples, write_summaries, CheckRecord, EngineContext, FailureRecord, HostContext,
    ModelOutcome, RunMeta, Sample,
};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn push_reps(samples: &mut Vec<Sample>, model: &str, metric: &str, phase: &str, values: &[f64], unit: &str) {
    for (repetition, value) in values.iter().enumerate() {
        samples.push(Sample::new(model, metric, phase, repetition as u32, *value, unit));
    }
}

fn push_load(samples: &mut Vec<Sample>, model: &str, latency: [f64; 5]) {
    samples.push(Sample::new(model, "target_rps", "", 0, 200.0, "req/s"));
    samples.push(Sample::new(model, "achieved_rps", "", 0, 199.6, "req/s"));
    samples.push(Sample::new(model, "requests", "completed", 0, 5988.0, "requests"));
    for (phase, value) in ["p50", "p90", "p99", "p99.9", "max"].iter().zip(latency) {
        samples.push(Sample::new(model, "latency_ms", phase, 0, value, "ms"));
        samples.push(Sample::new(model, "service_time_ms", phase, 0, value * 0.8, "ms"));
    }
    samples.push(Sample::new(model, "cpu_ms_per_1k_req", "instance", 0, 41.5, "ms"));
    samples.push(Sample::new(model, "utilization_pct", "instance", 0, 0.83, "%"));
    samples.push(Sample::new(model, "utilization_pct", "host", 0, 3.1, "%"));
}

/// Pull samples of distroless and fat-image: cold pulls over the loopback and a shaped
/// cloud link, warm pulls over the loopback, and distroless deploy cycles of 60 s.
///
/// On the cloud link distroless pulls in 300 ms and fat-image in 6 s, a 95% reduction.
/// Over the loopback they pull in 100 ms and 1 s, a 90% reduction.
fn push_pulls(samples: &mut Vec<Sample>) {
    for (model, size, compressed, loopback, cloud) in [
        ("distroless", 8.2, 3.0, [100.0, 110.0, 90.0], [300.0, 310.0, 290.0]),
        (
            "fat-image",
            420.0,
            150.0,
            [1000.0, 1100.0, 900.0],
            [6000.0, 6100.0, 5900.0],
        ),
    ] {
        push_reps(samples, model, "image_mib", "pulled_uncompressed", &[size], "MiB");
        push_reps(
            samples,
            model,
            "image_mib",
            "pulled_compressed_cold",
            &[compressed],
            "MiB",
        );
        push_reps(samples, model, "image_mib", "pulled_compressed_warm", &[1.5], "MiB");
        push_reps(samples, model, "pull_ms", "cold/unshaped/measured", &loopback, "ms");
        push_reps(samples, model, "pull_ms", "cold/cloud-100m/applied", &cloud, "ms");
        push_reps(
            samples,
            model,
            "pull_ms",
            "warm/unshaped/measured",
            &[40.0, 41.0, 39.0],
            "ms",
        );
    }
    for (repetition, total) in [59.0, 60.0, 61.0].into_iter().enumerate() {
        let repetition = repetition as u32;
        samples.push(Sample::new("distroless", "deploy_cycle_s", "", repetition, total, "s"));
        samples.push(Sample::new(
            "distroless",
            "deploy_cycle_s",
            "build",
            repetition,
            total - 2.0,
            "s",
        ));
        samples.push(Sample::new(
            "distroless",
            "deploy_cycle_s",
            "replace",
            repetition,
            2.0,
            "s",
        ));
    }
}

/// Samples of process, distroless, fat-image and a TCG VM, in that order of appearance.
///
/// distroless boots in a median 410 ms (below the container claim) and fat-image in
/// 1200 ms (inside it). The VM boots in 62 s (inside the VM claim).
fn synthetic_samples() -> Vec<Sample> {
    let mut samples = Vec::new();

    push_reps(&mut samples, "process", "boot_ms", "start", &[0.4, 0.5, 0.45], "ms");
    push_reps(
        &mut samples,
        "process",
        "boot_ms",
        "first_accept",
        &[2.0, 2.2, 2.1],
        "ms",
    );
    push_reps(&mut samples, "process", "boot_ms", "first_200", &[3.0, 3.4, 3.2], "ms");
    push_reps(
        &mut samples,
        "process",
        "memory_mib",
        "instance",
        &[2.25, 2.25, 2.3],
        "MiB",
    );
    push_reps(
        &mut samples,
        "process",
        "memory_mib",
        "total",
        &[2.25, 2.25, 2.3],
        "MiB",
    );
    push_reps(
        &mut samples,
        "process",
        "memory_overhead_mib",
        "",
        &[0.0, 0.0, 0.0],
        "MiB",
    );
    push_reps(&mut samples, "process", "image_mib", "uncompressed", &[3.1], "MiB");
    push_load(&mut samples, "process", [0.21, 0.35, 0.9, 2.1, 4.0]);

    for (model, boot, overhead, image) in [
        ("distroless", [400.0, 410.0, 420.0], [3.5, 3.6, 3.4], 8.2),
        ("fat-image", [1150.0, 1200.0, 1300.0], [45.0, 46.0, 44.0], 420.0),
    ] {
        push_reps(&mut samples, model, "boot_ms", "create", &boot.map(|b| b * 0.3), "ms");
        push_reps(&mut samples, model, "boot_ms", "start", &boot.map(|b| b * 0.8), "ms");
        push_reps(
            &mut samples,
            model,
            "boot_ms",
            "first_accept",
            &boot.map(|b| b - 5.0),
            "ms",
        );
        push_reps(&mut samples, model, "boot_ms", "first_200", &boot, "ms");
        push_reps(
            &mut samples,
            model,
            "memory_mib",
            "instance",
            &overhead.map(|o| o + 1.0),
            "MiB",
        );
        push_reps(&mut samples, model, "memory_mib", "runtime", &[3.0, 3.0, 3.0], "MiB");
        push_reps(
            &mut samples,
            model,
            "memory_mib",
            "total",
            &overhead.map(|o| o + 2.25),
            "MiB",
        );
        push_reps(&mut samples, model, "memory_overhead_mib", "", &overhead, "MiB");
        push_reps(&mut samples, model, "image_mib", "uncompressed", &[image], "MiB");
        push_load(&mut samples, model, [0.3, 0.5, 1.4, 3.3, 6.0]);
    }
    push_pulls(&mut samples);
    samples.push(Sample::new("distroless", "errors", "timeout", 0, 2.0, "count"));

    push_reps(
        &mut samples,
        "vm (tcg)",
        "boot_ms",
        "first_200",
        &[61_000.0, 62_000.0, 64_000.0],
        "ms",
    );
    push_reps(
        &mut samples,
        "vm (tcg)",
        "memory_overhead_mib",
        "",
        &[300.0, 310.0, 305.0],
        "MiB",
    );
    push_reps(&mut samples, "vm (tcg)", "image_mib", "uncompressed", &[1900.0], "MiB");
    samples.push(Sample::new("vm (tcg)", "pull_ms", "cold", 0, 5300.0, "ms"));
    samples.push(Sample::new("vm (tcg)", "serial_lines", "", 0, 412.0, "lines"));
    samples
}

fn synthetic_meta(complete: bool) -> RunMeta {
    let outcome = |model: &str, status: &str, reason: &str| ModelOutcome {
        model: model.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
    };
    RunMeta {
        deploybench_version: "0.1.0".to_string(),
        scenario_name: "synthetic".to_string(),
        started_at: "2025-01-02T03:04:05Z".to_string(),
        complete,
        incomplete_reason: (!complete).then(|| "interrupted by SIGINT during the load phase".to_string()),
        host: HostContext {
            cpu_model: "Test CPU".to_string(),
            cpu_count: 8,
            memory_total_bytes: 16 << 30,
            kernel: "6.1.0".to_string(),
            os: "Debian GNU/Linux 12 (bookworm)".to_string(),
            cgroup_version: "v2".to_string(),
        },
        engine: Some(EngineContext {
            docker_version: "24.0.7".to_string(),
            api_version: "1.43".to_string(),
            default_runtime: "runc".to_string(),
            ..EngineContext::default()
        }),
        models: vec![
            outcome("process", "measured", ""),
            outcome("distroless", "measured", ""),
            outcome("fat-image", "measured", ""),
            outcome("vm (tcg)", "measured", ""),
            outcome("function", "skipped", "the scale-to-zero gateway is not built"),
        ],
        checks: vec![CheckRecord {
            model: "distroless".to_string(),
            check: "read-only root filesystem".to_string(),
            passed: true,
            detail: "write to / failed with EROFS".to_string(),
        }],
        ..RunMeta::default()
    }
}

fn write_run(folder: &Path, samples: &[Sample], meta: &RunMeta) {
    write_samples(folder, samples).unwrap();
    write_summaries(folder, &summarize(samples)).unwrap();
    write_meta(folder, meta).unwrap();
}

fn report_text(folder: &Path) -> String {
    std::fs::read_to_string(folder.join(REPORT_FILE)).unwrap()
}

/// Returns the key-findings table row whose model cell is `model`.
fn findings_row(report: &str, model: &str) -> String {
    let cell = format!(" | {model} | ");
    report
        .lines()
        .find(|line| line.starts_with("| ") && line.contains(&cell))
        .unwrap_or_else(|| panic!("no row for {model} in:\n{report}"))
        .to_string()
}

#[test]
fn report_writes_all_plot_files() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));

    let files = write_report(folder.path()).unwrap();

    assert!(files.skipped.is_empty(), "{:?}", files.skipped);
    assert_eq!(files.plots.len(), PLOT_NAMES.len() * 2);
    assert_eq!(files.report, folder.path().join(REPORT_FILE));
    for name in PLOT_NAMES {
        for extension in ["png", "svg"] {
            let path = folder.path().join(format!("{name}.{extension}"));
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            assert!(bytes.len() > 1000, "{} has only {} bytes", path.display(), bytes.len());
            assert!(
                files.plots.contains(&path),
                "{} missing from {:?}",
                path.display(),
                files.plots
            );
            if extension == "png" {
                assert!(bytes.starts_with(PNG_SIGNATURE), "{} is not a PNG", path.display());
            } else {
                assert!(bytes.starts_with(b"<svg"), "{} is not an SVG", path.display());
            }
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

#[test]
fn report_has_key_findings_rows() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    assert!(
        report.starts_with("# deploybench run: synthetic, started 2025-01-02T03:04:05Z\n"),
        "{report}"
    );
    assert!(report.contains("## Key findings"), "{report}");
    assert!(
        report.contains("| Approach | Model | Boot time measured (median, p95) |"),
        "{report}"
    );
    assert!(findings_row(&report, "vm (tcg)").starts_with("| Traditional VMs |"));
    assert!(findings_row(&report, "distroless").starts_with("| Docker Containers |"));
    assert!(findings_row(&report, "fat-image").starts_with("| Docker Containers |"));
    assert!(findings_row(&report, "function").starts_with("| Serverless Functions |"));
    assert!(findings_row(&report, "process").starts_with("| Bare process (floor) |"));
    assert!(!report.contains("This run is incomplete"), "{report}");
    assert!(
        report.contains("ran under TCG"),
        "a TCG vm row needs the emulation note: {report}"
    );
}

#[test]
fn findings_rows_follow_article_order() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    let position = |model: &str| report.find(&findings_row(&report, model)).unwrap();
    assert!(position("vm (tcg)") < position("distroless"));
    assert!(position("distroless") < position("fat-image"));
    assert!(position("fat-image") < position("function"));
    assert!(position("function") < position("process"));
}

#[test]
fn absent_model_not_measured_with_reason() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    let function = findings_row(&report, "function");
    assert!(
        function.contains("not measured in this run (skipped: the scale-to-zero gateway is not built)"),
        "{function}"
    );
    assert!(function.contains("100+ a day"), "{function}");
}

#[test]
fn missing_vm_gets_placeholder_row() {
    let folder = tempfile::tempdir().unwrap();
    let samples: Vec<Sample> = synthetic_samples()
        .into_iter()
        .filter(|s| !s.model.starts_with("vm"))
        .collect();
    let mut meta = synthetic_meta(true);
    meta.models.retain(|outcome| !outcome.model.starts_with("vm"));
    write_run(folder.path(), &samples, &meta);
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    let vm = findings_row(&report, "vm");
    assert!(vm.starts_with("| Traditional VMs |"), "{vm}");
    assert!(vm.contains("not measured in this run"), "{vm}");
    assert!(vm.contains("45–120 s"), "{vm}");
    assert!(vm.contains("1.2–1.8 GB (1144–1717 MiB)"), "{vm}");
}

#[test]
fn measured_figures_and_verdicts_in_row() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    let distroless = findings_row(&report, "distroless");
    assert!(distroless.contains("410 ms (p95 419 ms, n 3)"), "{distroless}");
    assert!(distroless.contains("0.5–3 s"), "{distroless}");
    assert!(distroless.contains("15–30 MB (14.3–28.6 MiB)"), "{distroless}");
    assert!(distroless.contains("boot below the claimed range"), "{distroless}");
    assert!(distroless.contains("memory below the claimed range"), "{distroless}");

    let fat_image = findings_row(&report, "fat-image");
    assert!(fat_image.contains("1.20 s"), "{fat_image}");
    assert!(fat_image.contains("boot inside the claimed range"), "{fat_image}");
    assert!(fat_image.contains("memory above the claimed range"), "{fat_image}");

    let vm = findings_row(&report, "vm (tcg)");
    assert!(vm.contains("62.0 s"), "{vm}");
    assert!(vm.contains("boot inside the claimed range"), "{vm}");
    assert!(vm.contains("memory below the claimed range"), "{vm}");

    let process = findings_row(&report, "process");
    assert!(
        process.contains("0 MiB (n 3), the floor: its median RSS of 2.25 MiB is subtracted"),
        "{process}"
    );
    assert!(process.contains("floor, no claim"), "{process}");
}

#[test]
fn disagreements_list_numbers() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    let start = report
        .find("## Where we disagree with the report")
        .expect("section missing");
    let end = report.find("## Measurements").expect("measurements missing");
    let section = &report[start..end];
    assert!(
        section.contains(
            "- distroless boots in a median 410 ms (p95 419 ms, n 3), below the claimed 0.5–3 s for Docker Containers."
        ),
        "{section}"
    );
    assert!(
        section
            .contains("- fat-image adds a median 45.0 MiB of memory over the bare process, above the claimed 15–30 MB"),
        "{section}"
    );
    let inside = section.find("Inside the claimed range:").expect("agreements missing");
    let fat_image_boot = section
        .find("fat-image boots in a median 1.20 s")
        .expect("fat-image boot missing");
    assert!(fat_image_boot > inside, "{section}");
}

#[test]
fn verdict_places_values_exactly() {
    let (low, high) = CONTAINER_CLAIM.boot_ms;
    assert_eq!((low, high), (500.0, 3000.0));
    assert_eq!(place(410.0, low, high), Placement::Below);
    assert_eq!(place(499.999, low, high), Placement::Below);
    assert_eq!(place(500.0, low, high), Placement::Inside);
    assert_eq!(place(1200.0, low, high), Placement::Inside);
    assert_eq!(place(3000.0, low, high), Placement::Inside);
    assert_eq!(place(3000.001, low, high), Placement::Above);
    assert_eq!(place(0.0, 0.0, 0.0), Placement::Inside);
    assert_eq!(place(0.5, 0.0, 0.0), Placement::Above);
    assert_eq!(place(150.0, 100.0, f64::INFINITY), Placement::Inside);
}

#[test]
fn memory_claim_converted_to_mib() {
    let (low, high) = CONTAINER_CLAIM.memory_mib();
    assert_eq!(low, 15e6 / BYTES_PER_MIB);
    assert_eq!(high, 30e6 / BYTES_PER_MIB);
    assert!((low - 14.305).abs() < 0.001, "{low}");
}

#[test]
fn report_omits_pull_sections_without_pulls() {
    let folder = tempfile::tempdir().unwrap();
    let with_pulls = synthetic_samples();
    assert!(with_pulls.iter().any(|sample| sample.metric == "pull_ms"));
    let without: Vec<Sample> = with_pulls.into_iter().filter(|sample| sample.metric != "pull_ms").collect();
    write_run(folder.path(), &without, &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());
    assert!(!report.contains("### Pull latency"), "{report}");
    assert!(!report.contains("### Pull time against the 80% claim"), "{report}");
    assert!(report.contains("### Boot phases"), "{report}");
}

#[test]
fn failed_repetitions_are_listed_with_step_and_reason() {
    let folder = tempfile::tempdir().unwrap();
    let mut meta = synthetic_meta(true);
    meta.failures = vec![FailureRecord {
        model: "distroless".to_string(),
        repetition: 2,
        stage: "measure".to_string(),
        reason: "cgroup gone; the Docker engine did not respond for 4.2 s during this repetition".to_string(),
    }];
    write_run(folder.path(), &synthetic_samples(), &meta);
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    assert!(report.contains("1 repetition(s) failed"), "{report}");
    assert!(
        report.contains(
            "| distroless | 3 | measure | cgroup gone; the Docker engine did not respond for 4.2 s during this repetition |"
        ),
        "{report}"
    );

    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    assert!(report_text(folder.path()).contains("No repetition failed."));
}

#[test]
fn incomplete_run_says_so() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(false));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    let second_block = report.lines().nth(2).unwrap_or_default();
    assert_eq!(
        second_block,
        "> **This run is incomplete: interrupted by SIGINT during the load phase.** The tables below show only what the run stored before it stopped."
    );
}

#[test]
fn incomplete_run_without_samples() {
    let folder = tempfile::tempdir().unwrap();
    write_meta(folder.path(), &synthetic_meta(false)).unwrap();

    let files = write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    assert!(report.contains("This run is incomplete"), "{report}");
    assert!(report.contains("samples.csv is missing"), "{report}");
    assert!(
        report.contains("This run measured no figure that the article makes a claim about."),
        "{report}"
    );
    assert!(
        findings_row(&report, "distroless").contains("not measured in this run"),
        "{report}"
    );
    assert_eq!(files.plots.len(), PLOT_NAMES.len() * 2, "{files:?}");
}

#[test]
fn missing_font_skips_png_only() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));

    let font = folder.path().join("no-such-font.ttf");
    let files = write_report_with_font(folder.path(), &font).unwrap();

    assert_eq!(files.skipped.len(), 1, "{:?}", files.skipped);
    assert!(files.skipped[0].contains("no-such-font.ttf"), "{}", files.skipped[0]);
    assert_eq!(files.plots.len(), PLOT_NAMES.len(), "{:?}", files.plots);
    for name in PLOT_NAMES {
        assert!(folder.path().join(format!("{name}.svg")).exists(), "{name}.svg missing");
        assert!(
            !folder.path().join(format!("{name}.png")).exists(),
            "{name}.png written"
        );
    }
    let report = report_text(folder.path());
    assert!(report.contains("![boot time](boot_ms.svg)"), "{report}");
    assert!(report.contains("PNG plots skipped"), "{report}");
}

#[test]
fn missing_font_empty_run_svgs() {
    let folder = tempfile::tempdir().unwrap();
    write_meta(folder.path(), &synthetic_meta(false)).unwrap();

    let font = folder.path().join("no-such-font.ttf");
    let files = write_report_with_font(folder.path(), &font).unwrap();

    assert_eq!(files.plots.len(), PLOT_NAMES.len(), "{:?}", files.plots);
    let svg = std::fs::read_to_string(folder.path().join("boot_ms.svg")).unwrap();
    assert!(svg.contains("The run stored no boot_ms first_200 samples."), "{svg}");
}

#[test]
fn report_links_png_plots() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    assert!(report.contains("![boot time](boot_ms.png)"), "{report}");
    assert!(
        report.contains("![memory overhead](memory_overhead_mib.png)"),
        "{report}"
    );
    assert!(report.contains("![latency percentiles](latency_ms.png)"), "{report}");
    assert!(report.contains("![image size](image_mib.png)"), "{report}");
}

#[test]
fn metric_tables_show_spread_and_load() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    assert!(
        report.contains("| distroless | first_200 | ms | 3 | 410 | 419 | 400–420 | 400–420 |"),
        "{report}"
    );
    assert!(
        report.contains("| process | uncompressed | MiB | 1 | 3.10 | — | — | — |"),
        "{report}"
    );
    assert!(report.contains("| fat-image | overhead | MiB | 3 | 45.0 |"), "{report}");
    assert!(
        report.contains("| distroless | 200 | 200 | 0.300 | 0.500 | 1.40 | 3.30 | 6.00 | 1.12 |"),
        "{report}"
    );
    assert!(
        report.contains("| distroless | 5988 | timeout: 2 | 41.5 | 0.830 | 3.10 |"),
        "{report}"
    );
    assert!(report.contains("| process | 5988 | none recorded |"), "{report}");
    assert!(report.contains("### Other metrics"), "{report}");
    assert!(
        report.contains("| vm (tcg) | serial_lines | lines | 1 | 412 |"),
        "{report}"
    );
    assert!(
        report.contains("phase is not `KIND/LINK/METHOD`, from an older run: vm (tcg) cold 5.30 s."),
        "{report}"
    );
    assert!(
        report.contains("| distroless | read-only root filesystem | passed |"),
        "{report}"
    );
    assert!(
        report.contains("| function | **skipped** | the scale-to-zero gateway is not built |"),
        "{report}"
    );
    assert!(report.contains("| Docker version | 24.0.7 |"), "{report}");
}

#[test]
fn missing_run_json_names_path() {
    let folder = tempfile::tempdir().unwrap();
    let error = write_report(folder.path()).unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("cannot load the run folder"), "{message}");
    assert!(
        message.contains(&folder.path().join("run.json").display().to_string()),
        "{message}"
    );
}

#[test]
fn number_format_three_digits() {
    assert_eq!(format::number(0.41234), "0.412");
    assert_eq!(format::number(3.1), "3.10");
    assert_eq!(format::number(45.04), "45.0");
    assert_eq!(format::number(412.4), "412");
    assert_eq!(format::number(45_210.0), "45210");
    assert_eq!(format::number(0.0), "0");
    assert_eq!(format::number(-0.0001), "-0.000100");
    assert_eq!(format::duration_ms(412.0), "412 ms");
    assert_eq!(format::duration_ms(1250.0), "1.25 s");
    assert_eq!(format::duration_ms(62_000.0), "62.0 s");
    assert_eq!(format::range(0.5, 3.0), "0.5–3");
    assert_eq!(format::range(100.0, f64::INFINITY), "100+");
    assert_eq!(format::count(2.0), "2");
}

#[test]
fn scale_log_only_for_wide_ranges() {
    assert!(!wants_log(&[400.0, 1300.0]));
    assert!(wants_log(&[3.0, 62_000.0]));
    assert!(!wants_log(&[-1.0, 3.0, 62_000.0]));
    assert!(!wants_log(&[0.0, 0.0]));

    let log = Scale::fit(&[3.0, 62_000.0], true);
    let ticks: Vec<String> = log.ticks().iter().map(|tick| log.label(*tick)).collect();
    assert_eq!(ticks.first().map(String::as_str), Some("10"), "{ticks:?}");
    assert!(ticks.contains(&"10000".to_string()), "{ticks:?}");

    let linear = Scale::fit(&[400.0, 1300.0], false);
    assert_eq!(linear.low, 0.0);
    let labels: Vec<String> = linear.ticks().iter().map(|tick| linear.label(*tick)).collect();
    assert_eq!(labels.first().map(String::as_str), Some("0"), "{labels:?}");
    assert!(labels.contains(&"1000".to_string()), "{labels:?}");
}

#[test]
fn svg_text_size_without_font() {
    let mut text = String::new();
    let backend = FontFreeSvg(SVGBackend::with_string(&mut text, (100, 100)));
    let style = TextStyle::from(("deploybench-no-such-font", 24.8).into_font());

    let size = backend.estimate_text_size("abcd", &style).unwrap();

    assert_eq!(size, estimate_text_size("abcd", 24.8));
    assert_eq!(size, (48, 20));
}

#[test]
fn pull_table_shows_links_and_methods() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    assert!(report.contains("### Pull latency"), "{report}");
    assert!(
        report.contains("| distroless | unshaped (loopback) | 8.20 | 3.00 | 100 ms (p95 109 ms, n 3) | 1.50 | 40.0 ms (p95 40.9 ms, n 3) | measured |"),
        "{report}"
    );
    assert!(
        report.contains("| fat-image | cloud-100m | 420 | 150 | 6.00 s (p95 6.09 s, n 3) | 1.50 | — | applied bandwidth + computed delay |"),
        "{report}"
    );
}

#[test]
fn pull_claim_reduction_per_link() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    assert!(
        report.contains("| unshaped (loopback) | 1.00 s | 100 ms | 90.0% | 80% | at least the claimed reduction |"),
        "{report}"
    );
    assert!(
        report.contains("| cloud-100m | 6.00 s | 300 ms | 95.0% | 80% | at least the claimed reduction |"),
        "{report}"
    );
    assert!(report.contains("(763 MiB to 47.7 MiB)"), "{report}");
}

#[test]
fn deploy_cycle_gives_deploys_a_day() {
    let folder = tempfile::tempdir().unwrap();
    write_run(folder.path(), &synthetic_samples(), &synthetic_meta(true));
    write_report(folder.path()).unwrap();
    let report = report_text(folder.path());

    // 86 400 s / 60 s = 1440 deploys a day, above the claimed 20–50 for containers.
    assert!(
        report.contains("| distroless | 60.0 (p95 60.9, n 3) | 58.0 | — | — | — | — | 2.00 | 1440 | 20–50 a day | ceiling above the claimed frequency |"),
        "{report}"
    );
    assert!(
        findings_row(&report, "distroless").contains("at most 1440 a day (cycle median 60.0 s)"),
        "{report}"
    );
}
