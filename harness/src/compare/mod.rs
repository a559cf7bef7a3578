//! Regression checks of a run against a baseline.
//!
//! A figure regresses only when its median leaves a band (a percentage and an
//! absolute floor) in the worse direction and, for figures that vary between runs,
//! the Mann-Whitney test on the raw samples rejects "no change" at `policy::ALPHA`.
//! Noise alone therefore does not fail a build.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

pub mod baseline;
pub mod mann_whitney;
pub mod policy;

pub use baseline::{Baseline, BaselineError, Series};
use policy::{Direction, Threshold};

/// Verdict on one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regressed,
    Improved,
    Unchanged,
    /// Present in only one of the two, or not a gated figure.
    NotCompared,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub model: String,
    pub metric: String,
    pub phase: String,
    pub unit: String,
    pub baseline_median: Option<f64>,
    pub current_median: Option<f64>,
    pub baseline_n: usize,
    pub current_n: usize,
    /// Relative change of the median, in percent.
    pub change_percent: Option<f64>,
    pub p_value: Option<f64>,
    pub verdict: Verdict,
    /// Reason for the verdict, in a few words.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline_runs: Vec<String>,
    pub run: String,
    pub rows: Vec<Row>,
}

impl Comparison {
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|row| row.verdict == Verdict::Regressed)
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(crate::results::quantile(&sorted, 0.5))
}

/// Compares the series of a run with those of a baseline.
pub fn compare(baseline: &Baseline, run_name: &str, current: &[Series]) -> Comparison {
    let mut rows = Vec::new();
    for series in current {
        let before = baseline.series.iter().find(|b| {
            b.model == series.model && b.metric == series.metric && b.phase == series.phase && b.unit == series.unit
        });
        rows.push(judge(before, series));
    }
    for before in &baseline.series {
        let still_there = current.iter().any(|c| {
            c.model == before.model && c.metric == before.metric && c.phase == before.phase && c.unit == before.unit
        });
        if !still_there && policy::threshold(&before.metric, &before.phase).is_some() {
            rows.push(Row {
                model: before.model.clone(),
                metric: before.metric.clone(),
                phase: before.phase.clone(),
                unit: before.unit.clone(),
                baseline_median: median(&before.samples),
                current_median: None,
                baseline_n: before.samples.len(),
                current_n: 0,
                change_percent: None,
                p_value: None,
                verdict: Verdict::NotCompared,
                reason: "missing from the run".to_string(),
            });
        }
    }
    Comparison { baseline_runs: baseline.runs.clone(), run: run_name.to_string(), rows }
}

fn judge(before: Option<&Series>, current: &Series) -> Row {
    let mut row = Row {
        model: current.model.clone(),
        metric: current.metric.clone(),
        phase: current.phase.clone(),
        unit: current.unit.clone(),
        baseline_median: before.and_then(|b| median(&b.samples)),
        current_median: median(&current.samples),
        baseline_n: before.map_or(0, |b| b.samples.len()),
        current_n: current.samples.len(),
        change_percent: None,
        p_value: None,
        verdict: Verdict::NotCompared,
        reason: String::new(),
    };
    let (Some(before), Some(old), Some(new)) = (before, row.baseline_median, row.current_median) else {
        row.reason = "not in the baseline".to_string();
        return row;
    };
    if old != 0.0 {
        row.change_percent = Some((new - old) / old.abs() * 100.0);
    }
    let Some(threshold) = policy::threshold(&current.metric, &current.phase) else {
        row.reason = "reported, not gated".to_string();
        return row;
    };
    let p = mann_whitney::p_value(&before.samples, &current.samples);
    row.p_value = Some(p);
    (row.verdict, row.reason) = decide(&threshold, old, new, p);
    row
}

/// Applies the band and the significance test to two medians.
fn decide(threshold: &Threshold, old: f64, new: f64, p: f64) -> (Verdict, String) {
    let worse_by = match threshold.direction {
        Direction::HigherIsWorse => new - old,
        Direction::LowerIsWorse => old - new,
    };
    let band = (old.abs() * threshold.percent / 100.0).max(threshold.floor);
    if worse_by.abs() <= band {
        return (
            Verdict::Unchanged,
            format!("within the band of ±{}% or ±{}, whichever is wider", threshold.percent, threshold.floor),
        );
    }
    if threshold.needs_significance && p >= policy::ALPHA {
        return (Verdict::Unchanged, format!("outside the band but not significant (p = {p:.3})"));
    }
    if worse_by > 0.0 {
        (Verdict::Regressed, format!("worse by more than {}% and {}", threshold.percent, threshold.floor))
    } else {
        (Verdict::Improved, format!("better by more than {}% and {}", threshold.percent, threshold.floor))
    }
}

fn figure(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.4}").trim_end_matches('0').trim_end_matches('.').to_string())
}

