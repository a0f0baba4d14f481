//! Draws a product's dashboard panels ([`upiflow_engine::product::Panel`]) as markup with
//! [`super::charts`]: headline numbers, titled panels and their charts, with time axes
//! labelled in the dashboard's zone.

use std::cell::OnceCell;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use maud::{Markup, html};
use upiflow_engine::product::{self as p, Axis, Block, Chart, Panel, Range, Stat, Tone, Window};

use super::charts::{self, Series, Slice, XAxis, color};

/// The panels of one region, in order.
pub fn region(panels: &[Panel], w: &Window, zone: &str) -> Markup {
    let axes = Axes {
        w,
        zone,
        buckets: OnceCell::new(),
        days: OnceCell::new(),
    };
    html! {
        @for panel in panels { (draw_panel(panel, &axes)) }
    }
}

/// The x axes of a region, each built once.
struct Axes<'a> {
    w: &'a Window,
    zone: &'a str,
    buckets: OnceCell<XAxis>,
    days: OnceCell<XAxis>,
}

impl Axes<'_> {
    fn get(&self, a: Axis) -> &XAxis {
        match a {
            Axis::Buckets => self
                .buckets
                .get_or_init(|| time_axis(self.w, &self.w.buckets(), self.zone)),
            Axis::Days => self.days.get_or_init(|| day_axis(&self.w.days())),
        }
    }
}

fn draw_panel(panel: &Panel, axes: &Axes) -> Markup {
    match panel {
        Panel::Stats { id, stats, note } => html! {
            section.panel.stats data-panel=(id) {
                @for s in stats {
                    div.stat { (stat_value(s)) span.stat-label { (s.label) } }
                }
                div.stat.range-note { span.muted { (note) } }
            }
        },
        Panel::Titled {
            id,
            title,
            subtitle,
            blocks,
        } => html! {
            section.panel data-panel=(id) {
                header.panel-head {
                    h3 { (title) }
                    @if let Some(sub) = subtitle { span.muted { (sub) } }
                }
                @for b in blocks { (block(b, axes)) }
            }
        },
    }
}

fn stat_value(s: &Stat) -> Markup {
    html! { span.stat-value.failed[s.failed] data-v=[s.raw.as_deref()] { (s.shown) } }
}

fn block(b: &Block, axes: &Axes) -> Markup {
    match b {
        Block::BigStat(s) => html! {
            div.big-stat { (stat_value(s)) span.stat-label { (s.label) } }
        },
        Block::Empty(None) => charts::empty(),
        Block::Empty(Some(message)) => html! { div.chart-empty { (message) } },
        Block::Chart(c) => chart(c, axes),
    }
}

fn hue(t: Tone) -> &'static str {
    match t {
        Tone::Primary => color::PRIMARY,
        Tone::Success => color::SUCCESS,
        Tone::Failed => color::FAILED,
        Tone::Pending => color::PENDING,
        Tone::Amount => color::AMOUNT,
        Tone::Palette(i) => color::PALETTE[i % color::PALETTE.len()],
    }
}

fn series(s: &[p::Series]) -> Vec<Series> {
    s.iter()
        .map(|s| Series {
            name: s.name.clone(),
            color: hue(s.tone),
            values: s.values.clone(),
        })
        .collect()
}

fn chart(c: &Chart, axes: &Axes) -> Markup {
    match c {
        Chart::Line {
            label,
            x,
            series: s,
            unit,
            area,
        } => charts::line(label, axes.get(*x), &series(s), *unit, *area),
        Chart::StackedBars {
            label,
            x,
            series: s,
            unit,
        } => charts::stacked_bars(label, axes.get(*x), &series(s), *unit),
        Chart::HBars {
            label,
            rows,
            legend,
            unit,
        } => {
            let legend: Vec<(&str, &'static str)> =
                legend.iter().map(|(n, t)| (n.as_str(), hue(*t))).collect();
            charts::hbars(label, rows, &legend, *unit)
        }
        Chart::Donut {
            label,
            slices,
            unit,
            caption,
        } => {
            let slices: Vec<Slice> = slices
                .iter()
                .map(|s| Slice {
                    name: s.name.clone(),
                    color: hue(s.tone),
                    value: s.value,
                })
                .collect();
            charts::donut(label, &slices, *unit, caption)
        }
        Chart::Heatmap {
            label,
            heatmap: h,
            unit,
        } => {
            let name = |i: usize, j: usize| format!("{} {}", h.rows[i], h.column_names[j]);
            charts::heatmap(
                label,
                &charts::Heatmap {
                    rows: &h.rows,
                    columns: &h.columns,
                    row_keys: &h.row_keys,
                    values: &h.values,
                    cell_name: &name,
                    column_every: h.column_every,
                },
                *unit,
            )
        }
    }
}

/// The time axis of the window's buckets, labelled in the window's zone (named `zone`).
fn time_axis(w: &Window, buckets: &[DateTime<Utc>], zone: &str) -> XAxis {
    let tick = w.range.tick();
    let b = w.bucket_secs();
    let tz = w.zone();
    let fmt_tick = if tick >= 86400 {
        if w.range == Range::Week {
            "%a %d"
        } else {
            "%d %b"
        }
    } else {
        "%H:%M"
    };
    let mut x = XAxis::default();
    for (i, t) in buckets.iter().enumerate() {
        let local = t.with_timezone(&tz);
        let to = (*t + Duration::seconds(b)).with_timezone(&tz);
        x.keys
            .push(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        x.names.push(if b == 60 {
            format!("{} {zone}", local.format("%a %d %b %H:%M"))
        } else {
            format!(
                "{}–{} {zone}",
                local.format("%a %d %b %H:%M"),
                to.format("%H:%M")
            )
        });
        if *t <= w.now && w.now < *t + Duration::seconds(b) {
            x.partial_from = Some(i);
        }
        if (t.timestamp() + i64::from(w.utc_offset_secs)) % tick == 0 {
            x.ticks.push((i, local.format(fmt_tick).to_string()));
        }
    }
    x
}

/// The day axis of the window's days, at most about 8 labels.
fn day_axis(days: &[NaiveDate]) -> XAxis {
    let every = days.len().div_ceil(8).max(1);
    let mut x = XAxis::default();
    for (i, d) in days.iter().enumerate() {
        x.keys.push(d.to_string());
        x.names.push(d.format("%a %d %b %Y").to_string());
        // Label the latest day, and every `every`-th counting back from it.
        if (days.len() - 1 - i).is_multiple_of(every) {
            x.ticks.push((i, d.format("%d %b").to_string()));
        }
    }
    x
}
