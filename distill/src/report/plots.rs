//! PNG figures for the comparison report: training curves, confusion matrices, reliability diagrams
//! (after Guo et al. 2017, figure 1) and bar charts. Only drawing lives here; report.rs computes the
//! numbers. plotters draws into an RGB buffer in memory and `png` encodes it, so a figure is written like
//! every other output (`write_atomic`) and plotters' `image` stack is not needed. Text uses DejaVu Sans,
//! embedded from distill/assets/ (licence beside it): CI machines often have no system fonts.

use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use train::calibration::Calibration;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The family name the embedded font is registered under (plotters' default family for labels).
const FONT: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// One colour per model, in the order models are listed (matplotlib's tab10), so that a model has the
/// same colour in every figure.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const GREY: RGBColor = RGBColor(110, 110, 110);
const LIGHT_GREY: RGBColor = RGBColor(220, 220, 220);

fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "plots: the embedded DejaVu Sans font could not be read"
        ))
    }
}

/// Draws a `w` × `h` figure on white with `draw` and returns it PNG-encoded.
fn render(w: u32, h: u32, draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<Vec<u8>> {
    register_font()?;
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// A named line: (x, y) points in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// (min, max) of `values`, widened by `pad` of the span (or by 1 when they are all equal).
fn span(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let d = if hi > lo { (hi - lo) * pad } else { 1.0 };
    (lo - d, hi + d)
}

/// Centred moving average over `window` points (fewer at the ends).
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let half = window / 2;
    (0..points.len())
        .map(|i| {
            let part = &points[i.saturating_sub(half)..(i + half + 1).min(points.len())];
            let mean = part.iter().map(|p| p.1).sum::<f64>() / part.len() as f64;
            (points[i].0, mean)
        })
        .collect()
}

/// How `line_chart` draws its series.
#[derive(Clone, Copy)]
enum Style {
    /// Few points (dev evaluations): lines with a marker on each point.
    Markers,
    /// Many noisy points (per-batch losses): the raw line faint, a moving average over it bold.
    Smoothed,
}

/// Line chart of `series` against step, with a legend, and dashed horizontal reference lines (name, y)
/// in grey.
#[allow(clippy::too_many_arguments)]
fn line_chart(
    area: &Area<'_>,
    title: &str,
    y_desc: &str,
    series: &[Series],
    references: &[(String, f64)],
    y_range: (f64, f64),
    x_max: f64,
    style: Style,
    legend: SeriesLabelPosition,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(24.0))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, y_range.0..y_range.1)?;
    let y_decimals = if y_range.1 - y_range.0 > 5.0 { 0 } else { 1 };
    chart
        .configure_mesh()
        .max_light_lines(2)
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(LIGHT_GREY)
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
        .label_style(font(16.0))
        .axis_desc_style(font(18.0))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        let line = match style {
            Style::Markers => s.points.clone(),
            Style::Smoothed => {
                chart.draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    c.mix(0.3).stroke_width(1),
                ))?;
                // About 15 averaged windows across the run, at least 3 points each.
                moving_average(&s.points, (s.points.len() / 15).max(3) | 1)
            }
        };
        chart
            .draw_series(LineSeries::new(line, c.stroke_width(3)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3)));
        if let Style::Markers = style {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 5, c.filled())))?;
        }
    }
    for (name, y) in references {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, *y), (x_max, *y)],
                10,
                6,
                GREY.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], GREY.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font(font(16.0))
        .background_style(WHITE.mix(0.85))
        .border_style(LIGHT_GREY)
        .draw()?;
    Ok(())
}

/// Training curves: every loss term (left) and every dev metric (right, in %) against step, with the
/// dev `references` (e.g. the teacher's score, as fractions) as dashed lines.
pub fn training_curves(
    losses: &[Series],
    dev: &[Series],
    references: &[(String, f64)],
) -> Result<Vec<u8>> {
    let x_max = losses
        .iter()
        .chain(dev)
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    render(1400, 520, |root| {
        let halves = root.split_evenly((1, 2));
        let (_, hi) = span(
            losses.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
            0.0,
        );
        line_chart(
            &halves[0],
            "Student training loss",
            "loss (bold: moving average)",
            losses,
            &[],
            (0.0, hi * 1.05),
            x_max,
            Style::Smoothed,
            // Losses fall from the upper left: the upper right stays clear.
            SeriesLabelPosition::UpperRight,
        )?;
        let dev_pct: Vec<Series> = dev
            .iter()
            .map(|s| Series {
                name: s.name.clone(),
                points: s.points.iter().map(|&(x, y)| (x, 100.0 * y)).collect(),
            })
            .collect();
        let refs_pct: Vec<(String, f64)> = references
            .iter()
            .map(|(n, y)| (n.clone(), 100.0 * y))
            .collect();
        let range = span(
            dev_pct
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .chain(refs_pct.iter().map(|r| r.1)),
            0.15,
        );
        line_chart(
            &halves[1],
            "Student dev score",
            "dev score (%)",
            &dev_pct,
            &refs_pct,
            range,
            x_max,
            Style::Markers,
            SeriesLabelPosition::LowerRight,
        )?;
        Ok(())
    })
}

