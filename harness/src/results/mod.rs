//! Result records: raw samples, their summaries, the run's context, and atomic writes.
//!
//! Every figure is kept as a raw sample in `samples.csv`; `summary.csv` is computed
//! from those samples alone, so it can always be recomputed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod context;
pub mod history;
mod stats;

pub use context::{
    meminfo_kib, ArtifactRecord, CheckRecord, EngineContext, FailureRecord, HostContext, ModelOutcome, QemuContext,
    RunMeta,
};
pub use stats::{quantile, summarize, Summary};

/// One measured value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Deployment model label, for example `distroless`.
    pub model: String,
    /// Metric name as DESIGN.md defines it, for example `boot_ms`.
    pub metric: String,
    /// Sub-measurement: a boot phase, a percentile, an error kind; empty when none.
    pub phase: String,
    /// Repetition index from 0; load figures use 0.
    pub repetition: u32,
    pub value: f64,
    pub unit: String,
}

impl Sample {
    pub fn new(model: &str, metric: &str, phase: &str, repetition: u32, value: f64, unit: &str) -> Sample {
        Sample {
            model: model.to_string(),
            metric: metric.to_string(),
            phase: phase.to_string(),
            repetition,
            value,
            unit: unit.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// File names inside a run folder.
pub const SAMPLES_FILE: &str = "samples.csv";
pub const SUMMARY_FILE: &str = "summary.csv";
pub const META_FILE: &str = "run.json";
pub const REPORT_FILE: &str = "report.md";
/// File name of the history of every run, beside the folder of run folders.
pub const HISTORY_FILE: &str = "history.csv";

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename,
/// so a reader never sees a half-written file, even when the disk fills up.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    use std::io::Write;

    let error = |source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let folder = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(error)?;
    // Results are meant to be shared: readable by all like any file cargo or git writes,
    // not 0600 as temporary files are created.
    file.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.as_file().sync_all().map_err(error)?;
    file.persist(path).map_err(|persist| error(persist.error))?;
    Ok(())
}

/// Serializes rows as CSV with a header line.
pub fn to_csv<T: Serialize>(rows: &[T]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    writer.into_inner().map_err(|error| error.into_error().into())
}

fn csv_error(path: &Path, error: csv::Error) -> ResultsError {
    ResultsError::Parse {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

pub fn write_samples(folder: &Path, samples: &[Sample]) -> Result<(), ResultsError> {
    let path = folder.join(SAMPLES_FILE);
    let bytes = to_csv(samples).map_err(|error| csv_error(&path, error))?;
    write_atomic(&path, &bytes)
}

pub fn write_summaries(folder: &Path, summaries: &[Summary]) -> Result<(), ResultsError> {
    let path = folder.join(SUMMARY_FILE);
    let bytes = to_csv(summaries).map_err(|error| csv_error(&path, error))?;
    write_atomic(&path, &bytes)
}

pub fn write_meta(folder: &Path, meta: &RunMeta) -> Result<(), ResultsError> {
    let path = folder.join(META_FILE);
    let bytes = serde_json::to_vec_pretty(meta).map_err(|error| ResultsError::Parse {
        path: path.clone(),
        message: error.to_string(),
    })?;
    write_atomic(&path, &bytes)
}

pub(crate) fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, ResultsError> {
    let mut reader = csv::Reader::from_path(path).map_err(|error| match error.kind() {
        csv::ErrorKind::Io(_) => ResultsError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(error.to_string()),
        },
        _ => csv_error(path, error),
    })?;
    reader
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|error| csv_error(path, error))
}

pub fn read_samples(folder: &Path) -> Result<Vec<Sample>, ResultsError> {
    read_csv(&folder.join(SAMPLES_FILE))
}

pub fn read_summaries(folder: &Path) -> Result<Vec<Summary>, ResultsError> {
    read_csv(&folder.join(SUMMARY_FILE))
}

pub fn read_meta(folder: &Path) -> Result<RunMeta, ResultsError> {
    let path = folder.join(META_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ResultsError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|error| ResultsError::Parse {
        path,
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip_through_csv() {
        let folder = tempfile::tempdir().unwrap();
        let samples = vec![
            Sample::new("distroless", "boot_ms", "first_200", 0, 412.5, "ms"),
            Sample::new("process", "memory_mib", "", 3, 2.25, "MiB"),
        ];
        write_samples(folder.path(), &samples).unwrap();
        let text = std::fs::read_to_string(folder.path().join(SAMPLES_FILE)).unwrap();
        assert!(text.starts_with("model,metric,phase,repetition,value,unit\n"), "{text}");
        assert_eq!(read_samples(folder.path()).unwrap(), samples);
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("out.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let entries = std::fs::read_dir(folder.path()).unwrap().count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn atomic_write_is_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("run.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn atomic_write_to_missing_folder_fails_with_path() {
        let error = write_atomic(Path::new("/nonexistent-deploybench/x.csv"), b"x").unwrap_err();
        assert!(error.to_string().contains("/nonexistent-deploybench/x.csv"), "{error}");
    }
}
