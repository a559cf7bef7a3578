//! The report's plots, each written as SVG and, when the font is available, as PNG.

mod draw;
mod function;
mod pull_time;
mod scale;
mod svg;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::data::RunData;
use super::{format, ReportError};
use crate::results::write_atomic;

#[cfg(test)]
pub use scale::{wants_log, Scale};
#[cfg(test)]
pub use svg::estimate_text_size;
pub use function::FUNCTION_PLOT_NAMES;
pub use svg::FontFreeSvg;

/// Plot size in pixels; SVG files use the same size as their view box.
const SIZE: (u32, u32) = (960, 560);

/// The font the PNG plots are drawn with. Debian and Ubuntu ship it in fonts-dejavu-core.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Base names of the plot files, without the `.png` or `.svg` extension.
pub const PLOT_NAMES: [&str; 5] = ["boot_ms", "memory_overhead_mib", "latency_ms", "image_mib", pull_time::NAME];

/// Latency percentiles on the x-axis of the latency plot, in order.
const LATENCY_PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

/// Colors by model position, so a model has the same color in every plot
/// (the "tab10" palette of matplotlib).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One model's values in a plot.
pub struct Group {
    pub label: String,
    pub color: RGBColor,
    pub values: Vec<f64>,
    /// Text drawn after the value label, such as the process floor's RSS.
    pub note: Option<String>,
}

impl Group {
    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }
}

/// One line of the latency plot: a value per x-axis category, `None` where missing.
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub values: Vec<Option<f64>>,
}

pub enum Figure {
    /// Every value per model: quartile box, median, min–max whisker and points.
    Distribution(Vec<Group>),
    /// One bar per model at the median, with a min–max whisker.
    Bars(Vec<Group>),
    /// One line per model over shared x-axis categories.
    Lines { categories: Vec<String>, series: Vec<Line> },
    /// Step lines over a linear time axis.
    Series { x_label: String, series: Vec<function::Series> },
}

impl Figure {
    /// Returns every finite value the figure plots, which sets the y-axis range.
    fn values(&self) -> Vec<f64> {
        let values: Vec<f64> = match self {
            Figure::Distribution(groups) | Figure::Bars(groups) => {
                groups.iter().flat_map(|group| group.values.iter().copied()).collect()
            }
            Figure::Lines { series, .. } => series
                .iter()
                .flat_map(|line| line.values.iter().flatten().copied())
                .collect(),
            Figure::Series { series, .. } => {
                series.iter().flat_map(|line| line.points.iter().map(|point| point.1)).collect()
            }
        };
        values.into_iter().filter(|value| value.is_finite()).collect()
    }

