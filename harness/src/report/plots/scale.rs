//! The y-axis of a plot, linear or logarithmic, with its own tick positions.
//!
//! Every plot draws in "axis space": the value itself on a linear axis, its base-10
//! logarithm on a log axis. One chart type with custom key points then serves both.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

use crate::report::format;

/// A log axis is chosen when the largest value is more than this many times the smallest.
pub const LOG_RATIO: f64 = 20.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub log: bool,
    /// Axis-space bounds of the plotted range.
    pub low: f64,
    pub high: f64,
}

impl Scale {
    /// Fits an axis to `values`: log when `log` is true and some value is positive,
    /// linear otherwise, in which case the axis includes 0.
    pub fn fit(values: &[f64], log: bool) -> Scale {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let positive: Vec<f64> = finite.iter().copied().filter(|v| *v > 0.0).collect();
        if log && !positive.is_empty() {
            let low = positive.iter().copied().fold(f64::INFINITY, f64::min).log10();
            let high = positive.iter().copied().fold(f64::NEG_INFINITY, f64::max).log10();
            let padding = 0.08 * (high - low).max(0.5);
            return Scale {
                log: true,
                low: low - padding,
                high: high + padding,
            };
        }
        let min = finite.iter().copied().fold(0.0, f64::min);
        let max = finite.iter().copied().fold(0.0, f64::max);
        let span = if max - min > 0.0 { max - min } else { 1.0 };
        let low = if min < 0.0 { min - 0.1 * span } else { 0.0 };
        Scale {
            log: false,
            low,
            high: max + 0.12 * span,
        }
    }

    /// Fits an axis that turns logarithmic when the positive values span more than
    /// [`LOG_RATIO`] and no value is negative.
    pub fn fit_auto(values: &[f64]) -> Scale {
        Scale::fit(values, wants_log(values))
    }

    /// Maps a value into axis space; `None` for a value a log axis cannot show.
    pub fn to_axis(&self, value: f64) -> Option<f64> {
        if !value.is_finite() {
            return None;
        }
        if self.log {
            (value > 0.0).then(|| value.log10())
        } else {
            Some(value)
        }
    }

    /// Returns the axis-space position bars grow from: 0, or the bottom of a log axis.
    pub fn base(&self) -> f64 {
        if self.log {
            self.low
        } else {
            0.0_f64.clamp(self.low, self.high)
        }
    }

    /// Returns tick positions in axis space: 1-2-5 steps on a linear axis, powers of ten
    /// (with 2 and 5 between them when the axis spans under three decades) on a log axis.
    pub fn ticks(&self) -> Vec<f64> {
        if !self.log {
            return nice_ticks(self.low, self.high);
        }
        let multipliers: &[f64] = if self.high - self.low < 3.0 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let mut ticks = Vec::new();
        for decade in (self.low.floor() as i32)..=(self.high.ceil() as i32) {
            for multiplier in multipliers {
                let tick = (multiplier * 10f64.powi(decade)).log10();
                if tick >= self.low && tick <= self.high {
                    ticks.push(tick);
                }
            }
        }
        if ticks.len() < 2 {
            // A narrow log axis contains fewer than two 1-2-5 values, so tick it linearly.
            let linear = nice_ticks(10f64.powf(self.low), 10f64.powf(self.high));
            ticks = linear.into_iter().filter(|v| *v > 0.0).map(f64::log10).collect();
        }
        ticks
    }

    /// Formats an axis-space position as the value it stands for.
    pub fn label(&self, axis_value: f64) -> String {
        let value = if self.log { 10f64.powf(axis_value) } else { axis_value };
        format::trimmed(value)
    }
}

/// Returns true when positive values span more than [`LOG_RATIO`] and none is negative.
pub fn wants_log(values: &[f64]) -> bool {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.iter().any(|v| *v < 0.0) {
        return false;
    }
    let positive: Vec<f64> = finite.into_iter().filter(|v| *v > 0.0).collect();
    let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let max = positive.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    !positive.is_empty() && max / min > LOG_RATIO
}

/// Returns about five to ten ticks from `low` to `high` in steps of 1, 2 or 5 times a power of ten.
fn nice_ticks(low: f64, high: f64) -> Vec<f64> {
    let span = high - low;
    if span <= 0.0 || !span.is_finite() {
        return vec![low];
    }
    let rough = span / 6.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| span / step <= 10.0)
        .unwrap_or(10.0 * power);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A linear f64 axis whose ticks are exactly `ticks`, in axis space.
///
/// plotters' own `WithKeyPoints<RangedCoordf64>` cannot take a label formatter in 0.3.7
/// (it lacks `ValueFormatter`), so this axis fills that role.
pub struct TickedAxis {
    pub range: Range<f64>,
    pub ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span == 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let fraction = (value - self.range.start) / span;
        limit.0 + (f64::from(limit.1 - limit.0) * fraction).round() as i32
    }

    /// Returns the ticks for bold grid lines and labels, and none for light grid lines.
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}
