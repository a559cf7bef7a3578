//! An SVG backend that can lay out a chart without a registered font.
//!
//! plotters 0.3.7 measures every label with the registered font while it lays out a
//! chart, and fails when the font family is not registered. An SVG file stores text as `<text>`
//! elements that the viewer renders with its own font, so a size estimate is enough.

use plotters::backend::SVGBackend;
use plotters::prelude::DrawingBackend;
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind};

/// Average advance width of a character in em, roughly that of DejaVu Sans.
const CHARACTER_WIDTH_EM: f64 = 0.6;

/// Wraps [`SVGBackend`] and estimates text sizes from the character count when the
/// font is missing. Every drawing call goes to the SVG backend unchanged.
pub struct FontFreeSvg<'a>(pub SVGBackend<'a>);

type SvgError<'a> = DrawingErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>;

/// Estimates the width and height in pixels of `text` at `size`.
///
/// plotters gives text sizes in "pixels per 1.24 em": its SVG backend writes
/// `font-size = size / 1.24`, so one em is `size / 1.24` pixels.
pub fn estimate_text_size(text: &str, size: f64) -> (u32, u32) {
    let em = size / 1.24;
    let width = text.chars().count() as f64 * CHARACTER_WIDTH_EM * em;
    (width.round() as u32, em.round() as u32)
}

impl<'a> DrawingBackend for FontFreeSvg<'a> {
    type ErrorType = <SVGBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), SvgError<'a>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), SvgError<'a>> {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), SvgError<'a>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), SvgError<'a>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), SvgError<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), SvgError<'a>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), SvgError<'a>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vertices: I,
        style: &S,
    ) -> Result<(), SvgError<'a>> {
        self.0.fill_polygon(vertices, style)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        position: BackendCoord,
    ) -> Result<(), SvgError<'a>> {
        self.0.draw_text(text, style, position)
    }

    fn estimate_text_size<S: BackendTextStyle>(&self, text: &str, style: &S) -> Result<(u32, u32), SvgError<'a>> {
        match style.layout_box(text) {
            Ok(((min_x, min_y), (max_x, max_y))) => Ok(((max_x - min_x) as u32, (max_y - min_y) as u32)),
            Err(_) => Ok(estimate_text_size(text, style.size())),
        }
    }

    fn blit_bitmap(&mut self, position: BackendCoord, size: (u32, u32), source: &[u8]) -> Result<(), SvgError<'a>> {
        self.0.blit_bitmap(position, size, source)
    }
}
