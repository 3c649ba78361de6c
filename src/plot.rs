//! PNG figures of what people would rather look at than numbers: 2-D sample clouds, score fields,
//! loss curves and image grids. Text is drawn with the bundled DejaVu Sans font, so no system
//! font library is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// Errors while drawing or writing a figure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Drawing or encoding failed (including I/O on the output file).
    #[error("could not draw {path}: {reason}")]
    Draw {
        /// The figure being written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Input data of the wrong size.
    #[error("{what}: expected {expected} values, got {got}")]
    BadLength {
        /// Which input.
        what: &'static str,
        /// Length required.
        expected: usize,
        /// Length given.
        got: usize,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, PlotError>;

static FONT: Once = Once::new();

fn ensure_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        // Registering a valid bundled font cannot fail; if it somehow did, text would be missing
        // from the figures but nothing else would break.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError::Draw {
        path: path.to_path_buf(),
        reason,
    }
}

type SquareChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Axes over `[-range, range]²` with a caption and a light mesh: the frame of every 2-D figure.
fn square_chart<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    caption_size: u32,
    range: f64,
) -> std::result::Result<SquareChart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", caption_size))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(32)
        .build_cartesian_2d(-range..range, -range..range)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

/// One cloud of 2-D points, row-major `[x0, y0, x1, y1, …]`.
#[derive(Debug, Clone, Copy)]
pub struct PointSet<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Interleaved coordinates.
    pub xy: &'a [f64],
    /// Colour.
    pub color: RGBColor,
}

/// Side-by-side scatter panels of 2-D samples over the square `[-range, range]²`, one panel per
/// point set.
pub fn scatter_panels(path: &Path, title: &str, sets: &[PointSet<'_>], range: f64) -> Result<()> {
    ensure_font();
    let err = draw_err(path);
    for s in sets {
        if s.xy.len() % 2 != 0 {
            return Err(PlotError::BadLength {
                what: "interleaved 2-D points",
                expected: s.xy.len() + 1,
                got: s.xy.len(),
            });
        }
    }
    let width = 420 * sets.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(e.to_string()))?;
    let panels = root.split_evenly((1, sets.len().max(1)));
    for (panel, set) in panels.iter().zip(sets) {
        let mut chart = square_chart(panel, set.label, 16, range).map_err(&err)?;
        chart
            .draw_series(
                set.xy
                    .chunks(2)
                    .filter(|p| p[0].abs() <= range && p[1].abs() <= range)
                    .map(|p| Circle::new((p[0], p[1]), 1, set.color.mix(0.5).filled())),
            )
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// A score field: arrows at grid points (`points` interleaved 2-D, `vectors` the same length)
/// over a background scatter. Lengths are compressed by a square root (scores grow linearly away
/// from the data) and scaled so that the longest arrow spans 0.9 grid cells.
pub fn score_field(
    path: &Path,
    title: &str,
    points: &[f64],
    vectors: &[f64],
    background: Option<PointSet<'_>>,
    range: f64,
) -> Result<()> {
    ensure_font();
    let err = draw_err(path);
    if points.len() != vectors.len() {
        return Err(PlotError::BadLength {
            what: "score vectors",
            expected: points.len(),
            got: vectors.len(),
        });
    }
    let root = BitMapBackend::new(path, (560, 580)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = square_chart(&root, title, 18, range).map_err(&err)?;
    if let Some(bg) = background {
        chart
            .draw_series(
                bg.xy
                    .chunks(2)
                    .map(|p| Circle::new((p[0], p[1]), 1, bg.color.mix(0.3).filled())),
            )
            .map_err(|e| err(e.to_string()))?;
    }
    let n = points.len() / 2;
    let cell = 2.0 * range / (n as f64).sqrt().max(1.0);
    let longest = vectors
        .chunks(2)
        .map(|v| v[0].hypot(v[1]))
        .fold(0.0f64, f64::max)
        .max(1e-12);
    for (p, v) in points.chunks(2).zip(vectors.chunks(2)) {
        let norm = v[0].hypot(v[1]);
        let scale = if norm > 0.0 {
            0.9 * cell * (norm / longest).sqrt() / norm
        } else {
            0.0
        };
        let end = (p[0] + scale * v[0], p[1] + scale * v[1]);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(p[0], p[1]), end],
                BLUE.stroke_width(1),
            )))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(std::iter::once(Circle::new(end, 2, BLUE.filled())))
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// A loss curve on a log scale (raw values faint, a moving average on top).
pub fn loss_curve(path: &Path, title: &str, steps: &[f64], losses: &[f64]) -> Result<()> {
    ensure_font();
    let err = draw_err(path);
    if steps.len() != losses.len() {
        return Err(PlotError::BadLength {
            what: "losses",
            expected: steps.len(),
            got: losses.len(),
        });
    }
    let positive: Vec<(f64, f64)> = steps
        .iter()
        .zip(losses)
        .filter(|(_, l)| l.is_finite() && **l > 0.0)
        .map(|(s, l)| (*s, *l))
        .collect();
    let (lo, hi) = positive
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), (_, l)| {
            (a.min(*l), b.max(*l))
        });
    let (lo, hi) = if positive.is_empty() {
        (1e-3, 1.0)
    } else {
        (lo * 0.9, hi * 1.1)
    };
    let x_max = steps.last().copied().unwrap_or(1.0).max(1.0);
    let root = BitMapBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(positive.iter().copied(), BLUE.mix(0.25)))
        .map_err(|e| err(e.to_string()))?;
    let w = (positive.len() / 50).max(1);
    let smooth: Vec<(f64, f64)> = positive
        .windows(w)
        .map(|win| {
            let mean = win.iter().map(|p| p.1).sum::<f64>() / w as f64;
            (win[w - 1].0, mean)
        })
        .collect();
    chart
        .draw_series(LineSeries::new(smooth, RED.stroke_width(2)))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// A grid of grey-scale images (`images` row-major `[n, h, w]` in `[0, 1]`), `cols` per row,
