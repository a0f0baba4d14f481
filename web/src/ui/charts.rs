//! Small server-rendered SVG charts, built with maud so every label is escaped: a line or
//! area chart, vertical stacked bars, horizontal (stacked) bars, a donut and a heatmap.
//! Each has axes with "nice" ticks, labels, a legend where it has several series, and a
//! tooltip per data point through SVG `<title>`. Data points carry `data-*` attributes with
//! their raw values, so tests (and browser tests) can read exactly what is drawn.
//!
//! Callers decide what to show when there is no data (`empty`); the charts assume at least
//! one point.

use maud::{Markup, html};

/// One row of horizontal bars: its label, a value per series (stacked left to right) and an
/// extra tooltip line; the product's own type, drawn as it is.
pub use upiflow_engine::product::Row;
pub use upiflow_engine::product::Unit;

/// Colours that read well on white.
pub mod color {
    pub const PRIMARY: &str = "#0b6bcb";
    pub const SUCCESS: &str = "#2e9d4b";
    pub const FAILED: &str = "#d93025";
    pub const PENDING: &str = "#e0a100";
    pub const AMOUNT: &str = "#6f4bd8";
    /// For series without a meaning of their own (merchants, partitions).
    pub const PALETTE: [&str; 8] = [
        "#0b6bcb", "#e8710a", "#2e9d4b", "#c5221f", "#6f4bd8", "#12858f", "#b06000", "#5f6b7a",
    ];
}

const AXIS_TEXT: &str = "#5f6b7a";
const GRID: &str = "#e6e9ee";
const BASELINE: &str = "#b8c0ca";

/// A number for an SVG attribute.
fn n(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// A raw value for a data attribute (integers without a fraction).
fn raw(v: f64) -> String {
    let v = v + 0.0;
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// About `count` round tick values from 0 to at least `max` (1, 2, 2.5 or 5 times a power
/// of ten apart).
pub fn nice_ticks(max: f64, count: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / count.max(1) as f64;
    let mag = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * mag);
    let steps = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// One series of values, `None` where there is no value (a gap, not a zero).
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<Option<f64>>,
}

impl Series {
    /// A series without gaps (the tests' shorthand; panels convert the product's series).
    #[cfg(test)]
    pub fn new(name: impl Into<String>, color: &'static str, values: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            color,
            values: values.into_iter().map(Some).collect(),
        }
    }
}

/// The categories or time buckets along x: a key per point (for `data-x`), its name in
/// tooltips, and which points get a tick label.
#[derive(Clone, Debug, Default)]
pub struct XAxis {
    pub keys: Vec<String>,
    pub names: Vec<String>,
    pub ticks: Vec<(usize, String)>,
    /// Points from this index on are still filling (the bucket that holds "now"): lines
    /// reach them dashed, so a dip there does not read as a drop.
    pub partial_from: Option<usize>,
}

