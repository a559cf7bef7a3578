//! The stored results of one run folder, loaded once, with look-ups by model, metric and phase.

use std::path::Path;

use crate::results::{self, RunMeta, Sample, Summary, SAMPLES_FILE, SUMMARY_FILE};

use super::ReportError;

/// Samples, summaries and metadata of one run, as the report reads them.
pub struct RunData {
    pub meta: RunMeta,
    pub samples: Vec<Sample>,
    pub summaries: Vec<Summary>,
    /// Model labels in order of first appearance in the samples, then models that
    /// appear only in run.json.
    pub models: Vec<String>,
    /// Facts about missing files that the report states near its top.
    pub notes: Vec<String>,
}

impl RunData {
    /// Loads run.json, samples.csv and summary.csv from `folder`.
    ///
    /// A missing samples.csv counts as a run without samples, and a missing summary.csv
    /// is recomputed from the samples. Both cases add a note to the report.
    pub fn load(folder: &Path) -> Result<RunData, ReportError> {
        let load_error = |source| ReportError::Load {
            folder: folder.to_path_buf(),
            source,
        };
        let meta = results::read_meta(folder).map_err(load_error)?;
        let mut notes = Vec::new();

        let samples = if folder.join(SAMPLES_FILE).exists() {
            results::read_samples(folder).map_err(load_error)?
        } else {
            notes.push(format!("{SAMPLES_FILE} is missing, so this run has no samples."));
            Vec::new()
        };

        let summaries = if folder.join(SUMMARY_FILE).exists() {
            results::read_summaries(folder).map_err(load_error)?
        } else {
            if !samples.is_empty() {
                notes.push(format!(
                    "{SUMMARY_FILE} is missing, so the summaries below were computed from {SAMPLES_FILE}."
                ));
            }
            results::summarize(&samples)
        };

        let mut models: Vec<String> = Vec::new();
        let labels = samples
            .iter()
            .map(|sample| &sample.model)
            .chain(summaries.iter().map(|summary| &summary.model))
            .chain(meta.models.iter().map(|outcome| &outcome.model));
        for label in labels {
            if !models.contains(label) {
                models.push(label.clone());
            }
        }

        Ok(RunData {
            meta,
            samples,
            summaries,
            models,
            notes,
        })
    }

    /// Returns the summary of one model, metric and phase, if the run has one.
    pub fn summary(&self, model: &str, metric: &str, phase: &str) -> Option<&Summary> {
        self.summaries
            .iter()
            .find(|summary| summary.model == model && summary.metric == metric && summary.phase == phase)
    }

    /// Returns the finite raw values of one model, metric and phase in stored order.
    pub fn values(&self, model: &str, metric: &str, phase: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|sample| sample.model == model && sample.metric == metric && sample.phase == phase)
            .map(|sample| sample.value)
            .filter(|value| value.is_finite())
            .collect()
    }

    /// Returns the phases of a metric in order of first appearance.
    pub fn phases(&self, metric: &str) -> Vec<String> {
        let mut phases: Vec<String> = Vec::new();
        let found = self
            .summaries
            .iter()
            .filter(|summary| summary.metric == metric)
            .map(|summary| &summary.phase);
        for phase in found {
            if !phases.contains(phase) {
                phases.push(phase.clone());
            }
        }
        phases
    }

    /// Returns the models that have at least one summary of `metric`, in report order.
    pub fn models_with(&self, metric: &str) -> Vec<&str> {
        self.models
            .iter()
            .filter(|model| self.summaries.iter().any(|s| &s.model == *model && s.metric == metric))
            .map(String::as_str)
            .collect()
    }

    /// Returns the status and reason run.json records for a model, if it records one.
    pub fn outcome(&self, model: &str) -> Option<(&str, &str)> {
        self.meta
            .models
            .iter()
            .find(|outcome| outcome.model == model)
            .map(|outcome| (outcome.status.as_str(), outcome.reason.as_str()))
    }

    /// Returns the target request rates of the load phase, in req/s, without repeats.
    pub fn target_rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = Vec::new();
        for summary in self.summaries.iter().filter(|s| s.metric == "target_rps") {
            if !rates.contains(&summary.median) {
                rates.push(summary.median);
            }
        }
        rates
    }
}