/// Renders a markdown summary: regressions first, then improvements, then the rest.
pub fn to_markdown(comparison: &Comparison) -> String {
    let mut text = String::new();
    let count = |verdict| comparison.rows.iter().filter(|row| row.verdict == verdict).count();
    let _ = writeln!(text, "## deploybench compare: {}", comparison.run);
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "Baseline from {} run(s). {} regressed, {} improved, {} unchanged, {} not compared.",
        comparison.baseline_runs.len(),
        count(Verdict::Regressed),
        count(Verdict::Improved),
        count(Verdict::Unchanged),
        count(Verdict::NotCompared)
    );
    for (title, verdict) in [
        ("Regressed", Verdict::Regressed),
        ("Improved", Verdict::Improved),
        ("Unchanged", Verdict::Unchanged),
    ] {
        let rows: Vec<&Row> = comparison.rows.iter().filter(|row| row.verdict == verdict).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(text, "\n### {title}\n");
        let _ = writeln!(text, "| Model | Metric | Phase | Baseline median (n) | Run median (n) | Change | p | Why |");
        let _ = writeln!(text, "| --- | --- | --- | --- | --- | --- | --- | --- |");
        for row in rows {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} {} ({}) | {} {} ({}) | {} | {} | {} |",
                row.model,
                row.metric,
                row.phase,
                figure(row.baseline_median),
                row.unit,
                row.baseline_n,
                figure(row.current_median),
                row.unit,
                row.current_n,
                row.change_percent.map_or_else(|| "—".to_string(), |c| format!("{c:+.1}%")),
                row.p_value.map_or_else(|| "—".to_string(), |p| format!("{p:.3}")),
                row.reason
            );
        }
    }
    text
}

/// The run's medians in Bencher Metric Format (also read by github-action-benchmark's
/// custom JSON importers after a flattening step): `{ "model/metric/phase": { "metric":
/// { "value", "lower_value", "upper_value" } } }` with min and max as the bounds.
pub fn to_bencher_json(current: &[Series]) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    for series in current {
        let Some(value) = median(&series.samples) else { continue };
        let lower = series.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let upper = series.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let name = if series.phase.is_empty() {
            format!("{}/{}", series.model, series.metric)
        } else {
            format!("{}/{}/{}", series.model, series.metric, series.phase)
        };
        root.insert(
            name,
            serde_json::json!({ series.metric.clone(): { "value": value, "lower_value": lower, "upper_value": upper } }),
        );
    }
    serde_json::Value::Object(root)
}

/// Loads a baseline and a run folder and compares them.
/// Rejects an incomplete run and a run of another scenario than the baseline's.
pub fn compare_run(baseline_path: &Path, run: &Path) -> Result<(Comparison, Vec<Series>), BaselineError> {
    let baseline = Baseline::load(baseline_path)?;
    let meta = baseline::complete_meta(run)?;
    if let Some(expected) = baseline.scenario.as_ref().filter(|&expected| *expected != meta.scenario_name) {
        return Err(BaselineError::OtherScenario {
            path: run.to_path_buf(),
            found: meta.scenario_name,
            expected: expected.clone(),
        });
    }
    let samples = crate::results::read_samples(run)
        .map_err(|source| BaselineError::Run { path: run.to_path_buf(), source })?;
    let current = baseline::series_of(&samples);
    let name = run.file_name().map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok((compare(&baseline, &name, &current), current))
}

/// File name of the bencher JSON that `compare` writes into the run folder by default.
pub const BENCHER_FILE: &str = "bencher.json";

