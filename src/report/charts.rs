//! Charts with plotters, each written as PNG and SVG. Text uses the bundled DejaVu Sans
//! (`assets/fonts/`), so PNGs need no system fonts.

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// One line of a line chart: (x, mean, 95% half-width) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// One bar with its error bar, or one stack of a stacked bar.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub ci95: f64,
}

const SIZE: (u32, u32) = (800, 500);
static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .unwrap_or_else(|_| panic!("the bundled font is a valid TrueType file"));
    });
}

/// Draws into `<stem>.png` and `<stem>.svg` with the same generic drawing function (given
/// once per backend); returns the PNG's path.
fn render(
    stem: &Path,
    png_draw: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
    svg_draw: impl Fn(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    register_font();
    let png = stem.with_extension("png");
    present(BitMapBackend::new(&png, SIZE).into_drawing_area(), png_draw, &png)?;
    let svg = stem.with_extension("svg");
    present(SVGBackend::new(&svg, SIZE).into_drawing_area(), svg_draw, &svg)?;
    Ok(png)
}

/// Fills the canvas white, draws, and writes the file.
fn present<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    draw: impl Fn(&DrawingArea<DB, Shift>) -> anyhow::Result<()>,
    path: &Path,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot)?;
    draw(&root)?;
    root.present()
        .map_err(plot)
        .with_context(|| format!("writing {}", path.display()))
}

/// `render` with one closure body, typed once per backend.
macro_rules! draw_both {
    ($stem:expr, |$root:ident| $body:block) => {
        render(
            $stem,
            |$root: &DrawingArea<BitMapBackend, Shift>| -> anyhow::Result<()> { $body },
            |$root: &DrawingArea<SVGBackend, Shift>| -> anyhow::Result<()> { $body },
        )
    };
}

/// A chart with its title and room for the axis labels.
fn builder<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    x_label_area: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(x_label_area)
        .y_label_area_size(70);
    builder
}

/// The series legend, in the same style on every chart.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot)
}

/// A plotters error as an anyhow one.
fn plot<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(hi.abs() * 0.05).max(1e-9);
    (lo - pad * span, hi + pad * span)
}

/// Lines with 95% error bars; `log2_x` spaces x by powers of two (memory and chunk sizes).
pub fn line_chart(
    stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log2_x: bool,
) -> anyhow::Result<PathBuf> {
    let tx = |x: f64| if log2_x { x.log2() } else { x };
    let (x0, x1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| tx(p.0))), 0.05);
    let (y0, y1) = range(
        series
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2])),
        0.1,
    );
    draw_both!(stem, |root| {
        let mut chart = builder(root, title, 45)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| {
                if log2_x {
                    // Label the powers of two only: memory and chunk sizes are.
                    if (x - x.round()).abs() < 1e-6 {
                        format!("{:.0}", 2f64.powf(x.round()))
                    } else {
                        String::new()
                    }
                } else {
                    format!("{x:.0}")
                }
            })
            .y_label_formatter(&|y| format!("{y:.3}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot)?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0), p.1)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(plot)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 4, color.filled())))
                .map_err(plot)?;
            chart
                .draw_series(
                    s.points
                        .iter()
                        .filter(|p| p.2 > 0.0)
                        .map(|p| ErrorBar::new_vertical(tx(p.0), p.1 - p.2, p.1, p.1 + p.2, color.stroke_width(1), 8)),
                )
                .map_err(plot)?;
        }
        legend(&mut chart)
    })
}

/// Bars with 95% error bars, one per label.
pub fn bar_chart(stem: &Path, title: &str, y_label: &str, bars: &[Bar], y_from_zero: bool) -> anyhow::Result<PathBuf> {
    let (mut y0, y1) = range(bars.iter().flat_map(|b| [b.value - b.ci95, b.value + b.ci95]), 0.1);
    if y_from_zero {
        y0 = 0.0;
    }
    let n = bars.len() as i32;
    draw_both!(stem, |root| {
        let mut chart = builder(root, title, 60)
            .build_cartesian_2d((0..n).into_segmented(), y0..y1)
            .map_err(plot)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_label)
            .x_labels(bars.len())
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => bars.get(*i as usize).map(|b| b.label.clone()).unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|y| format!("{y:.3}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot)?;
        for (i, b) in bars.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let i = i as i32;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(SegmentValue::Exact(i), y0), (SegmentValue::Exact(i + 1), b.value)],
                    color.mix(0.75).filled(),
                )))
                .map_err(plot)?;
            if b.ci95 > 0.0 {
                chart
                    .draw_series(std::iter::once(ErrorBar::new_vertical(
                        SegmentValue::CenterOf(i),
                        b.value - b.ci95,
                        b.value,
                        b.value + b.ci95,
                        BLACK.stroke_width(1),
                        10,
                    )))
                    .map_err(plot)?;
            }
        }
        Ok(())
    })
}