/// Shortens `s` to at most `max` characters with an ellipsis (model names become panel titles).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

/// Confusion matrices side by side: rows the true class, columns the predicted one; each cell shows
/// its count and its share of the row (the recall of that class), and is shaded by that share.
pub fn confusion_matrices(models: &[(&str, &[Vec<usize>])], labels: &[String]) -> Result<Vec<u8>> {
    let k = labels.len().max(1);
    // A fixed grid size; the left margin fits the class names (DejaVu Sans at 16 px: ~9 px a character).
    let longest = labels
        .iter()
        .map(|l| clip(l, 18).chars().count())
        .max()
        .unwrap_or(1) as i32;
    let layout = ConfusionLayout {
        left: 50 + (longest * 9).clamp(20, 170),
        top: 56,
        grid: 420,
    };
    let panel_w = (layout.left + layout.grid + 30) as u32;
    let height = (layout.top + layout.grid + 80) as u32;
    let n = models.len().max(1);
    render(panel_w * n as u32, height, |root| {
        for (area, (name, matrix)) in root.split_evenly((1, n)).iter().zip(models) {
            confusion_panel(area, name, matrix, labels, k, &layout)?;
        }
        Ok(())
    })
}

/// Pixel layout of one confusion-matrix panel.
struct ConfusionLayout {
    left: i32,
    top: i32,
    /// Side of the k × k grid.
    grid: i32,
}

fn confusion_panel(
    area: &Area<'_>,
    name: &str,
    matrix: &[Vec<usize>],
    labels: &[String],
    k: usize,
    layout: &ConfusionLayout,
) -> Result<()> {
    let (w, _) = area.dim_in_pixel();
    area.draw_text(
        &clip(name, 40),
        &font(22.0).pos(Pos::new(HPos::Center, VPos::Top)),
        (w as i32 / 2, 10),
    )?;
    let cell = layout.grid / k as i32;
    let (x0, y0) = (layout.left, layout.top);
    for (t, row) in matrix.iter().enumerate().take(k) {
        let total: usize = row.iter().sum();
        for (p, &n) in row.iter().enumerate().take(k) {
            let share = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            // White to the teacher blue, by the row share.
            let blend = |c: u8| (255.0 - share * (255.0 - c as f64)).round() as u8;
            let fill = RGBColor(blend(31), blend(119), blend(180));
            let (cx, cy) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
            area.draw(&Rectangle::new(
                [(cx, cy), (cx + cell, cy + cell)],
                fill.filled(),
            ))?;
            // A grey outline keeps empty (white) cells visible.
            area.draw(&Rectangle::new(
                [(cx, cy), (cx + cell, cy + cell)],
                RGBColor(200, 200, 200),
            ))?;
            let ink = if share > 0.55 { WHITE } else { BLACK };
            let big = (cell as f64 / 6.0).clamp(12.0, 30.0);
            area.draw_text(
                &n.to_string(),
                &font(big)
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
                (cx + cell / 2, cy + cell / 2),
            )?;
            area.draw_text(
                &format!("{:.1}%", 100.0 * share),
                &font((big * 0.65).max(14.0))
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
                (cx + cell / 2, cy + cell / 2 + 6),
            )?;
        }
    }
    let grid = cell * k as i32;
    for (i, l) in labels.iter().enumerate().take(k) {
        let c = i as i32 * cell + cell / 2;
        area.draw_text(
            &clip(l, 18),
            &font(16.0).pos(Pos::new(HPos::Center, VPos::Top)),
            (x0 + c, y0 + grid + 8),
        )?;
        area.draw_text(
            &clip(l, 18),
            &font(16.0).pos(Pos::new(HPos::Right, VPos::Center)),
            (x0 - 8, y0 + c),
        )?;
    }
    area.draw_text(
        "predicted class",
        &font(18.0).pos(Pos::new(HPos::Center, VPos::Top)),
        (x0 + grid / 2, y0 + grid + 36),
    )?;
    area.draw_text(
        "true class",
        &font(18.0)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Top)),
        (12, y0 + grid / 2),
    )?;
    Ok(())
}

