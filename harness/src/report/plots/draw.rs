//! Drawing one plot on any plotters backend: distributions, bars and percentile lines
//! over categories, with the y-axis from [`Scale`].

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::scale::{Scale, TickedAxis};
use super::{Figure, Group, Plot, ScaleRule};
use crate::results::quantile;

pub(super) type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

pub(super) const FONT: &str = "sans-serif";
const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);
/// Half the width of a box or bar, in category units (categories sit 1 apart).
const HALF_WIDTH: f64 = 0.25;

/// Draws `plot` on `root`, or its title and a "no samples" message when it has no data.
pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &Plot) -> DrawResult<DB> {
    root.fill(&WHITE)?;

    let values = plot.figure.values();
    if values.is_empty() {
        let body = root.titled(&plot.title, (FONT, 22))?;
        let (width, height) = body.dim_in_pixel();
        let style = TextStyle::from((FONT, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        body.draw(&Text::new(
            plot.empty_message.clone(),
            (width as i32 / 2, height as i32 / 2),
            style,
        ))?;
        return Ok(());
    }
    if let Figure::Series { x_label, series } = &plot.figure {
        return super::function::draw_series(root, plot, x_label, series);
    }

    let scale = match plot.scale {
        ScaleRule::Auto => Scale::fit_auto(&values),
        ScaleRule::Log => Scale::fit(&values, true),
    };
    let categories = plot.figure.categories();
    let x_keys: Vec<f64> = (0..categories.len()).map(|i| i as f64).collect();
    let x_range = -0.5..(categories.len() as f64 - 0.5);

    let mut chart = ChartBuilder::on(root)
        .caption(&plot.title, (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            TickedAxis {
                range: x_range,
                ticks: x_keys,
            },
            TickedAxis {
                range: scale.low..scale.high,
                ticks: scale.ticks(),
            },
        )?;

    let x_formatter = |value: &f64| {
        let index = value.round();
        if index < 0.0 {
            return String::new();
        }
        categories.get(index as usize).cloned().unwrap_or_default()
    };
    let y_formatter = |value: &f64| scale.label(*value);
    let y_description = if scale.log {
        format!("{}, log scale", plot.y_label)
    } else {
        plot.y_label.clone()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(GRID_COLOR)
        .x_label_formatter(&x_formatter)
        .y_label_formatter(&y_formatter)
        .y_desc(y_description)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;

    let area = chart.plotting_area();
    match &plot.figure {
        Figure::Distribution(groups) => {
            for (index, group) in groups.iter().enumerate() {
                draw_distribution(area, &scale, index as f64, group, plot.value_label)?;
            }
        }
        Figure::Bars(groups) => {
            for (index, group) in groups.iter().enumerate() {
                draw_bar(area, &scale, index as f64, group, plot.value_label)?;
            }
        }
        Figure::Lines { series, .. } => {
            for line in series {
                let points: Vec<(f64, f64)> = line
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(index, value)| Some((index as f64, scale.to_axis((*value)?)?)))
                    .collect();
                chart.draw_series(LineSeries::new(points.clone(), line.color.stroke_width(2)))?;
                chart.draw_series(
                    points
                        .into_iter()
                        .map(|point| Circle::new(point, 4, line.color.filled())),
                )?;
            }
            let entries: Vec<(&str, RGBColor)> = series.iter().map(|line| (line.label.as_str(), line.color)).collect();
            draw_legend(&chart.plotting_area().strip_coord_spec(), &entries)?;
        }
        Figure::Series { .. } => unreachable!("drawn by function::draw_series above"),
    }
    Ok(())
}

type PlotArea<DB> = DrawingArea<DB, Cartesian2d<TickedAxis, TickedAxis>>;

fn text_style(position: Pos) -> TextStyle<'static> {
    TextStyle::from((FONT, 14).into_font()).pos(position)
}

/// Draws a box from the first to the third quartile, the median as a thick line, a
/// whisker from min to max, every value as a point, and the median's label above.
fn draw_distribution<DB: DrawingBackend>(
    area: &PlotArea<DB>,
    scale: &Scale,
    x: f64,
    group: &Group,
    value_label: fn(f64) -> String,
) -> DrawResult<DB> {
    let sorted = group.sorted();
    if sorted.is_empty() {
        return Ok(());
    }
    let at = |q: f64| scale.to_axis(quantile(&sorted, q));
    let (Some(min), Some(q1), Some(median), Some(q3), Some(max)) = (at(0.0), at(0.25), at(0.5), at(0.75), at(1.0))
    else {
        // A log axis cannot show a value of 0 or less, so the group keeps only its label.
        return Ok(());
    };
    let color = group.color;

    area.draw(&PathElement::new(vec![(x, min), (x, max)], color.stroke_width(2)))?;
    for end in [min, max] {
        area.draw(&PathElement::new(
            vec![(x - 0.08, end), (x + 0.08, end)],
            color.stroke_width(2),
        ))?;
    }
    area.draw(&Rectangle::new(
        [(x - HALF_WIDTH, q1), (x + HALF_WIDTH, q3)],
        color.mix(0.2).filled(),
    ))?;
    area.draw(&Rectangle::new(
        [(x - HALF_WIDTH, q1), (x + HALF_WIDTH, q3)],
        color.stroke_width(2),
    ))?;
    area.draw(&PathElement::new(
        vec![(x - HALF_WIDTH, median), (x + HALF_WIDTH, median)],
        BLACK.stroke_width(3),
    ))?;

    // Spread the points evenly across the box width so repeated values stay visible.
    let count = sorted.len() as f64;
    for (index, value) in group.values.iter().enumerate() {
        let Some(y) = scale.to_axis(*value) else { continue };
        let offset = -0.18 + 0.36 * (index as f64 + 0.5) / count;
        area.draw(&Circle::new((x + offset, y), 3, color.mix(0.7).filled()))?;
    }

    // Above the whisker, the label stays inside the plot even for the last category.
    let label = format!("median {}", value_label(quantile(&sorted, 0.5)));
    area.draw(&Text::new(
        label,
        (x, max),
        text_style(Pos::new(HPos::Center, VPos::Bottom)),
    ))?;
    Ok(())
}

/// Draws a bar up to the median, a min–max whisker when there are several values, and
/// the median's label with the group's note above it.
fn draw_bar<DB: DrawingBackend>(
    area: &PlotArea<DB>,
    scale: &Scale,
    x: f64,
    group: &Group,
    value_label: fn(f64) -> String,
) -> DrawResult<DB> {
    let sorted = group.sorted();
    if sorted.is_empty() {
        return Ok(());
    }
    let median = quantile(&sorted, 0.5);
    let base = scale.base();
    let top = scale.to_axis(median);

    if let Some(top) = top {
        area.draw(&Rectangle::new(
            [(x - HALF_WIDTH, base), (x + HALF_WIDTH, top)],
            group.color.mix(0.8).filled(),
        ))?;
    }
    let mut label_y = top.unwrap_or(base).max(base);
    if sorted.len() > 1 {
        if let (Some(min), Some(max)) = (scale.to_axis(sorted[0]), scale.to_axis(sorted[sorted.len() - 1])) {
            area.draw(&PathElement::new(vec![(x, min), (x, max)], BLACK.stroke_width(1)))?;
            for end in [min, max] {
                area.draw(&PathElement::new(
                    vec![(x - 0.06, end), (x + 0.06, end)],
                    BLACK.stroke_width(1),
                ))?;
            }
            label_y = label_y.max(max);
        }
    }

    let mut label = value_label(median);
    if let Some(note) = &group.note {
        label = format!("{label} ({note})");
    }
    area.draw(&Text::new(
        label,
        (x, label_y),
        text_style(Pos::new(HPos::Center, VPos::Bottom)),
    ))?;
    Ok(())
}

/// Draws a legend box in the upper left corner of `area`, one colored line per entry.
pub(super) fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[(&str, RGBColor)]) -> DrawResult<DB> {
    if entries.is_empty() {
        return Ok(());
    }
    let style = text_style(Pos::new(HPos::Left, VPos::Center));
    let mut text_width = 0;
    let mut line_height = 0;
    for (label, _) in entries {
        let (width, height) = area.estimate_text_size(label, &style)?;
        text_width = text_width.max(width as i32);
        line_height = line_height.max(height as i32 + 8);
    }
    let (left, top, swatch, padding) = (12, 12, 28, 8);
    let width = padding * 3 + swatch + text_width;
    let height = padding * 2 + line_height * entries.len() as i32;

    area.draw(&Rectangle::new(
        [(left, top), (left + width, top + height)],
        WHITE.mix(0.9).filled(),
    ))?;
    area.draw(&Rectangle::new(
        [(left, top), (left + width, top + height)],
        BLACK.stroke_width(1),
    ))?;
    for (index, (label, color)) in entries.iter().enumerate() {
        let y = top + padding + line_height * index as i32 + line_height / 2;
        let x = left + padding;
        area.draw(&PathElement::new(vec![(x, y), (x + swatch, y)], color.stroke_width(2)))?;
        area.draw(&Circle::new((x + swatch / 2, y), 4, color.filled()))?;
        area.draw(&Text::new(label.to_string(), (x + swatch + padding, y), style.clone()))?;
    }
    Ok(())
}