/// each pixel drawn as a `zoom × zoom` block.
pub fn image_grid(
    path: &Path,
    images: &[f64],
    n: usize,
    h: usize,
    w: usize,
    cols: usize,
    zoom: u32,
) -> Result<()> {
    let err = draw_err(path);
    if images.len() != n * h * w {
        return Err(PlotError::BadLength {
            what: "image pixels",
            expected: n * h * w,
            got: images.len(),
        });
    }
    let cols = cols.max(1);
    let rows = n.div_ceil(cols);
    let pad = 2u32;
    let (cw, ch) = (w as u32 * zoom + pad, h as u32 * zoom + pad);
    let root = BitMapBackend::new(path, (cols as u32 * cw + pad, rows as u32 * ch + pad))
        .into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    for k in 0..n {
        let (r, c) = ((k / cols) as u32, (k % cols) as u32);
        for i in 0..h {
            for j in 0..w {
                let v = images[k * h * w + i * w + j].clamp(0.0, 1.0);
                let g = (255.0 * (1.0 - v)).round() as u8;
                let x0 = (pad + c * cw + j as u32 * zoom) as i32;
                let y0 = (pad + r * ch + i as u32 * zoom) as i32;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + zoom as i32, y0 + zoom as i32)],
                    RGBColor(g, g, g).filled(),
                ))
                .map_err(|e| err(e.to_string()))?;
            }
        }
    }
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{} is a PNG", path.display());
        let be = |o: usize| u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    fn figures_are_written_as_png() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let pts = [0.0, 0.0, 1.0, -1.0, 2.0, 2.0];
        let set = PointSet {
            label: "points",
            xy: &pts,
            color: RED,
        };
        let p = dir.join("scatter.png");
        scatter_panels(&p, "scatter", &[set, set], 3.0).unwrap();
        assert_eq!(png_size(&p), (840, 460));
        let p = dir.join("field.png");
        score_field(
            &p,
            "field",
            &pts,
            &[1.0, 0.0, 0.0, 1.0, -1.0, -1.0],
            Some(set),
            3.0,
        )
        .unwrap();
        assert_eq!(png_size(&p), (560, 580));
        let p = dir.join("loss.png");
        loss_curve(&p, "loss", &[0.0, 1.0, 2.0], &[3.0, 2.0, 1.0]).unwrap();
        assert_eq!(png_size(&p), (640, 400));
        let p = dir.join("grid.png");
        image_grid(&p, &[0.5; 2 * 3 * 4], 2, 3, 4, 2, 2).unwrap();
        assert_eq!(png_size(&p), (2 * 10 + 2, 8 + 2));
    }

    #[test]
    fn bad_lengths_are_reported() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            score_field(&dir.join("x.png"), "", &[0.0, 0.0], &[1.0], None, 1.0),
            Err(PlotError::BadLength {
                what: "score vectors",
                expected: 2,
                got: 1
            })
        ));
        assert!(matches!(
            image_grid(&dir.join("x.png"), &[0.0; 5], 1, 2, 3, 1, 1),
            Err(PlotError::BadLength {
                expected: 6,
                got: 5,
                ..
            })
        ));
        let bad = PointSet {
            label: "",
            xy: &[1.0],
            color: RED,
        };
        assert!(matches!(
            scatter_panels(&dir.join("x.png"), "", &[bad], 1.0),
            Err(PlotError::BadLength { .. })
        ));
    }
}