/// Reliability diagrams side by side (Guo et al. 2017, figure 1): per confidence bin, the accuracy
/// (bars) against the diagonal of perfect calibration, the gap to the bin's mean confidence shaded; below,
/// the share of predictions in each bin.
pub fn reliability_diagrams(models: &[(&str, &Calibration)]) -> Result<Vec<u8>> {
    let n = models.len().max(1);
    render(600 * n as u32, 720, |root| {
        for (i, (area, (name, cal))) in root.split_evenly((1, n)).iter().zip(models).enumerate() {
            reliability_panel(area, name, cal, color(i))?;
        }
        Ok(())
    })
}

fn reliability_panel(area: &Area<'_>, name: &str, cal: &Calibration, c: RGBColor) -> Result<()> {
    let (_, h) = area.dim_in_pixel();
    let (top, bottom) = area.split_vertically(h * 7 / 10);
    let title = format!("{} — ECE {:.2}%", clip(name, 34), 100.0 * cal.ece);
    let mut chart = ChartBuilder::on(&top)
        .caption(title, font(22.0))
        .margin(12)
        .margin_bottom(4)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(LIGHT_GREY)
        .y_desc("accuracy")
        .label_style(font(16.0))
        .axis_desc_style(font(18.0))
        .draw()?;
    let gap = RGBColor(214, 39, 40);
    for b in &cal.bins {
        let (Some(acc), Some(conf)) = (b.accuracy, b.confidence) else {
            continue;
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(b.lower, 0.0), (b.upper, acc)],
            c.mix(0.85).filled(),
        )))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(b.lower, 0.0), (b.upper, acc)],
            WHITE.stroke_width(1),
        )))?;
        // Filled and outlined in red: the outline shows the gap also where it lies over the bar
        // (accuracy above confidence).
        let span = [(b.lower, acc.min(conf)), (b.upper, acc.max(conf))];
        chart.draw_series([
            Rectangle::new(span, gap.mix(0.35).filled()),
            Rectangle::new(span, gap.stroke_width(2)),
        ])?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            10,
            6,
            GREY.stroke_width(2),
        ))?
        .label("perfectly calibrated")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], GREY.stroke_width(2)));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            c.filled(),
        )))?
        .label("accuracy in bin")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 22, y + 6)], c.filled()));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            gap.mix(0.35).filled(),
        )))?
        .label("gap to mean confidence")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + Rectangle::new([(0, -6), (22, 6)], gap.mix(0.35).filled())
                + Rectangle::new([(0, -6), (22, 6)], gap.stroke_width(2))
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(font(16.0))
        .background_style(WHITE.mix(0.9))
        .border_style(LIGHT_GREY)
        .draw()?;

    let total = cal.bins.iter().map(|b| b.count).sum::<usize>().max(1) as f64;
    let share_max = cal
        .bins
        .iter()
        .map(|b| b.count as f64 / total)
        .fold(0.0, f64::max)
        .max(0.01);
    let mut hist = ChartBuilder::on(&bottom)
        .margin(12)
        .margin_top(4)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, 0f64..share_max * 110.0)?;
    hist.configure_mesh()
        .max_light_lines(1)
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(LIGHT_GREY)
        .x_desc("confidence (largest softmax probability)")
        .y_desc("% of examples")
        .y_labels(4)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(font(16.0))
        .axis_desc_style(font(18.0))
        .draw()?;
    hist.draw_series(cal.bins.iter().filter(|b| b.count > 0).map(|b| {
        Rectangle::new(
            [(b.lower, 0.0), (b.upper, 100.0 * b.count as f64 / total)],
            c.mix(0.6).filled(),
        )
    }))?;
    Ok(())
}

/// One bar chart: a value per model, in model order (the colour follows the position).
#[derive(Debug, Clone, PartialEq)]
pub struct BarPanel {
    pub title: String,
    /// Appended to each value label, e.g. " ms".
    pub unit: String,
    pub decimals: usize,
    pub bars: Vec<(String, f64)>,
}

