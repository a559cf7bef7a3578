//! The pull plot: median cold pull time against uncompressed image size, one line per
//! link, both axes logarithmic.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::PALETTE;
use crate::measure::pull::PullKind;
use crate::report::data::RunData;
use crate::report::format;
use crate::report::pull::PullData;

/// Base name of the plot files.
pub const NAME: &str = "pull_ms";

const FONT: &str = "sans-serif";
const TITLE: &str = "Cold pull time against image size, per link (median; log axes)";

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// One link's line: (image MiB, median cold pull ms) per model, by size.
struct LinkLine {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn lines(data: &RunData) -> (Vec<LinkLine>, Vec<(String, f64, f64)>) {
    let pulls = PullData::new(data);
    let mut lines = Vec::new();
    // Per model: its size and its slowest median, where its name is drawn.
    let mut model_labels: Vec<(String, f64, f64)> = Vec::new();
    for (index, link) in pulls.links.iter().enumerate() {
        let mut points = Vec::new();
        let mut methods: Vec<&str> = Vec::new();
        for model in &pulls.models {
            let (Some(size), Some(figure)) = (pulls.image_mib(model), pulls.figure(model, PullKind::Cold, &link.name))
            else {
                continue;
            };
            let median = figure.summary.median;
            if !(size > 0.0 && median > 0.0) {
                continue;
            }
            points.push((size, median));
            if !methods.contains(&figure.method.description()) {
                methods.push(figure.method.description());
            }
            match model_labels.iter_mut().find(|(name, _, _)| name == model) {
                Some(entry) => entry.2 = entry.2.max(median),
                None => model_labels.push((model.to_string(), size, median)),
            }
        }
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(LinkLine {
            label: format!("{} ({})", link.name, methods.join(", ")),
            color: PALETTE[index % PALETTE.len()],
            points,
        });
    }
    (lines, model_labels)
}

/// Returns a log-axis range around `values` with some room on both sides.
fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) =
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| (low.min(value), high.max(value)));
    (low / 2.0)..(high * 2.0)
}

/// Draws the plot, or its title and a message when the run has no cold pulls.
pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &RunData) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (lines, model_labels) = lines(data);
    if lines.is_empty() {
        let body = root.titled(TITLE, (FONT, 22))?;
        let (width, height) = body.dim_in_pixel();
        let style = TextStyle::from((FONT, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        body.draw(&Text::new(
            "The run stored no cold pull_ms samples with an image size.".to_string(),
            (width as i32 / 2, height as i32 / 2),
            style,
        ))?;
        return Ok(());
    }

    let all = || lines.iter().flat_map(|line| line.points.iter().copied());
    let x_range = padded(all().map(|point| point.0));
    let y_range = padded(all().map(|point| point.1));
    let mut chart = ChartBuilder::on(root)
        .caption(TITLE, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_desc("image size, uncompressed (MiB), log scale")
        .y_desc("cold pull time, log scale")
        .x_label_formatter(&|value| format::trimmed(*value))
        .y_label_formatter(&|value| format::duration_ms(*value))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;

    for line in &lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(2)))?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
        chart.draw_series(line.points.iter().map(|point| Circle::new(*point, 4, color.filled())))?;
    }
    let label_style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (model, size, slowest) in model_labels {
        chart.draw_series(std::iter::once(Text::new(model, (size, slowest * 1.25), label_style.clone())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}
