//! The per-second files of a load run: an HdrHistogram interval log and a CSV table.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use super::report::LoadReport;

/// Name of the interval log that [`write_outputs`] writes.
pub const HLOG_FILE: &str = "latency.hlog";
/// Name of the per-second CSV table that [`write_outputs`] writes.
pub const CSV_FILE: &str = "per_second.csv";

/// Tag of the uncorrected histograms in the interval log. The corrected ones have no
/// tag, so that tools that read only untagged histograms show the corrected latency.
const UNCORRECTED_TAG: &str = "uncorrected";

/// Paths of the files that [`write_outputs`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFiles {
    pub hlog: PathBuf,
    pub csv: PathBuf,
}

/// Writes the per-second statistics of `report` into `folder`, creating it if needed.
///
/// - [`HLOG_FILE`]: an HdrHistogram interval log (V2 compressed histograms) with one
///   interval per second of the measured window. Each second has an untagged histogram
///   of the corrected latency and one tagged `uncorrected`, both in microseconds. The
///   log's StartTime and BaseTime are the start of the window, and its max column is in
///   milliseconds.
/// - [`CSV_FILE`]: columns `second,sent,completed,errors,p50_ms,p99_ms`, one row per
///   second. The percentiles are of the corrected latency and empty in a second in
///   which no request completed.
///
/// Each file is written under a temporary name and then renamed, so that a reader
/// never sees half a file.
pub fn write_outputs(report: &LoadReport, folder: &Path) -> io::Result<OutputFiles> {
    fs::create_dir_all(folder).map_err(|error| with_path(error, "create folder", folder))?;
    let files = OutputFiles {
        hlog: folder.join(HLOG_FILE),
        csv: folder.join(CSV_FILE),
    };
    write_atomically(&files.hlog, |file| write_hlog(report, file))?;
    write_atomically(&files.csv, |file| write_csv(report, file))?;
    Ok(files)
}

/// Writes the interval log of `report` to `out`.
fn write_hlog(report: &LoadReport, out: &mut impl Write) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("deploybench load: latency in microseconds per second of the measured window")
        .add_comment("untagged: corrected, from each request's intended send time to its last response byte")
        .add_comment("tag uncorrected: from each request's actual send time to its last response byte")
        .with_start_time(report.window_start_time)
        .with_base_time(report.window_start_time)
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, &mut serializer)?;
    let uncorrected_tag = Tag::new(UNCORRECTED_TAG);

    for interval in &report.per_second {
        let start = Duration::from_secs(interval.second);
        // The last second ends with the measured window and is usually shorter.
        let length = report.measured.saturating_sub(start).min(Duration::from_secs(1));
        writer
            .write_histogram(&interval.corrected, start, length, None)
            .map_err(io::Error::other)?;
        writer
            .write_histogram(&interval.uncorrected, start, length, uncorrected_tag)
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// Writes the per-second CSV table of `report` to `out`.
fn write_csv(report: &LoadReport, out: &mut impl Write) -> io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(["second", "sent", "completed", "errors", "p50_ms", "p99_ms"])?;
    for interval in &report.per_second {
        let (p50, p99) = if interval.corrected.is_empty() {
            (String::new(), String::new())
        } else {
            (
                format!("{:.3}", LoadReport::percentile_ms(&interval.corrected, 0.5)),
                format!("{:.3}", LoadReport::percentile_ms(&interval.corrected, 0.99)),
            )
        };
        writer.write_record([
            interval.second.to_string(),
            interval.sent.to_string(),
            interval.completed.to_string(),
            interval.errors.to_string(),
            p50,
            p99,
        ])?;
    }
    writer.flush()
}

/// Writes a file through `write` under a temporary name in the same folder, then
/// renames it to `path`.
pub(super) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);

    let result = File::create(&temporary).and_then(|file| {
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()
    });
    if let Err(error) = result {
        let _ = fs::remove_file(&temporary);
        return Err(with_path(error, "write", path));
    }
    fs::rename(&temporary, path).map_err(|error| with_path(error, "rename into", path))
}

fn with_path(error: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("cannot {action} {}: {error}", path.display()))
}