/// Horizontal bar charts stacked vertically, one per panel, each bar labelled with its value. Models
/// are rows, so further ones (a quantised student, say) only add a row.
pub fn bar_panels(panels: &[BarPanel]) -> Result<Vec<u8>> {
    let rows: usize = panels.iter().map(|p| p.bars.len()).sum();
    let row_h = 44i32;
    let height = (panels.len() as i32 * 60 + rows as i32 * row_h + 20) as u32;
    let names: Vec<&str> = panels
        .iter()
        .flat_map(|p| p.bars.iter().map(|b| b.0.as_str()))
        .collect();
    render(1100, height, |root| {
        // The name column fits the longest name (DejaVu Sans at 17 px: about 9 px a character).
        let name_w = names
            .iter()
            .map(|n| clip(n, 44).chars().count() as i32 * 9)
            .max()
            .unwrap_or(60)
            + 20;
        let (w, _) = root.dim_in_pixel();
        let bar_w = w as i32 - name_w - 150;
        let mut y = 10;
        for p in panels {
            root.draw_text(
                &p.title,
                &font(21.0).pos(Pos::new(HPos::Left, VPos::Top)),
                (12, y + 12),
            )?;
            y += 50;
            let max = p.bars.iter().map(|b| b.1).fold(0.0, f64::max);
            for (i, (name, v)) in p.bars.iter().enumerate() {
                let len = if max > 0.0 && v.is_finite() {
                    ((v / max) * bar_w as f64).round() as i32
                } else {
                    0
                };
                let mid = y + row_h / 2;
                root.draw_text(
                    &clip(name, 44),
                    &font(17.0).pos(Pos::new(HPos::Right, VPos::Center)),
                    (name_w - 10, mid),
                )?;
                root.draw(&Rectangle::new(
                    [(name_w, y + 6), (name_w + len.max(1), y + row_h - 6)],
                    color(i).filled(),
                ))?;
                let label = if v.is_finite() {
                    format!("{:.*}{}", p.decimals, v, p.unit)
                } else {
                    "n/a".to_string()
                };
                root.draw_text(
                    &label,
                    &font(17.0).pos(Pos::new(HPos::Left, VPos::Center)),
                    (name_w + len.max(1) + 8, mid),
                )?;
                y += row_h;
            }
            y += 10;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use train::calibration::calibration;

    /// Decodes a PNG and returns its size, failing on anything that is not one.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        (info.width, info.height)
    }

    /// Whether the image has pixels that are neither white nor one flat colour (text was drawn).
    fn has_ink(bytes: &[u8]) -> bool {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        buf.chunks(3)
            .any(|p| p[0] < 100 && p[1] < 100 && p[2] < 100)
    }

    #[test]
    fn every_figure_is_a_png_with_text() {
        let losses = vec![Series {
            name: "loss".into(),
            points: vec![(1.0, 0.9), (10.0, 0.5), (20.0, 0.3)],
        }];
        let dev = vec![Series {
            name: "accuracy".into(),
            points: vec![(10.0, 0.7), (20.0, 0.8)],
        }];
        let png = training_curves(&losses, &dev, &[("teacher".into(), 0.85)]).unwrap();
        assert_eq!(png_size(&png), (1400, 520));
        assert!(has_ink(&png));

        let m = vec![vec![40, 10], vec![5, 45]];
        let labels = vec!["negative".to_string(), "positive".to_string()];
        let png = confusion_matrices(&[("teacher", &m), ("student", &m)], &labels).unwrap();
        assert!(png_size(&png).0 > 800);
        assert!(has_ink(&png));

        let rows: Vec<Vec<f32>> = (0..50).map(|i| vec![0.0, i as f32 / 10.0]).collect();
        let gold: Vec<usize> = (0..50).map(|i| usize::from(i % 3 != 0)).collect();
        let cal = calibration(&rows, &gold, 15);
        let png = reliability_diagrams(&[("teacher", &cal), ("student", &cal)]).unwrap();
        assert_eq!(png_size(&png), (1200, 720));

        let panel = BarPanel {
            title: "batch-1 latency, p50".into(),
            unit: " ms".into(),
            decimals: 1,
            bars: vec![("teacher".into(), 12.5), ("student".into(), f64::NAN)],
        };
        let png = bar_panels(&[panel.clone(), panel]).unwrap();
        assert!(png_size(&png).1 > 100);
        assert!(has_ink(&png));
    }

    #[test]
    fn empty_inputs_still_draw() {
        assert!(training_curves(&[], &[], &[]).is_ok());
        assert!(bar_panels(&[]).is_ok());
    }

    #[test]
    fn moving_average_is_centred_and_shrinks_at_the_ends() {
        let p = [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 10.0)];
        let m = moving_average(&p, 3);
        assert_eq!(m, vec![(0.0, 1.5), (1.0, 2.0), (2.0, 5.0), (3.0, 6.5)]);
    }

    #[test]
    fn long_names_are_clipped() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
