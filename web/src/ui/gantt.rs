//! The gantt chart of a run: a row per task that ran, a bar per try (so retries show)
//! coloured by its outcome, and the time the current try waited in the queue drawn faintly
//! before it.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use upiflow_engine::state::TryOutcome;
use upiflow_engine::store::task_views::RunTry;
use upiflow_engine::store::task_views::TiRow;

use super::format::{clip, duration_text, human_duration, secs, ts, ts_opt};
use super::links::{ti_url, with_query};
use super::run::ti_state;

const GANTT_LABEL_W: f64 = 200.0;
const GANTT_W: f64 = 760.0;
const GANTT_ROW: f64 = 24.0;
const GANTT_AXIS: f64 = 22.0;
/// Longest task id shown in full left of the bars.
const GANTT_LABEL_CHARS: usize = 28;

/// The colour of a try: its outcome, or running while it has none.
fn try_state(t: &RunTry) -> &'static str {
    match t.outcome {
        None => "running",
        Some(TryOutcome::TimedOut) => "failed",
        Some(o) => o.as_str(),
    }
}

/// A row per task that ran, a bar per try (so retries show), and the time the current try
/// waited in the queue drawn faintly before it; a try still running ends at `now`.
pub(super) fn gantt(
    dag_id: &str,
    run_id: &str,
    tis: &[TiRow],
    tries: &[RunTry],
    now: DateTime<Utc>,
) -> Markup {
    let rows: Vec<(&TiRow, Vec<&RunTry>)> = tis
        .iter()
        .map(|ti| {
            (
                ti,
                tries
                    .iter()
                    .filter(|t| t.task_id == ti.task_id)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, ts)| !ts.is_empty())
        .collect();
    if rows.is_empty() {
        return html! { p.muted id="gantt-empty" { "No task has started yet." } };
    }
    let waited = |ti: &TiRow| ti.queued_at.zip(ti.start_date).filter(|(q, s)| q < s);
    let t0 = tries
        .iter()
        .map(|t| t.started_at)
        .chain(rows.iter().filter_map(|(ti, _)| waited(ti).map(|w| w.0)))
        .min()
        .unwrap_or(now);
    let t1 = tries
        .iter()
        .map(|t| t.ended_at.unwrap_or(now))
        .max()
        .unwrap_or(now);
    let span = secs(Some(t0), Some(t1)).unwrap_or(0.0).max(0.001);
    let x = |t: DateTime<Utc>| {
        GANTT_LABEL_W + GANTT_W * (secs(Some(t0), Some(t)).unwrap_or(0.0) / span).min(1.0)
    };
    let width = GANTT_LABEL_W + GANTT_W + 20.0;
    let height = GANTT_AXIS + rows.len() as f64 * GANTT_ROW + 6.0;
    let ticks = 5;
    html! {
        svg.gantt id="gantt" xmlns="http://www.w3.org/2000/svg" role="img"
            width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
            title { "When each task of the run ran, try by try" }
            @for k in 0..=ticks {
                @let tx = GANTT_LABEL_W + GANTT_W * k as f64 / ticks as f64;
                line.tick x1=(tx) x2=(tx) y1=(GANTT_AXIS - 4.0) y2=(height) {}
                text.tick-label x=(tx) y="12" text-anchor="middle" {
                    "+" (human_duration(span * k as f64 / ticks as f64))
                }
            }
            @for (row, (ti, its_tries)) in rows.iter().enumerate() {
                @let y = GANTT_AXIS + row as f64 * GANTT_ROW;
                g.gantt-row data-task=(ti.task_id) data-state=(ti_state(ti)) {
                    a href=(ti_url(dag_id, run_id, &ti.task_id)) {
                        title { (ti.task_id) " · " (ti_state(ti)) }
                        text.gantt-label x=(GANTT_LABEL_W - 8.0) y=(y + 16.0) text-anchor="end" {
                            (clip(&ti.task_id, GANTT_LABEL_CHARS))
                        }
                        @if let Some((q, start)) = waited(ti) {
                            rect.queued-span x=(x(q)) y=(y + 9.0) width=((x(start) - x(q)).max(0.0)) height="6" {
                                title { "queued " (duration_text(Some(q), Some(start))) }
                            }
                        }
                    }
                    @for t in its_tries {
                        @let st = try_state(t);
                        a href=(with_query(&ti_url(dag_id, run_id, &ti.task_id), &[("try", t.try_number.to_string())])) {
                            rect class={ "bar state-" (st) } data-try=(t.try_number) x=(x(t.started_at)) y=(y + 4.0)
                                width=((x(t.ended_at.unwrap_or(now)) - x(t.started_at)).max(2.0))
                                height=(GANTT_ROW - 8.0) rx="3" {
                                title {
                                    (ti.task_id) " · try " (t.try_number) " · " (st)
                                    "\nstart " (ts(t.started_at)) "\nend " (ts_opt(t.ended_at))
                                    "\nduration " (duration_text(Some(t.started_at), t.ended_at))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