/// Compares a run with a baseline, prints the markdown summary to stdout, and writes
/// the run's medians as bencher JSON to `json` (default: `RUN/bencher.json`).
/// Returns true when nothing regressed.
pub fn run_compare(baseline: &Path, run: &Path, json: Option<&Path>) -> Result<bool, BaselineError> {
    let (comparison, current) = compare_run(baseline, run)?;
    print!("{}", to_markdown(&comparison));
    let json_path = json.map_or_else(|| run.join(BENCHER_FILE), Path::to_path_buf);
    let mut bytes = serde_json::to_vec_pretty(&to_bencher_json(&current)).expect("JSON values always serialize");
    bytes.push(b'\n');
    crate::results::write_atomic(&json_path, &bytes)
        .map_err(|source| BaselineError::Write { path: json_path.clone(), source })?;
    // A run without the gated figures can neither pass nor fail, so it is an error.
    let missing: Vec<&Row> = comparison.rows.iter().filter(|row| row.current_n == 0 && row.baseline_n > 0).collect();
    if let Some(first) = missing.first() {
        return Err(BaselineError::MissingFigures {
            path: run.to_path_buf(),
            count: missing.len(),
            example: format!("{} {} {}", first.model, first.metric, first.phase).trim_end().to_string(),
        });
    }
    let passed = comparison.regressions().next().is_none();
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(model: &str, metric: &str, phase: &str, samples: &[f64]) -> Series {
        Series {
            model: model.into(),
            metric: metric.into(),
            phase: phase.into(),
            unit: "ms".into(),
            samples: samples.to_vec(),
        }
    }

    fn baseline(series: Vec<Series>) -> Baseline {
        Baseline {
            format: 1,
            created_at: String::new(),
            runs: vec!["a".into()],
            host: String::new(),
            scenario: None,
            series,
        }
    }

    const STEADY: [f64; 10] = [300.0, 310.0, 305.0, 295.0, 320.0, 298.0, 302.0, 315.0, 308.0, 301.0];

    #[test]
    fn same_samples_unchanged() {
        let before = baseline(vec![series("distroless", "boot_ms", "first_200", &STEADY)]);
        let result = compare(&before, "run", &[series("distroless", "boot_ms", "first_200", &STEADY)]);
        assert_eq!(result.rows[0].verdict, Verdict::Unchanged);
        assert_eq!(result.regressions().count(), 0);
    }

    #[test]
    fn much_slower_boot_regresses() {
        let slow: Vec<f64> = STEADY.iter().map(|v| v + 500.0).collect();
        let before = baseline(vec![series("distroless", "boot_ms", "first_200", &STEADY)]);
        let result = compare(&before, "run", &[series("distroless", "boot_ms", "first_200", &slow)]);
        assert_eq!(result.rows[0].verdict, Verdict::Regressed, "{:?}", result.rows[0]);
    }

    #[test]
    fn big_change_without_significance_unchanged() {
        // One sample per side can never be significant, so the band alone cannot fail.
        let before = baseline(vec![series("distroless", "latency_ms", "p99", &[3.0])]);
        let result = compare(&before, "run", &[series("distroless", "latency_ms", "p99", &[30.0])]);
        assert_eq!(result.rows[0].verdict, Verdict::Unchanged);
        assert!(result.rows[0].reason.contains("not significant"), "{}", result.rows[0].reason);
    }

    #[test]
    fn small_significant_shift_inside_band_unchanged() {
        let shifted: Vec<f64> = STEADY.iter().map(|v| v + 30.0).collect();
        let before = baseline(vec![series("distroless", "boot_ms", "first_200", &STEADY)]);
        let result = compare(&before, "run", &[series("distroless", "boot_ms", "first_200", &shifted)]);
        assert_eq!(result.rows[0].verdict, Verdict::Unchanged);
    }

    #[test]
    fn image_growth_regresses_without_test() {
        let before = baseline(vec![series("distroless", "image_mib", "uncompressed", &[3.0])]);
        let result = compare(&before, "run", &[series("distroless", "image_mib", "uncompressed", &[4.0])]);
        assert_eq!(result.rows[0].verdict, Verdict::Regressed);
    }

    #[test]
    fn faster_boot_improves() {
        let fast: Vec<f64> = STEADY.iter().map(|v| v / 4.0).collect();
        let before = baseline(vec![series("distroless", "boot_ms", "first_200", &STEADY)]);
        let result = compare(&before, "run", &[series("distroless", "boot_ms", "first_200", &fast)]);
        assert_eq!(result.rows[0].verdict, Verdict::Improved);
    }

    #[test]
    fn lower_rate_is_worse() {
        let before = baseline(vec![series("process", "achieved_rps", "", &[200.0; 6])]);
        let low = [150.0, 151.0, 149.0, 150.0, 152.0, 148.0];
        let result = compare(&before, "run", &[series("process", "achieved_rps", "", &low)]);
        assert_eq!(result.rows[0].verdict, Verdict::Regressed);
    }

    #[test]
    fn missing_gated_figure_listed() {
        let before = baseline(vec![series("vm", "boot_ms", "first_200", &STEADY)]);
        let result = compare(&before, "run", &[]);
        assert_eq!(result.rows.len(), 1);
        assert_eq!(result.rows[0].verdict, Verdict::NotCompared);
    }

    #[test]
    fn markdown_lists_regressions() {
        let slow: Vec<f64> = STEADY.iter().map(|v| v + 500.0).collect();
        let before = baseline(vec![series("distroless", "boot_ms", "first_200", &STEADY)]);
        let text = to_markdown(&compare(&before, "run", &[series("distroless", "boot_ms", "first_200", &slow)]));
        assert!(text.contains("### Regressed"), "{text}");
        assert!(text.contains("1 regressed"), "{text}");
    }

    #[test]
    fn bencher_json_has_value_and_bounds() {
        let json = to_bencher_json(&[series("distroless", "boot_ms", "first_200", &[1.0, 2.0, 3.0])]);
        let entry = &json["distroless/boot_ms/first_200"]["boot_ms"];
        assert_eq!(entry["value"], 2.0);
        assert_eq!(entry["lower_value"], 1.0);
        assert_eq!(entry["upper_value"], 3.0);
    }
}