impl XAxis {
    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Plot geometry inside a `WIDTH` x `height` view box.
struct Frame {
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

pub const WIDTH: f64 = 560.0;

impl Frame {
    fn new(height: f64, left: f64) -> Self {
        Self {
            height,
            left,
            right: WIDTH - 14.0,
            top: 12.0,
            bottom: height - 26.0,
        }
    }
    fn plot_w(&self) -> f64 {
        self.right - self.left
    }
    fn plot_h(&self) -> f64 {
        self.bottom - self.top
    }
    fn y(&self, v: f64, top: f64) -> f64 {
        self.bottom - (v / top) * self.plot_h()
    }
}

fn svg(label: &str, height: f64, body: Markup) -> Markup {
    html! {
        svg.chart-svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (n(WIDTH)) " " (n(height)) }
            role="img" aria-label=(label) font-size="11" font-family="system-ui, sans-serif" {
            (body)
        }
    }
}

/// Horizontal grid lines and y labels for `ticks`.
fn y_axis(f: &Frame, ticks: &[f64], unit: Unit) -> Markup {
    let top = *ticks.last().unwrap_or(&1.0);
    html! {
        g.y-axis {
            @for t in ticks {
                @let y = f.y(*t, top);
                line x1=(n(f.left)) x2=(n(f.right)) y1=(n(y)) y2=(n(y))
                    stroke=(if *t == 0.0 { BASELINE } else { GRID }) stroke-width="1" {}
                text x=(n(f.left - 6.0)) y=(n(y)) text-anchor="end" dominant-baseline="middle"
                    fill=(AXIS_TEXT) { (unit.short(*t)) }
            }
        }
    }
}

/// Tick labels under band `i` of `count` bands.
fn x_axis(f: &Frame, x: &XAxis) -> Markup {
    let band = f.plot_w() / x.len().max(1) as f64;
    html! {
        g.x-axis {
            @for (i, label) in &x.ticks {
                @let cx = f.left + (*i as f64 + 0.5) * band;
                line x1=(n(cx)) x2=(n(cx)) y1=(n(f.bottom)) y2=(n(f.bottom + 4.0)) stroke=(BASELINE) {}
                text x=(n(cx)) y=(n(f.bottom + 16.0)) text-anchor="middle" fill=(AXIS_TEXT) { (label) }
            }
        }
    }
}

/// The tooltip text of point `i`: its name, then one line per series.
fn point_title(x: &XAxis, series: &[Series], i: usize, unit: Unit, total: bool) -> String {
    let mut t = x.names.get(i).cloned().unwrap_or_default();
    if x.partial_from.is_some_and(|p| i >= p) {
        t.push_str(" (so far)");
    }
    let mut sum = 0.0;
    for s in series {
        let v = s.values.get(i).copied().flatten();
        sum += v.unwrap_or(0.0);
        let shown = v.map_or_else(|| "no data".to_string(), |v| unit.full(v));
        t.push_str(&format!("\n{}: {shown}", s.name));
    }
    if total && series.len() > 1 {
        t.push_str(&format!("\nTotal: {}", unit.full(sum)));
    }
    t
}

fn data_values(series: &[Series], i: usize) -> String {
    series
        .iter()
        .map(|s| {
            s.values
                .get(i)
                .copied()
                .flatten()
                .map_or_else(String::new, raw)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A legend of coloured swatches (HTML, under the chart).
pub fn legend(items: &[(&str, &'static str)]) -> Markup {
    html! {
        ul.chart-legend {
            @for (name, color) in items {
                li { span.swatch style={ "background:" (color) } {} (name) }
            }
        }
    }
}

fn series_legend(series: &[Series]) -> Markup {
    let items: Vec<(&str, &'static str)> =
        series.iter().map(|s| (s.name.as_str(), s.color)).collect();
    legend(&items)
}

/// Lines over x, one per series, with the area under a single series filled when `area`.
/// Gaps (`None`) break the line.
pub fn line(label: &str, x: &XAxis, series: &[Series], unit: Unit, area: bool) -> Markup {
    let f = Frame::new(220.0, 56.0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let ticks = nice_ticks(max, 4);
    let top = *ticks.last().unwrap_or(&1.0);
    let count = x.len().max(1);
    let band = f.plot_w() / count as f64;
    let px = |i: usize| f.left + (i as f64 + 0.5) * band;
    let dots = count <= 14 || (series.len() == 1 && count <= 40);
    let partial = x.partial_from.unwrap_or(usize::MAX);
    let body = html! {
        (y_axis(&f, &ticks, unit))
        (x_axis(&f, x))
        @for s in series {
            @let segments = segments(&s.values);
            @for seg in &segments {
                @let pts: Vec<String> = seg.iter().map(|&(i, v)| format!("{},{}", n(px(i)), n(f.y(v, top)))).collect();
                @if area && series.len() == 1 && seg.len() > 1 {
                    path fill=(s.color) fill-opacity="0.14" stroke="none"
                        d={ "M" (n(px(seg[0].0))) "," (n(f.bottom)) " L" (pts.join(" L")) " L" (n(px(seg[seg.len() - 1].0))) "," (n(f.bottom)) " Z" } {}
                }
                // Complete points solid; from the last complete one into the partial ones dashed.
                @let solid = seg.iter().filter(|p| p.0 < partial).count();
                @if solid > 1 {
                    polyline fill="none" stroke=(s.color) stroke-width="2" stroke-linejoin="round"
                        stroke-linecap="round" points=(pts[..solid].join(" ")) {}
                }
                @if solid < seg.len() && seg.len() > 1 {
                    polyline.partial fill="none" stroke=(s.color) stroke-width="2" stroke-dasharray="3 3"
                        stroke-linecap="round" points=(pts[solid.saturating_sub(1)..].join(" ")) {}
                }
                @if dots || seg.len() == 1 {
                    @for &(i, v) in seg {
                        circle cx=(n(px(i))) cy=(n(f.y(v, top))) r="2.6" fill=(s.color) {}
                    }
                }
            }
        }
        g.hover {
            @for i in 0..x.len() {
                rect.pt x=(n(f.left + i as f64 * band)) y=(n(f.top)) width=(n(band)) height=(n(f.plot_h()))
                    fill="transparent" data-x=(x.keys[i]) data-v=(data_values(series, i)) {
                    title { (point_title(x, series, i, unit, false)) }
                }
            }
        }
    };
    html! {
        (svg(label, f.height, body))
        @if series.len() > 1 { (series_legend(series)) }
    }
}

/// Runs of consecutive present values: `[(index, value)]` per run.
fn segments(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => cur.push((i, *v)),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Vertical bars over x, the series stacked bottom to top in order.
pub fn stacked_bars(label: &str, x: &XAxis, series: &[Series], unit: Unit) -> Markup {
    let f = Frame::new(220.0, 56.0);
    let totals: Vec<f64> = (0..x.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().flatten().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let ticks = nice_ticks(totals.iter().fold(0.0f64, |a, b| a.max(*b)), 4);
    let top = *ticks.last().unwrap_or(&1.0);
    let band = f.plot_w() / x.len().max(1) as f64;
    let gap = (band * 0.22).clamp(1.0, 14.0);
    let body = html! {
        (y_axis(&f, &ticks, unit))
        (x_axis(&f, x))
        @for i in 0..x.len() {
            @let x0 = f.left + i as f64 * band;
            g.bar {
                @for (from, to, color) in stack(series.iter().map(|s| (s.values.get(i).copied().flatten().unwrap_or(0.0), s.color))) {
                    @let (y0, y1) = (f.y(from, top), f.y(to, top));
                    rect x=(n(x0 + gap / 2.0)) y=(n(y1)) width=(n((band - gap).max(1.0))) height=(n((y0 - y1).max(0.5)))
                        fill=(color) {}
                }
                rect.pt x=(n(x0)) y=(n(f.top)) width=(n(band)) height=(n(f.plot_h())) fill="transparent"
                    data-x=(x.keys[i]) data-v=(data_values(series, i)) {
                    title { (point_title(x, series, i, unit, true)) }
                }
            }
        }
    };
    html! {
        (svg(label, f.height, body))
        @if series.len() > 1 { (series_legend(series)) }
    }
}

/// Horizontal bars, one per row, each stacked from its values in series order; the row's
/// total is written after its bar.
pub fn hbars(label: &str, rows: &[Row], series: &[(&str, &'static str)], unit: Unit) -> Markup {
    let longest = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(4);
    let left = (longest as f64 * 6.4 + 14.0).clamp(60.0, 210.0);
    let row_h = 22.0;
    let height = 12.0 + rows.len() as f64 * row_h + 26.0;
    let mut f = Frame::new(height, left);
    f.right = WIDTH - 64.0;
    let max = rows
        .iter()
        .map(|r| r.values.iter().sum::<f64>())
        .fold(0.0f64, f64::max);
    let ticks = nice_ticks(max, 4);
    let top = *ticks.last().unwrap_or(&1.0);
    let px = |v: f64| f.left + v / top * f.plot_w();
    let body = html! {
        g.x-axis {
            @for t in &ticks {
                line x1=(n(px(*t))) x2=(n(px(*t))) y1=(n(f.top)) y2=(n(f.bottom))
                    stroke=(if *t == 0.0 { BASELINE } else { GRID }) {}
                text x=(n(px(*t))) y=(n(f.bottom + 16.0)) text-anchor="middle" fill=(AXIS_TEXT) { (unit.short(*t)) }
            }
        }
        @for (i, r) in rows.iter().enumerate() {
            @let y = f.top + i as f64 * row_h;
            @let total: f64 = r.values.iter().sum();
            g.bar {
                text x=(n(f.left - 8.0)) y=(n(y + row_h / 2.0)) text-anchor="end" dominant-baseline="middle"
                    fill="#1d2430" { (truncate(&r.label, 32)) }
                @for (from, to, color) in stack(r.values.iter().enumerate().map(|(j, v)| (*v, series.get(j).map_or(color::PRIMARY, |s| s.1)))) {
                    rect x=(n(px(from))) y=(n(y + 4.0)) width=(n((px(to) - px(from)).max(0.5)))
                        height=(n(row_h - 8.0)) rx="2" fill=(color) {}
                }
                text x=(n(px(total) + 5.0)) y=(n(y + row_h / 2.0)) dominant-baseline="middle" fill=(AXIS_TEXT) {
                    (unit.short(total))
                }
                rect.pt x="0" y=(n(y)) width=(n(WIDTH)) height=(n(row_h)) fill="transparent"
                    data-x=(r.label) data-v=(r.values.iter().map(|v| raw(*v)).collect::<Vec<_>>().join(",")) {
                    title {
                        (r.label)
                        @for (j, v) in r.values.iter().enumerate() {
                            @if series.len() > 1 { "\n" (series.get(j).map_or("", |s| s.0)) ": " (unit.full(*v)) }
                        }
                        @if series.len() > 1 { "\nTotal: " (unit.full(total)) } @else { ": " (unit.full(total)) }
                        @if let Some(note) = &r.note { "\n" (note) }
                    }
                }
            }
        }
    };
    html! {
        (svg(label, height, body))
        @if series.len() > 1 { (legend(series)) }
    }
}

/// The spans `(from, to, colour)` of positive values stacked in order.
fn stack(values: impl Iterator<Item = (f64, &'static str)>) -> Vec<(f64, f64, &'static str)> {
    let mut base = 0.0;
    let mut out = Vec::new();
    for (v, color) in values {
        if v > 0.0 {
            out.push((base, base + v, color));
            base += v;
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// A slice of a donut.
#[derive(Clone, Debug)]
pub struct Slice {
    pub name: String,
    pub color: &'static str,
    pub value: f64,
}

/// A donut of the slices' shares with the total in its middle, and a legend with each
/// slice's value and share beside it.
pub fn donut(label: &str, slices: &[Slice], unit: Unit, caption: &str) -> Markup {
    let height = 200.0;
    let (cx, cy, r_out, r_in) = (110.0, 100.0, 84.0, 54.0);
    let total: f64 = slices.iter().map(|s| s.value.max(0.0)).sum();
    let point = |a: f64, r: f64| (cx + r * a.cos(), cy + r * a.sin());
    // Each slice's share and start angle (clockwise from twelve o'clock).
    let mut starts = Vec::with_capacity(slices.len());
    let mut angle = -std::f64::consts::FRAC_PI_2;
    for s in slices {
        let share = if total > 0.0 {
            s.value.max(0.0) / total
        } else {
            0.0
        };
        starts.push((share, angle));
        angle += share * std::f64::consts::TAU;
    }
    let body = html! {
        @for (s, &(share, a0)) in slices.iter().zip(&starts) {
            @let title = format!("{}: {} ({:.1}%)", s.name, unit.full(s.value), share * 100.0);
            @if share >= 0.999_999 {
                // A full ring: two circles (an arc cannot start and end at one point).
                path fill=(s.color) fill-rule="evenodd" data-slice=(s.name) data-v=(raw(s.value))
                    d={ "M" (n(cx - r_out)) "," (n(cy)) " a" (n(r_out)) "," (n(r_out)) " 0 1,0 " (n(2.0 * r_out)) ",0 a" (n(r_out)) "," (n(r_out)) " 0 1,0 " (n(-2.0 * r_out)) ",0 Z"
                        " M" (n(cx - r_in)) "," (n(cy)) " a" (n(r_in)) "," (n(r_in)) " 0 1,0 " (n(2.0 * r_in)) ",0 a" (n(r_in)) "," (n(r_in)) " 0 1,0 " (n(-2.0 * r_in)) ",0 Z" } {
                    title { (title) }
                }
            } @else if share > 0.0 {
                @let a1 = a0 + share * std::f64::consts::TAU;
                @let large = if a1 - a0 > std::f64::consts::PI { 1 } else { 0 };
                @let (x0, y0) = point(a0, r_out);
                @let (x1, y1) = point(a1, r_out);
                @let (x2, y2) = point(a1, r_in);
                @let (x3, y3) = point(a0, r_in);
                path fill=(s.color) stroke="#fff" stroke-width="1.5" data-slice=(s.name) data-v=(raw(s.value))
                    d={ "M" (n(x0)) "," (n(y0)) " A" (n(r_out)) "," (n(r_out)) " 0 " (large) ",1 " (n(x1)) "," (n(y1))
                        " L" (n(x2)) "," (n(y2)) " A" (n(r_in)) "," (n(r_in)) " 0 " (large) ",0 " (n(x3)) "," (n(y3)) " Z" } {
                    title { (title) }
                }
            } @else {
                // Nothing to draw, but the value is still there for tests and tooltips.
                g data-slice=(s.name) data-v=(raw(s.value)) { title { (title) } }
            }
        }
        text x=(n(cx)) y=(n(cy - 4.0)) text-anchor="middle" font-size="20" font-weight="600" fill="#1d2430" { (unit.short(total)) }
        text x=(n(cx)) y=(n(cy + 15.0)) text-anchor="middle" fill=(AXIS_TEXT) { (caption) }
        @for (i, s) in slices.iter().enumerate() {
            @let y = 52.0 + i as f64 * 34.0;
            @let share = if total > 0.0 { s.value.max(0.0) / total * 100.0 } else { 0.0 };
            rect x="236" y=(n(y - 9.0)) width="12" height="12" rx="2" fill=(s.color) {}
            text x="256" y=(n(y + 1.0)) dominant-baseline="middle" font-size="13" fill="#1d2430" { (s.name) }
            text x=(n(WIDTH - 16.0)) y=(n(y + 1.0)) dominant-baseline="middle" text-anchor="end" font-size="13" fill="#1d2430" {
                (unit.full(s.value)) " · " (format!("{share:.1}%"))
            }
            line x1="236" x2=(n(WIDTH - 16.0)) y1=(n(y + 15.0)) y2=(n(y + 15.0)) stroke=(GRID) {}
        }
    };
    svg(label, height, body)
}

/// A grid of cells (rows x columns), each coloured by its value from white to `hue`, with
/// a scale from 0 to the largest value underneath.
pub struct Heatmap<'a> {
    pub rows: &'a [String],
    pub columns: &'a [String],
    /// Keys of rows and columns for `data-row` / `data-col`.
    pub row_keys: &'a [String],
    /// values[row][column]; `None` where there can be no value (not yet happened).
    pub values: &'a [Vec<Option<f64>>],
    /// Tooltip name of a cell.
    pub cell_name: &'a dyn Fn(usize, usize) -> String,
    /// Which column labels to write.
    pub column_every: usize,
}

pub fn heatmap(label: &str, h: &Heatmap, unit: Unit) -> Markup {
    let left = 78.0;
    let right = WIDTH - 12.0;
    let cols = h.columns.len().max(1);
    let cell_w = (right - left) / cols as f64;
    let cell_h = if h.rows.len() > 14 { 16.0 } else { 20.0 };
    let row_font = if h.rows.len() > 14 { "10" } else { "11" };
    let top = 20.0;
    let bottom = top + h.rows.len() as f64 * cell_h;
    let height = bottom + 40.0;
    let max = h
        .values
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, b| a.max(*b));
    let shade = |v: f64| -> String {
        if v <= 0.0 || max <= 0.0 {
            return "#f1f3f6".into();
        }
        // From a pale blue to the primary colour, by the square root of the share, so small
        // values stay visible next to a peak.
        let t = (v / max).sqrt();
        let (a, b) = ((0xe3, 0xee, 0xfa), (0x08, 0x4a, 0x94));
        let mix = |x: i32, y: i32| (x as f64 + (y - x) as f64 * t).round() as i32;
        format!(
            "#{:02x}{:02x}{:02x}",
            mix(a.0, b.0),
            mix(a.1, b.1),
            mix(a.2, b.2)
        )
    };
    let body = html! {
        @for (j, c) in h.columns.iter().enumerate() {
            @if j.is_multiple_of(h.column_every.max(1)) {
                text x=(n(left + (j as f64 + 0.5) * cell_w)) y=(n(top - 6.0)) text-anchor="middle" fill=(AXIS_TEXT) { (c) }
            }
        }
        @for (i, r) in h.rows.iter().enumerate() {
            @let y = top + i as f64 * cell_h;
            text x=(n(left - 6.0)) y=(n(y + cell_h / 2.0)) text-anchor="end" dominant-baseline="middle"
                font-size=(row_font) fill=(AXIS_TEXT) { (r) }
            @for j in 0..h.columns.len() {
                @let v = h.values.get(i).and_then(|row| row.get(j)).copied().flatten();
                rect.cell x=(n(left + j as f64 * cell_w + 0.5)) y=(n(y + 0.5)) width=(n(cell_w - 1.0)) height=(n(cell_h - 1.0))
                    rx="1.5" fill=(v.map_or_else(|| "#fafbfc".to_string(), shade))
                    data-row=(h.row_keys.get(i).map_or("", String::as_str)) data-col=(j)
                    data-v=(v.map_or_else(String::new, raw)) {
                    title { ((h.cell_name)(i, j)) ": " (v.map_or_else(|| "not yet".to_string(), |v| unit.full(v))) }
                }
            }
        }
        // The colour scale.
        @let sx = left;
        @let sw = 160.0;
        @let sy = bottom + 14.0;
        @for k in 0..16 {
            rect x=(n(sx + k as f64 * sw / 16.0)) y=(n(sy)) width=(n(sw / 16.0 + 0.3)) height="8"
                fill=(shade(if k == 0 { 0.0 } else { max * (k as f64 / 15.0).powi(2) })) {}
        }
        text x=(n(sx - 6.0)) y=(n(sy + 4.0)) text-anchor="end" dominant-baseline="middle" fill=(AXIS_TEXT) { "0" }
        text x=(n(sx + sw + 6.0)) y=(n(sy + 4.0)) dominant-baseline="middle" fill=(AXIS_TEXT) { (unit.short(max)) }
    };
    svg(label, height, body)
}

/// What a panel shows when its range holds no data.
pub fn empty() -> Markup {
    html! { div.chart-empty { "no data in this range" } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(97.0, 4), vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(nice_ticks(3.0, 4), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(0.0, 4), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let t = nice_ticks(123_456.0, 4);
        assert!(*t.last().unwrap() >= 123_456.0 && t.len() <= 6, "{t:?}");
    }

    #[test]
    fn labels_are_escaped_and_svg_elements_closed() {
        let x = XAxis {
            keys: vec!["a".into(), "b".into()],
            names: vec!["<b>".into(), "b".into()],
            ticks: vec![(0, "<i>".into())],
            partial_from: None,
        };
        let s = [Series::new("x&y", color::PRIMARY, vec![1.0, 2.0])];
        let out = line("t", &x, &s, Unit::Count, true).into_string();
        assert!(!out.contains("<b>") && !out.contains("<i>"));
        assert!(out.contains("&lt;b&gt;") && out.contains("x&amp;y"));
        assert!(!out.contains("<rect") || out.contains("</rect>"));
        assert!(out.contains(r#"data-x="b" data-v="2""#), "{out}");
    }

    #[test]
    fn a_gap_breaks_a_line() {
        let v = [Some(1.0), None, Some(2.0), Some(3.0)];
        assert_eq!(segments(&v), vec![vec![(0, 1.0)], vec![(2, 2.0), (3, 3.0)]]);
    }
}
