//! report.md and plots from a stored run folder.
//!
//! Reports read only the files a run stored (run.json, samples.csv, summary.csv) and
//! never talk to Docker, so a report can be rebuilt from a copied run folder at any time.

mod claims;
mod data;
mod findings;
mod format;
mod function;
pub mod history;
mod markdown;
mod plots;
mod pull;
mod record;
mod tables;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::results::{write_atomic, ResultsError, REPORT_FILE};

pub use claims::{place, Placement};
pub use plots::{FONT_PATH, PLOT_NAMES};

/// The files [`write_report`] wrote into the run folder.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// The path of report.md.
    pub report: PathBuf,
    /// Plot files written, SVG and PNG, in the order of [`PLOT_NAMES`].
    pub plots: Vec<PathBuf>,
    /// Outputs not written and why, for example PNG plots without their font.
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot load the run folder {folder}: {source}")]
    Load {
        folder: PathBuf,
        #[source]
        source: ResultsError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

impl ReportError {
    /// Converts a failed [`write_atomic`] to [`ReportError::Write`] without repeating the path.
    fn write(path: &Path, error: ResultsError) -> ReportError {
        let source = match error {
            ResultsError::Write { source, .. } | ResultsError::Read { source, .. } => source,
            ResultsError::Parse { message, .. } => std::io::Error::other(message),
        };
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes report.md and the plots (`PLOT_NAMES` as `.svg` and `.png`) into the run folder.
///
/// PNG plots need the DejaVu Sans font at [`FONT_PATH`]. Without it the SVG plots and
/// report.md are still written, and `skipped` contains the reason the PNGs are missing.
pub fn write_report(folder: &Path) -> Result<ReportFiles, ReportError> {
    write_report_with_font(folder, Path::new(FONT_PATH))
}

fn write_report_with_font(folder: &Path, font_path: &Path) -> Result<ReportFiles, ReportError> {
    let data = data::RunData::load(folder)?;
    let plot_files = plots::write_plots(&data, folder, font_path)?;

    let path = folder.join(REPORT_FILE);
    let text = markdown::render(&data, &plot_files);
    write_atomic(&path, text.as_bytes()).map_err(|error| ReportError::write(&path, error))?;

    Ok(ReportFiles {
        report: path,
        plots: plot_files.written,
        skipped: plot_files.skipped,
    })
}
