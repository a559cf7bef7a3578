//! `results/history.csv`: one row per summary of every run, appended as runs finish,
//! so trends across runs can be plotted without keeping every run folder.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{write_atomic, ResultsError, RunMeta, Summary};

/// One summary of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub run: String,
    pub started_at: String,
    pub git_revision: String,
    pub scenario: String,
    pub complete: bool,
    pub model: String,
    pub metric: String,
    pub phase: String,
    pub unit: String,
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

/// Appends the run's summaries to the history file, creating it when missing. The
/// whole file is rewritten through a rename, so a crash never leaves half a row.
pub fn append_history(path: &Path, run: &str, meta: &RunMeta, summaries: &[Summary]) -> Result<(), ResultsError> {
    let mut rows = if path.exists() { read_history(path)? } else { Vec::new() };
    rows.retain(|row| row.run != run);
    rows.extend(summaries.iter().map(|summary| HistoryRow {
        run: run.to_string(),
        started_at: meta.started_at.clone(),
        git_revision: meta.git_revision.clone().unwrap_or_default(),
        scenario: meta.scenario_name.clone(),
        complete: meta.complete,
        model: summary.model.clone(),
        metric: summary.metric.clone(),
        phase: summary.phase.clone(),
        unit: summary.unit.clone(),
        n: summary.n,
        median: summary.median,
        p95: summary.p95,
        min: summary.min,
        max: summary.max,
    }));
    let bytes = super::to_csv(&rows).map_err(|error| ResultsError::Parse {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|source| ResultsError::Write { path: folder.to_path_buf(), source })?;
    }
    write_atomic(path, &bytes)
}

pub fn read_history(path: &Path) -> Result<Vec<HistoryRow>, ResultsError> {
    super::read_csv(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(model: &str, median: f64) -> Summary {
        Summary {
            model: model.into(),
            metric: "boot_ms".into(),
            phase: "first_200".into(),
            unit: "ms".into(),
            n: 5,
            median,
            p95: median,
            mean: median,
            stddev: 0.0,
            min: median,
            max: median,
            ci95_low: median,
            ci95_high: median,
        }
    }

    #[test]
    fn appends_and_replaces_same_run() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("sub/history.csv");
        let meta = RunMeta { scenario_name: "quick".into(), complete: true, ..Default::default() };
        append_history(&path, "run-1", &meta, &[summary("process", 2.0)]).unwrap();
        append_history(&path, "run-2", &meta, &[summary("process", 3.0), summary("distroless", 300.0)]).unwrap();
        append_history(&path, "run-2", &meta, &[summary("process", 4.0)]).unwrap();
        let rows = read_history(&path).unwrap();
        let runs: Vec<(&str, f64)> = rows.iter().map(|row| (row.run.as_str(), row.median)).collect();
        assert_eq!(runs, vec![("run-1", 2.0), ("run-2", 4.0)]);
        assert_eq!(rows[0].scenario, "quick");
    }
}
