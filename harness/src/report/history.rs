//! Trend plots of the gated figures over every run in `results/history.csv`.

use std::path::{Path, PathBuf};

use super::plots::{write_plot_set, Figure, Line, Plot, ScaleRule, PALETTE};
use super::{format, ReportError};
use crate::results::history::{read_history, HistoryRow};

/// The figures plotted: file name, metric, phase, title.
const TRENDS: [(&str, &str, &str, &str); 5] = [
    ("history_boot_ms", "boot_ms", "first_200", "Boot time to first 200 per run, median (ms)"),
    ("history_memory_overhead_mib", "memory_overhead_mib", "", "Idle memory overhead per run, median (MiB)"),
    ("history_image_mib", "image_mib", "uncompressed", "Image size per run (MiB)"),
    ("history_cpu_ms_per_1k_req", "cpu_ms_per_1k_req", "instance", "CPU per 1000 requests per run (ms)"),
    ("history_latency_p99_ms", "latency_ms", "p99", "Latency p99 under load per run (ms)"),
];

/// Writes one trend plot per gated figure into `folder`; returns the files written.
pub fn write_history_plots(history: &Path, folder: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let rows = read_history(history).map_err(|source| ReportError::Load { folder: history.to_path_buf(), source })?;
    std::fs::create_dir_all(folder).map_err(|source| ReportError::Write { path: folder.to_path_buf(), source })?;
    let plots = trend_plots(&rows);
    let files = write_plot_set(&plots, folder, Path::new(super::FONT_PATH))?;
    for reason in &files.skipped {
        eprintln!("deploybench: {reason}");
    }
    Ok(files.written)
}

/// Builds the trend plots: runs in file order on the x-axis, one line per model.
fn trend_plots(rows: &[HistoryRow]) -> Vec<Plot> {
    let mut runs: Vec<&str> = Vec::new();
    for row in rows {
        if !runs.contains(&row.run.as_str()) {
            runs.push(&row.run);
        }
    }
    let mut models: Vec<&str> = Vec::new();
    for row in rows {
        if !models.contains(&row.model.as_str()) {
            models.push(&row.model);
        }
    }
    TRENDS
        .iter()
        .map(|&(name, metric, phase, title)| {
            let series = models
                .iter()
                .enumerate()
                .map(|(index, model)| Line {
                    label: model.to_string(),
                    color: PALETTE[index % PALETTE.len()],
                    values: runs
                        .iter()
                        .map(|run| {
                            rows.iter()
                                .find(|r| r.run == *run && r.model == *model && r.metric == metric && r.phase == phase)
                                .map(|r| r.median)
                        })
                        .collect(),
                })
                .filter(|line| line.values.iter().any(Option::is_some))
                .collect();
            Plot {
                name,
                title: title.to_string(),
                y_label: format!("{metric} {phase}").trim().to_string(),
                figure: Figure::Lines { categories: runs.iter().map(|run| short_run_name(run)).collect(), series },
                scale: ScaleRule::Auto,
                value_label: format::number,
                empty_message: format!("The history holds no {metric} {phase} figures.").replace("  ", " "),
            }
        })
        .collect()
}

/// The run's UTC time in a compact form, from names like `20260101T120000Z-quick`.
fn short_run_name(run: &str) -> String {
    match run.split_once('-') {
        Some((time, scenario)) if time.len() == 16 && time.is_ascii() => {
            format!("{}-{} {}:{} {scenario}", &time[4..6], &time[6..8], &time[9..11], &time[11..13])
        }
        _ => run.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, model: &str, median: f64) -> HistoryRow {
        HistoryRow {
            run: run.into(),
            started_at: String::new(),
            git_revision: String::new(),
            scenario: "quick".into(),
            complete: true,
            model: model.into(),
            metric: "boot_ms".into(),
            phase: "first_200".into(),
            unit: "ms".into(),
            n: 5,
            median,
            p95: median,
            min: median,
            max: median,
        }
    }

    #[test]
    fn trend_has_run_per_category() {
        let rows = vec![
            row("20261204T100000Z-quick", "process", 2.0),
            row("20261204T110000Z-quick", "process", 3.0),
            row("20261204T110000Z-quick", "distroless", 300.0),
        ];
        let plots = trend_plots(&rows);
        let Figure::Lines { categories, series } = &plots[0].figure else { panic!("boot trend is a line plot") };
        assert_eq!(categories, &vec!["12-04 10:00 quick".to_string(), "12-04 11:00 quick".to_string()]);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].values, vec![Some(2.0), Some(3.0)]);
        assert_eq!(series[1].values, vec![None, Some(300.0)]);
    }

    #[test]
    fn history_plots_written() {
        let folder = tempfile::tempdir().unwrap();
        let history = folder.path().join("history.csv");
        let rows = vec![row("20261204T100000Z-quick", "process", 2.0), row("20261204T110000Z-quick", "process", 3.0)];
        std::fs::write(&history, crate::results::to_csv(&rows).unwrap()).unwrap();
        let written = write_history_plots(&history, &folder.path().join("trends")).unwrap();
        assert!(written.iter().any(|path| path.ends_with("history_boot_ms.svg")), "{written:?}");
        for path in &written {
            assert!(std::fs::metadata(path).unwrap().len() > 100, "{}", path.display());
        }
    }
}
