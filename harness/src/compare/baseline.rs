//! Baselines: the raw samples of one or more runs, stored so that `compare` can test
//! a new run against them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::results::{self, Sample};

/// Format version of baseline files; a file of another version is rejected.
pub const BASELINE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub format: u32,
    pub created_at: String,
    /// Folder names of the runs it was built from.
    pub runs: Vec<String>,
    /// CPU model and count of the machine the runs came from.
    pub host: String,
    /// Name of the scenario the runs ran; a run of another scenario is rejected.
    #[serde(default)]
    pub scenario: Option<String>,
    pub series: Vec<Series>,
}

/// Every sample of one model, metric and phase over the baseline's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub model: String,
    pub metric: String,
    pub phase: String,
    pub unit: String,
    pub samples: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read run {path}: {source}")]
    Run {
        path: PathBuf,
        #[source]
        source: results::ResultsError,
    },
    #[error("cannot read baseline {path}: {message}; build one with `deploybench baseline save RUN... --output {path}`")]
    Read { path: PathBuf, message: String },
    #[error("cannot write baseline {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: results::ResultsError,
    },
    #[error("baseline {path} has format {found}, expected {BASELINE_FORMAT}; rebuild it with `deploybench baseline save`")]
    Format { path: PathBuf, found: u32 },
    #[error("no runs given: a baseline needs at least one run folder")]
    NoRuns,
    #[error("run {path} is incomplete ({reason}); compare and baselines need complete runs, so rerun the scenario")]
    Incomplete { path: PathBuf, reason: String },
    #[error("run {path} ran scenario {found:?}, but the baseline comes from scenario {expected:?}; run {expected:?} to compare")]
    OtherScenario { path: PathBuf, found: String, expected: String },
    #[error("runs {first} and {other} ran different scenarios ({first_scenario:?} and {other_scenario:?}); a baseline needs runs of one scenario")]
    MixedScenarios { first: PathBuf, other: PathBuf, first_scenario: String, other_scenario: String },
    #[error("run {path} lacks {count} gated figure(s) of the baseline, such as {example}; it cannot pass or fail the gate")]
    MissingFigures { path: PathBuf, count: usize, example: String },
}

/// Reads run.json of a run folder and rejects an incomplete run.
pub(crate) fn complete_meta(run: &Path) -> Result<results::RunMeta, BaselineError> {
    let meta = results::read_meta(run).map_err(|source| BaselineError::Run { path: run.to_path_buf(), source })?;
    if !meta.complete {
        let reason = meta.incomplete_reason.clone().unwrap_or_else(|| "no reason recorded".to_string());
        return Err(BaselineError::Incomplete { path: run.to_path_buf(), reason });
    }
    Ok(meta)
}

/// Groups samples into series, adding the derived `boot_ratio_to_process` series.
pub fn series_of(samples: &[Sample]) -> Vec<Series> {
    let mut all: Vec<Series> = Vec::new();
    for sample in samples.iter().cloned().chain(boot_ratios(samples)) {
        let existing = all.iter_mut().find(|series| {
            series.model == sample.model
                && series.metric == sample.metric
                && series.phase == sample.phase
                && series.unit == sample.unit
        });
        match existing {
            Some(series) => series.samples.push(sample.value),
            None => all.push(Series {
                model: sample.model,
                metric: sample.metric,
                phase: sample.phase,
                unit: sample.unit,
                samples: vec![sample.value],
            }),
        }
    }
    all
}

/// Each boot of a model divided by the median boot of `process` in the same run: a
/// timing that a uniformly slower or faster machine leaves unchanged.
fn boot_ratios(samples: &[Sample]) -> Vec<Sample> {
    let is_boot = |sample: &&Sample| sample.metric == "boot_ms" && sample.phase == "first_200";
    let mut floor: Vec<f64> = samples.iter().filter(is_boot).filter(|s| s.model == "process").map(|s| s.value).collect();
    if floor.is_empty() {
        return Vec::new();
    }
    floor.sort_by(f64::total_cmp);
    let floor = results::quantile(&floor, 0.5);
    if floor <= 0.0 {
        return Vec::new();
    }
    samples
        .iter()
        .filter(is_boot)
        .filter(|sample| sample.model != "process")
        .map(|sample| Sample::new(&sample.model, "boot_ratio_to_process", "", sample.repetition, sample.value / floor, "ratio"))
        .collect()
}

