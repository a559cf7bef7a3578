//! The function model's plots: cold start against warm request latency, and the number
//! of instances over time under each load pattern.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::draw::{draw_legend, DrawResult, FONT};
use super::scale::{Scale, TickedAxis};
use super::{Figure, Group, Plot, ScaleRule, PALETTE};
use crate::report::data::RunData;
use crate::report::format;
use crate::report::function::{has_samples, FUNCTION};

/// Base names of the function plot files, written only when the run has function samples.
pub const FUNCTION_PLOT_NAMES: [&str; 2] = ["function_cold_warm", "function_instances"];

/// Patterns drawn in the instances plot, in legend order.
const PATTERNS: [&str; 3] = ["steady", "bursty", "spike"];

/// One line of a time series: `(seconds, value)` points in time order.
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// Builds the function plots, or none when the run stored no function measurement.
pub fn plots(data: &RunData) -> Vec<Plot> {
    if !has_samples(data) {
        return Vec::new();
    }
    let cold_warm = Plot {
        name: FUNCTION_PLOT_NAMES[0],
        title: "Function: cold start vs warm request at the gateway (ms; box: quartiles, whiskers: min–max)"
            .to_string(),
        y_label: "from arrival to whole response (ms)".to_string(),
        figure: Figure::Distribution(vec![
            Group {
                label: "cold start".to_string(),
                color: PALETTE[3],
                values: data.values(FUNCTION, "cold_start_ms", "handler"),
                note: None,
            },
            Group {
                label: "warm".to_string(),
                color: PALETTE[0],
                values: data.values(FUNCTION, "warm_ms", ""),
                note: None,
            },
        ]),
        scale: ScaleRule::Auto,
        value_label: format::duration_ms,
        empty_message: "The run stored no cold_start_ms or warm_ms samples.".to_string(),
    };

    let series: Vec<Series> = PATTERNS
        .iter()
        .enumerate()
        .filter_map(|(index, pattern)| {
            let counts = data.values(FUNCTION, "instances", pattern);
            let period_ms = data.values(FUNCTION, "instance_sample_period_ms", pattern).first().copied()?;
            (!counts.is_empty()).then(|| Series {
                label: pattern.to_string(),
                color: PALETTE[(index + 1) % PALETTE.len()],
                points: counts
                    .iter()
                    .enumerate()
                    .map(|(sample, count)| (sample as f64 * period_ms / 1000.0, *count))
                    .collect(),
            })
        })
        .collect();
    let instances = Plot {
        name: FUNCTION_PLOT_NAMES[1],
        title: "Function: instances over time under each load pattern".to_string(),
        y_label: "instances (starting, busy or idle)".to_string(),
        figure: Figure::Series { x_label: "seconds since the pattern started".to_string(), series },
        scale: ScaleRule::Auto,
        value_label: format::count,
        empty_message: "The run stored no instances samples.".to_string(),
    };
    vec![cold_warm, instances]
}

/// Draws step lines of `series` over a linear time axis, with integer ticks on the
/// y-axis because the values are counts.
pub fn draw_series<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    plot: &Plot,
    x_label: &str,
    series: &[Series],
) -> DrawResult<DB> {
    let times: Vec<f64> = series.iter().flat_map(|line| line.points.iter().map(|point| point.0)).collect();
    let values: Vec<f64> = series.iter().flat_map(|line| line.points.iter().map(|point| point.1)).collect();
    let x_scale = Scale::fit(&times, false);
    let y_scale = Scale::fit(&values, false);
    let mut y_ticks: Vec<f64> = y_scale.ticks().into_iter().filter(|tick| tick.fract() == 0.0).collect();
    if y_ticks.is_empty() {
        y_ticks = y_scale.ticks();
    }

    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            TickedAxis { range: x_scale.low..x_scale.high, ticks: x_scale.ticks() },
            TickedAxis { range: y_scale.low..y_scale.high, ticks: y_ticks },
        )?;
    let x_formatter = |value: &f64| x_scale.label(*value);
    let y_formatter = |value: &f64| y_scale.label(*value);
    chart
        .configure_mesh()
        .bold_line_style(RGBColor(225, 225, 225))
        .x_label_formatter(&x_formatter)
        .y_label_formatter(&y_formatter)
        .x_desc(x_label)
        .y_desc(plot.y_label.clone())
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;

    for line in series {
        // A count stays valid until the next sample, so each step is horizontal, then vertical.
        let mut steps = Vec::with_capacity(line.points.len() * 2);
        for (index, &(time, value)) in line.points.iter().enumerate() {
            if index > 0 {
                steps.push((time, line.points[index - 1].1));
            }
            steps.push((time, value));
        }
        chart.draw_series(LineSeries::new(steps, line.color.stroke_width(2)))?;
    }
    let entries: Vec<(&str, RGBColor)> = series.iter().map(|line| (line.label.as_str(), line.color)).collect();
    draw_legend(&chart.plotting_area().strip_coord_spec(), &entries)
}