/// Stacked bars: one stack per group, one layer per (name, value), drawn in order.
pub fn stacked_chart(
    stem: &Path,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<(String, f64)>)],
) -> anyhow::Result<PathBuf> {
    let top = groups
        .iter()
        .map(|(_, layers)| layers.iter().map(|l| l.1).sum::<f64>())
        .fold(0.0, f64::max)
        * 1.25;
    let names: Vec<String> = groups
        .first()
        .map(|g| g.1.iter().map(|l| l.0.clone()).collect())
        .unwrap_or_default();
    let n = groups.len() as i32;
    draw_both!(stem, |root| {
        let mut chart = builder(root, title, 45)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1e-9))
            .map_err(plot)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_label)
            .x_labels(groups.len())
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => groups.get(*i as usize).map(|g| g.0.clone()).unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot)?;
        for (layer, name) in names.iter().enumerate() {
            let color = Palette99::pick(layer).to_rgba();
            chart
                .draw_series(groups.iter().enumerate().map(|(i, (_, layers))| {
                    let below: f64 = layers[..layer].iter().map(|l| l.1).sum();
                    let value = layers.get(layer).map_or(0.0, |l| l.1);
                    Rectangle::new(
                        [
                            (SegmentValue::Exact(i as i32), below),
                            (SegmentValue::Exact(i as i32 + 1), below + value),
                        ],
                        color.mix(0.8).filled(),
                    )
                }))
                .map_err(plot)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        }
        legend(&mut chart)
    })
}

/// A heat map: one cell per (row, column), coloured from white (`0`) to dark blue (`top`)
/// with its value written in it; cells without a value stay grey.
pub struct HeatMap<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub columns: &'a [String],
    pub rows: &'a [String],
    /// `values[row][column]`.
    pub values: &'a [Vec<Option<f64>>],
    pub top: f64,
}

/// Draws `map` (see [`HeatMap`]).
pub fn heat_map(stem: &Path, map: &HeatMap) -> anyhow::Result<PathBuf> {
    let (nx, ny) = (map.columns.len() as i32, map.rows.len() as i32);
    let shade = |v: f64| {
        let t = (v / map.top.max(1e-12)).clamp(0.0, 1.0);
        let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
        RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
    };
    draw_both!(stem, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(map.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(150)
            // `(0..n).into_segmented()` holds n + 1 segments: one per cell is `0..n - 1`.
            .build_cartesian_2d((0..nx - 1).into_segmented(), (0..ny - 1).into_segmented())
            .map_err(plot)?;
        let name = |labels: &[String], v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        // Rows are listed top down; the axis counts bottom up.
        let row_name = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => name(map.rows, &SegmentValue::CenterOf(ny - 1 - i)),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(map.x_label)
            .x_labels(map.columns.len())
            .y_labels(map.rows.len())
            .x_label_formatter(&|x| name(map.columns, x))
            .y_label_formatter(&row_name)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot)?;
        for (r, row) in map.values.iter().enumerate() {
            // The first row is drawn at the top.
            let y = ny - 1 - r as i32;
            for (c, value) in row.iter().enumerate() {
                let x = c as i32;
                let fill = value.map_or(RGBColor(210, 210, 210), shade);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                            (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                        ],
                        fill.filled(),
                    )))
                    .map_err(plot)?;
                if let Some(v) = value {
                    let ink = if *v > map.top * 0.55 { WHITE } else { BLACK };
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{v:.2}"),
                            (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                            ("sans-serif", 14).into_font().color(&ink),
                        )))
                        .map_err(plot)?;
                }
            }
        }
        Ok(())
    })
}
