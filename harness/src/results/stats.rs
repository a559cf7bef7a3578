//! Summaries of raw samples: median, p95, mean, standard deviation and a 95% interval.

use serde::{Deserialize, Serialize};

use super::Sample;

/// Summary of every sample that shares a model, metric, phase and unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub model: String,
    pub metric: String,
    pub phase: String,
    pub unit: String,
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); 0 for a single sample.
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    /// Distribution-free 95% confidence interval of the median, from order statistics.
    /// With fewer than 6 samples no such interval exists, so it spans min to max.
    pub ci95_low: f64,
    pub ci95_high: f64,
}

/// Groups samples by model, metric, phase and unit, in order of first appearance.
pub fn summarize(samples: &[Sample]) -> Vec<Summary> {
    let mut groups: Vec<(&Sample, Vec<f64>)> = Vec::new();
    for sample in samples {
        let position = groups.iter().position(|(first, _)| {
            first.model == sample.model
                && first.metric == sample.metric
                && first.phase == sample.phase
                && first.unit == sample.unit
        });
        match position {
            Some(index) => groups[index].1.push(sample.value),
            None => groups.push((sample, vec![sample.value])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(first, values)| {
            let values: Vec<f64> = values.into_iter().filter(|value| value.is_finite()).collect();
            describe(&values).map(|description| Summary {
                model: first.model.clone(),
                metric: first.metric.clone(),
                phase: first.phase.clone(),
                unit: first.unit.clone(),
                ..description
            })
        })
        .collect()
}

/// Computes the summary figures of finite values; `None` when there are none.
fn describe(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let stddev = if n > 1 {
        (sorted.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let (ci95_low, ci95_high) = median_interval(&sorted);
    Some(Summary {
        model: String::new(),
        metric: String::new(),
        phase: String::new(),
        unit: String::new(),
        n,
        median: quantile(&sorted, 0.5),
        p95: quantile(&sorted, 0.95),
        mean,
        stddev,
        min: sorted[0],
        max: sorted[n - 1],
        ci95_low,
        ci95_high,
    })
}

/// Linear-interpolation quantile of sorted values (the R-7 / numpy default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let weight = position - lower as f64;
    sorted[lower] * (1.0 - weight) + sorted[upper] * weight
}

/// Order-statistic interval of the median: ranks n/2 -+ 1.96 sqrt(n)/2 (normal
/// approximation of the binomial), which needs at least 6 samples to be narrower
/// than the whole range.
fn median_interval(sorted: &[f64]) -> (f64, f64) {
    let n = sorted.len();
    if n < 6 {
        return (sorted[0], sorted[n - 1]);
    }
    let half_width = 1.96 * (n as f64).sqrt() / 2.0;
    let low = ((n as f64 / 2.0 - half_width).floor().max(1.0) as usize) - 1;
    let high = ((n as f64 / 2.0 + half_width).ceil() as usize).min(n) - 1;
    (sorted[low], sorted[high])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample::new("m", "boot_ms", "", i as u32, value, "ms"))
            .collect()
    }

    #[test]
    fn odd_count_median_and_spread() {
        let summary = &summarize(&samples(&[5.0, 1.0, 3.0, 2.0, 4.0]))[0];
        assert_eq!(summary.n, 5);
        assert_eq!(summary.median, 3.0);
        assert_eq!(summary.mean, 3.0);
        assert_eq!(summary.min, 1.0);
        assert_eq!(summary.max, 5.0);
        assert!((summary.stddev - 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(summary.p95, 4.8);
        assert_eq!((summary.ci95_low, summary.ci95_high), (1.0, 5.0));
    }

    #[test]
    fn even_count_median_interpolates() {
        let summary = &summarize(&samples(&[1.0, 2.0, 3.0, 4.0]))[0];
        assert_eq!(summary.median, 2.5);
    }

    #[test]
    fn median_interval_narrower_than_range_for_many() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        let summary = &summarize(&samples(&values))[0];
        // n = 20: ranks floor(10 - 4.38) = 5 and ceil(10 + 4.38) = 15.
        assert_eq!((summary.ci95_low, summary.ci95_high), (5.0, 15.0));
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        let mut all = samples(&[1.0]);
        all.push(Sample::new("a", "memory_mib", "", 0, 7.0, "MiB"));
        all.push(Sample::new("m", "boot_ms", "", 1, 3.0, "ms"));
        let summaries = summarize(&all);
        assert_eq!(summaries.len(), 2);
        assert_eq!(summaries[0].model, "m");
        assert_eq!(summaries[0].n, 2);
        assert_eq!(summaries[1].model, "a");
    }

    #[test]
    fn non_finite_values_dropped() {
        let summaries = summarize(&samples(&[f64::NAN, 2.0]));
        assert_eq!(summaries[0].n, 1);
        assert!(summarize(&samples(&[f64::NAN])).is_empty());
    }
}