impl Baseline {
    /// Builds a baseline from run folders.
    pub fn from_runs(runs: &[PathBuf]) -> Result<Baseline, BaselineError> {
        let first = runs.first().ok_or(BaselineError::NoRuns)?;
        let meta = complete_meta(first)?;
        let mut series: Vec<Series> = Vec::new();
        for run in runs {
            let other = complete_meta(run)?;
            if other.scenario_name != meta.scenario_name {
                return Err(BaselineError::MixedScenarios {
                    first: first.clone(),
                    other: run.clone(),
                    first_scenario: meta.scenario_name,
                    other_scenario: other.scenario_name,
                });
            }
            let samples = results::read_samples(run).map_err(|source| BaselineError::Run { path: run.clone(), source })?;
            for found in series_of(&samples) {
                match series.iter_mut().find(|s| {
                    s.model == found.model && s.metric == found.metric && s.phase == found.phase && s.unit == found.unit
                }) {
                    Some(existing) => existing.samples.extend(found.samples),
                    None => series.push(found),
                }
            }
        }
        Ok(Baseline {
            format: BASELINE_FORMAT,
            created_at: chrono::Utc::now().to_rfc3339(),
            runs: runs
                .iter()
                .map(|run| run.file_name().map_or_else(|| run.display().to_string(), |name| name.to_string_lossy().into_owned()))
                .collect(),
            host: format!("{} x{}", meta.host.cpu_model, meta.host.cpu_count),
            scenario: Some(meta.scenario_name),
            series,
        })
    }

    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let read_error = |message: String| BaselineError::Read { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|error| read_error(error.to_string()))?;
        let baseline: Baseline = serde_json::from_str(&text).map_err(|error| read_error(error.to_string()))?;
        if baseline.format != BASELINE_FORMAT {
            return Err(BaselineError::Format { path: path.to_path_buf(), found: baseline.format });
        }
        Ok(baseline)
    }

    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let write_error = |source| BaselineError::Write { path: path.to_path_buf(), source };
        let mut bytes = serde_json::to_vec_pretty(self).expect("a baseline always serializes");
        bytes.push(b'\n');
        if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|source| write_error(results::ResultsError::Write { path: folder.to_path_buf(), source }))?;
        }
        results::write_atomic(path, &bytes).map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_divide_by_process_median() {
        let samples = vec![
            Sample::new("process", "boot_ms", "first_200", 0, 2.0, "ms"),
            Sample::new("process", "boot_ms", "first_200", 1, 4.0, "ms"),
            Sample::new("distroless", "boot_ms", "first_200", 0, 300.0, "ms"),
            Sample::new("distroless", "boot_ms", "create", 0, 10.0, "ms"),
        ];
        let series = series_of(&samples);
        let ratio = series.iter().find(|s| s.metric == "boot_ratio_to_process").unwrap();
        assert_eq!(ratio.model, "distroless");
        assert_eq!(ratio.samples, vec![100.0]);
        assert_eq!(series.len(), 4);
    }

    #[test]
    fn no_process_no_ratio() {
        let samples = vec![Sample::new("distroless", "boot_ms", "first_200", 0, 300.0, "ms")];
        assert!(series_of(&samples).iter().all(|s| s.metric != "boot_ratio_to_process"));
    }

    #[test]
    fn missing_baseline_says_how_to_make_one() {
        let error = Baseline::load(Path::new("/nonexistent/baseline.json")).unwrap_err().to_string();
        assert!(error.contains("deploybench baseline save"), "{error}");
    }
}
