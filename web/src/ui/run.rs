//! `/dags/{dag_id}/runs/{run_id}`: a run's state, interval and conf, its task instances and a
//! gantt chart of them; admins clear tasks from here
//! (`POST /dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::Dag;
use upiflow_engine::state::TryOutcome;
use upiflow_engine::store::run_tasks::{self, RunTry};
use upiflow_engine::store::runs::{self, RunRow};
use upiflow_engine::store::tis::{self, TiRow};

use super::badges::state_badge;
use super::dag_header::{Tab, header, load, version};
use super::extract::{UiQuery, wants_fragment};
use super::format::{clip, duration_text, human_duration, secs, ts, ts_opt};
use super::links::{dag_url, run_url, ti_url, with_query};
use super::{AdminForm, Nav, UiError, UiUser, csrf_field, page};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dags/{dag_id}/runs/{run_id}", get(run_page))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear",
            post(clear),
        )
}

/// The run, or a 404 that names what is missing.
pub(super) async fn load_run(s: &AppState, dag_id: &str, run_id: &str) -> Result<RunRow, UiError> {
    let mut conn = s.pool.acquire().await?;
    Ok(runs::get(&mut conn, dag_id, run_id).await?)
}

/// Task instances in the order of the run's DAG version (topological), unknown ones last.
fn ordered(dag: &Dag, mut tis: Vec<TiRow>) -> Vec<TiRow> {
    let pos: std::collections::HashMap<&str, usize> = dag
        .topological()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    tis.sort_by_key(|t| {
        (
            pos.get(t.task_id.as_str()).copied().unwrap_or(usize::MAX),
            t.id,
        )
    });
    tis
}

fn ti_state(t: &TiRow) -> &'static str {
    t.state.map_or("none", |s| s.as_str())
}

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
fn gantt(
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

#[derive(Deserialize)]
struct RunQuery {
    /// Task ids just cleared (shown once after the redirect).
    cleared: Option<String>,
}

async fn run_page(
    State(s): State<AppState>,
    user: UiUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    UiQuery(q): UiQuery<RunQuery>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let (row, latest) = load(&s, &dag_id).await?;
    let run = load_run(&s, &dag_id, &run_id).await?;
    let dag = version(&s, &dag_id, &run.dag_hash).await?;
    let (tis, tries) = {
        let mut conn = s.pool.acquire().await?;
        let tis = ordered(&dag, tis::for_run(&mut conn, run.id).await?);
        (tis, run_tasks::tries(&mut conn, run.id).await?)
    };
    let now = Utc::now();
    let finished = run.state.is_terminal();
    let region = html! {
        section.card id="run-summary" data-run=(run.run_id) data-state=(run.state.as_str()) {
            dl.facts {
                div { dt { "State" } dd { (state_badge(run.state.as_str())) } }
                div { dt { "Type" } dd { (run.run_type.as_str()) } }
                div { dt { "Logical date" } dd { (ts(run.logical_date)) } }
                div { dt { "Data interval" } dd { (ts(run.data_interval_start)) " → " (ts(run.data_interval_end)) } }
                div { dt { "Queued" } dd { (ts(run.queued_at)) } }
                div { dt { "Started" } dd { (ts_opt(run.start_date)) } }
                div { dt { "Ended" } dd { (ts_opt(run.end_date)) } }
                div { dt { "Duration" } dd { (duration_text(run.start_date, run.end_date)) } }
                @if let Some(b) = run.backfill_id {
                    div { dt { "Backfill" } dd { a href={ "/backfills/" (b) } { "#" (b) } } }
                }
                div { dt { "Version" } dd.muted { code { (run.dag_hash) } } }
            }
        }
        h2 { "Tasks" }
        table id="task-list" {
            thead { tr {
                th { "Task" } th { "State" } th.num { "Try" } th { "Started" } th { "Ended" }
                th.num { "Duration" } th { "Worker" }
                @if user.is_admin() { th { "Clear" } }
            } }
            tbody {
                @for t in &tis {
                    @let st = ti_state(t);
                    tr data-task=(t.task_id) data-state=(st) {
                        td { a href=(ti_url(&dag_id, &run.run_id, &t.task_id)) { (t.task_id) } }
                        td { (state_badge(st)) }
                        td.num data-try=(t.try_number) { (t.try_number) " / " (t.max_tries) }
                        td { (ts_opt(t.start_date)) }
                        td { (ts_opt(t.end_date)) }
                        td.num { (duration_text(t.start_date, t.end_date)) }
                        td.muted { (t.worker.as_deref().unwrap_or("")) }
                        @if user.is_admin() {
                            td {
                                form.inline.clear-form method="post"
                                    action={ (ti_url(&dag_id, &run.run_id, &t.task_id)) "/clear" }
                                    data-confirm={ "Clear " (t.task_id) " so it runs again?" } {
                                    (csrf_field(&user))
                                    label.inline { input type="checkbox" name="downstream" value="on"; " and downstream" }
                                    " "
                                    button.secondary type="submit" disabled[st == "running"]
                                        title=(if st == "running" { "wait for the try to end" } else { "run it again" }) { "Clear" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Gantt" }
        div.gantt-wrap { (gantt(&dag_id, &run.run_id, &tis, &tries, now)) }
        @if finished { span hidden data-refresh-final {} }
    };
    if wants_fragment(&headers) {
        return Ok(region);
    }
    let here = run_url(&dag_id, &run.run_id);
    let conf = serde_json::to_string_pretty(&run.conf).unwrap_or_else(|_| run.conf.to_string());
    Ok(page(
        &format!("{dag_id} · {run_id}"),
        &user,
        Nav::Dags,
        html! {
            (header(&user, &row, &latest, Tab::None, &here))
            h2.run-title { "Run " span.run-id { (run.run_id) } }
            @if let Some(c) = q.cleared.as_deref().filter(|c| !c.is_empty()) {
                p.notice role="status" id="cleared" { "Cleared: " (c) ". They run again as soon as their upstreams allow." }
            }
            p { a href=(with_query(&format!("{}/graph", dag_url(&dag_id)), &[("run_id", run.run_id.clone())])) { "Graph of this run" } }
            @if finished {
                div id="run-region" { (region) }
            } @else {
                div id="run-region" data-refresh=(here) data-every="3" { (region) }
            }
            h2 { "Conf" }
            pre.conf id="run-conf" { (conf) }
        },
    ))
}

#[derive(Deserialize)]
struct ClearForm {
    /// A checkbox: present when ticked.
    downstream: Option<String>,
}

async fn clear(
    State(s): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    AdminForm(user, f): AdminForm<ClearForm>,
) -> Result<impl IntoResponse, UiError> {
    let downstream = f.downstream.is_some_and(|v| !v.is_empty());
    let cleared = tis::clear(&s.pool, &s.cache, &dag_id, &run_id, &task_id, downstream).await?;
    tracing::info!(user = %user.username, %dag_id, %run_id, %task_id, downstream, "cleared from the UI");
    Ok(Redirect::to(&with_query(
        &run_url(&dag_id, &run_id),
        &[("cleared", cleared.join(", "))],
    )))
}