    /// Returns the x-axis labels: model and sample count, or the shared categories.
    fn categories(&self) -> Vec<String> {
        match self {
            Figure::Distribution(groups) | Figure::Bars(groups) => groups
                .iter()
                .map(|group| format!("{} (n {})", group.label, group.values.len()))
                .collect(),
            Figure::Lines { categories, .. } => categories.clone(),
            Figure::Series { .. } => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleRule {
    /// Log when the values span more than [`scale::LOG_RATIO`], linear otherwise.
    Auto,
    Log,
}

/// One plot: its file name, text and figure.
pub struct Plot {
    pub name: &'static str,
    pub title: String,
    /// The y-axis description with its unit.
    pub y_label: String,
    pub figure: Figure,
    pub scale: ScaleRule,
    /// Formats a value with its unit for the labels drawn beside boxes and bars.
    pub value_label: fn(f64) -> String,
    /// Shown instead of the figure when it has no values.
    pub empty_message: String,
}

/// A figure to draw into one plot file: a category plot or the pull plot.
enum Drawing<'a> {
    Categories(&'a Plot),
    PullTime(&'a RunData),
}

impl Drawing<'_> {
    fn name(&self) -> &'static str {
        match self {
            Drawing::Categories(plot) => plot.name,
            Drawing::PullTime(_) => pull_time::NAME,
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        match self {
            Drawing::Categories(plot) => draw::draw(root, plot).map_err(|error| error.to_string()),
            Drawing::PullTime(data) => pull_time::draw(root, data).map_err(|error| error.to_string()),
        }
    }
}

/// The plot files written, and why any were not.
#[derive(Debug, Default)]
pub struct PlotFiles {
    pub written: Vec<PathBuf>,
    pub skipped: Vec<String>,
}

fn mib_label(value: f64) -> String {
    format!("{} MiB", format::number(value))
}

fn color_of(data: &RunData, model: &str) -> RGBColor {
    let index = data.models.iter().position(|m| m == model).unwrap_or(0);
    PALETTE[index % PALETTE.len()]
}

fn groups(data: &RunData, metric: &str, phase: &str) -> Vec<Group> {
    data.models
        .iter()
        .map(|model| Group {
            label: model.clone(),
            color: color_of(data, model),
            values: data.values(model, metric, phase),
            note: None,
        })
        .filter(|group| !group.values.is_empty())
        .collect()
}

/// Builds the four plots from the run's samples and summaries.
pub fn plots(data: &RunData) -> Vec<Plot> {
    let boot = Plot {
        name: "boot_ms",
        title: "Boot time to first HTTP 200 (ms; box: quartiles, whiskers: min–max)".to_string(),
        y_label: "boot time (ms)".to_string(),
        figure: Figure::Distribution(groups(data, "boot_ms", "first_200")),
        scale: ScaleRule::Auto,
        value_label: format::duration_ms,
        empty_message: "The run stored no boot_ms first_200 samples.".to_string(),
    };

    let mut memory_groups = groups(data, "memory_overhead_mib", "");
    for group in &mut memory_groups {
        if group.label == "process" {
            let rss = data
                .summary("process", "memory_mib", "total")
                .or_else(|| data.summary("process", "memory_mib", "instance"));
            group.note = Some(match rss {
                Some(rss) => format!("floor, RSS {}", mib_label(rss.median)),
                None => "floor".to_string(),
            });
        }
    }
    let memory = Plot {
        name: "memory_overhead_mib",
        title: "Memory overhead over the bare process, idle (MiB; bar: median, whiskers: min–max)".to_string(),
        y_label: "memory overhead (MiB)".to_string(),
        figure: Figure::Bars(memory_groups),
        scale: ScaleRule::Auto,
        value_label: mib_label,
        empty_message: "The run stored no memory_overhead_mib samples.".to_string(),
    };

    let series: Vec<Line> = data
        .models_with("latency_ms")
        .into_iter()
        .map(|model| Line {
            label: model.to_string(),
            color: color_of(data, model),
            values: LATENCY_PERCENTILES
                .iter()
                .map(|phase| data.summary(model, "latency_ms", phase).map(|summary| summary.median))
                .collect(),
        })
        .collect();
    let latency = Plot {
        name: "latency_ms",
        title: latency_title(data),
        y_label: "latency from intended send time (ms)".to_string(),
        figure: Figure::Lines {
            categories: LATENCY_PERCENTILES.iter().map(|p| p.to_string()).collect(),
            series,
        },
        scale: ScaleRule::Log,
        value_label: format::duration_ms,
        empty_message: "The run stored no latency_ms samples.".to_string(),
    };

    let image = Plot {
        name: "image_mib",
        title: "Image size, uncompressed (MiB)".to_string(),
        y_label: "image size (MiB)".to_string(),
        figure: Figure::Bars(groups(data, "image_mib", "uncompressed")),
        scale: ScaleRule::Log,
        value_label: mib_label,
        empty_message: "The run stored no image_mib uncompressed samples.".to_string(),
    };

    vec![boot, memory, latency, image]
}

/// Titles the latency plot with the target rate, which every model should share.
fn latency_title(data: &RunData) -> String {
    let rates = data.target_rates();
    match rates.as_slice() {
        [] => "Latency percentiles under open-loop load, target rate not recorded (ms)".to_string(),
        [rate] => format!(
            "Latency under {} req/s open loop, corrected for coordinated omission (ms)",
            format::number(*rate)
        ),
        _ => {
            let listed: Vec<String> = rates.iter().map(|rate| format::number(*rate)).collect();
            format!(
                "Latency under open-loop load at unequal target rates: {} req/s (ms)",
                listed.join(", ")
            )
        }
    }
}

/// Lets PNG plots draw text with the font at `path`.
///
/// The font is read on every call, so a missing file is reported each time, but it is
/// registered with plotters only once per process.
fn register_font(path: &Path) -> Result<(), String> {
    static REGISTERED: Mutex<bool> = Mutex::new(false);

    let bytes = std::fs::read(path).map_err(|error| format!("cannot read the font {}: {error}", path.display()))?;
    let mut registered = REGISTERED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *registered {
        return Ok(());
    }
    // plotters keeps the font for the life of the process, so it needs 'static bytes.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{} is not a valid TrueType or OpenType font", path.display()))?;
    *registered = true;
    Ok(())
}

/// Writes every plot as SVG into `folder`, and as PNG when the font at `font_path` loads.
/// The function plots are written only when the run has function samples.
pub fn write_plots(data: &RunData, folder: &Path, font_path: &Path) -> Result<PlotFiles, ReportError> {
    let mut files = PlotFiles::default();
    let font = register_font(font_path);
    if let Err(reason) = &font {
        files.skipped.push(format!(
            "PNG plots skipped because {reason}. Install fonts-dejavu-core to get them."
        ));
    }

    let mut category_plots = plots(data);
    category_plots.extend(function::plots(data));
    let drawings = category_plots.iter().map(Drawing::Categories).chain([Drawing::PullTime(data)]);
    for drawing in drawings {
        let svg_path = folder.join(format!("{}.svg", drawing.name()));
        write_svg(&drawing, &svg_path)?;
        files.written.push(svg_path);

        if font.is_ok() {
            let png_path = folder.join(format!("{}.png", drawing.name()));
            write_png(&drawing, &png_path)?;
            files.written.push(png_path);
        }
    }
    Ok(files)
}

/// Writes any set of category plots as SVG, and as PNG when the font loads.
pub fn write_plot_set(plots: &[Plot], folder: &Path, font_path: &Path) -> Result<PlotFiles, ReportError> {
    let mut files = PlotFiles::default();
    let font = register_font(font_path);
    if let Err(reason) = &font {
        files.skipped.push(format!("PNG plots skipped because {reason}. Install fonts-dejavu-core to get them."));
    }
    for plot in plots {
        let drawing = Drawing::Categories(plot);
        let svg_path = folder.join(format!("{}.svg", plot.name));
        write_svg(&drawing, &svg_path)?;
        files.written.push(svg_path);
        if font.is_ok() {
            let png_path = folder.join(format!("{}.png", plot.name));
            write_png(&drawing, &png_path)?;
            files.written.push(png_path);
        }
    }
    Ok(files)
}

fn write_svg(drawing: &Drawing, path: &Path) -> Result<(), ReportError> {
    let draw_error = |message: String| ReportError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let mut text = String::new();
    {
        let root = FontFreeSvg(SVGBackend::with_string(&mut text, SIZE)).into_drawing_area();
        drawing.draw(&root).map_err(draw_error)?;
        root.present().map_err(|error| draw_error(error.to_string()))?;
    }
    write_atomic(path, text.as_bytes()).map_err(|error| ReportError::write(path, error))
}

/// Draws the PNG into a hidden file beside `path` and renames it, so a reader never sees
/// half a PNG. The hidden name keeps the `.png` ending that selects the PNG encoder.
fn write_png(drawing: &Drawing, path: &Path) -> Result<(), ReportError> {
    let draw_error = |message: String| ReportError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = path.with_file_name(format!(".{file_name}.partial.png"));

    let drawn = (|| {
        let root = BitMapBackend::new(&partial, SIZE).into_drawing_area();
        drawing.draw(&root)?;
        root.present().map_err(|error| error.to_string())
    })();
    if let Err(message) = drawn {
        let _ = std::fs::remove_file(&partial);
        return Err(draw_error(message));
    }
    std::fs::rename(&partial, path).map_err(|source| {
        let _ = std::fs::remove_file(&partial);
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}
