//! `/dags/{dag_id}/runs/{run_id}`: a run's state, interval and conf, its task instances and a
//! gantt chart of them; admins clear tasks from here
//! (`POST /dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear`) and mark the run success,
//! failed or queued (`POST /dags/{dag_id}/runs/{run_id}/mark`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::Dag;
use upiflow_engine::store::runs::{self, RunRow};
use upiflow_engine::store::task_views::{self, TiRow};

use super::badges::state_badge;
use super::dag_header::{Tab, header, load, version};
use super::extract::{UiQuery, wants_fragment};
use super::format::{duration_text, ts, ts_opt};
use super::gantt::gantt;
use super::links::{dag_url, run_url, ti_url, with_query};
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dags/{dag_id}/runs/{run_id}", get(run_page))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear",
            post(clear),
        )
        .route("/dags/{dag_id}/runs/{run_id}/mark", post(mark_run))
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

/// A task instance's state as the pages name it (`none` before it is ready).
pub(super) fn ti_state(t: &TiRow) -> &'static str {
    t.state.map_or("none", |s| s.as_str())
}

#[derive(Deserialize)]
struct RunQuery {
    /// Task ids just cleared (shown once after the redirect).
    cleared: Option<String>,
    /// The state the run was just marked with (shown once after the redirect).
    marked: Option<String>,
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
        let tis = ordered(&dag, task_views::for_run(&mut conn, run.id).await?);
        (
            tis,
            upiflow_engine::store::task_views::run_tries(&mut conn, run.id).await?,
        )
    };
    let now = Utc::now();
    let finished = run.state.is_terminal();
    let region = html! {
        section.card id="run-summary" data-run=(run.run_id) data-state=(run.state.as_str()) {
            dl.facts {
                div { dt { "State" } dd {
                    (state_badge(run.state.as_str()))
                    @if run.is_late() { " " span.state.state-late id="run-late" title="the run was not finished by its deadline" { "late" } }
                } }
                @if let Some(d) = run.deadline_at {
                    div { dt { "Deadline" } dd data-deadline=(d.to_rfc3339()) {
                        (ts(d))
                        @if let Some(m) = run.deadline_missed_at { span.muted { " · missed, noticed " (ts(m)) } }
                    } }
                }
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
                @if user.may(crate::roles::Action::Clear) { th { "Clear" } }
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
                        @if user.may(crate::roles::Action::Clear) {
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
    let run_note = run.note.clone();
    let conf = serde_json::to_string_pretty(&run.conf).unwrap_or_else(|_| run.conf.to_string());
    Ok(page(
        &format!("{dag_id} · {run_id}"),
        &user,
        Nav::Dags,
        html! {
            (header(&user, &row, &latest, Tab::None, &here))
            h2.run-title { "Run " span.run-id { (run.run_id) } }
            @if let Some(m) = q.marked.as_deref().filter(|m| !m.is_empty()) {
                p.notice role="status" id="marked" { "Marked the run " (m) "." }
            }
            @if user.may(crate::roles::Action::Mark) {
                form.toolbar.mark-form id="run-mark" method="post" action={ (here) "/mark" }
                    data-confirm={ "Change the state of run " (run.run_id) "?" } {
                    (csrf_field(&user))
                    button.secondary type="submit" name="state" value="success"
                        disabled[run.state == upiflow_engine::RunState::Success] { "Mark success" }
                    " "
                    button.secondary type="submit" name="state" value="failed"
                        disabled[run.state == upiflow_engine::RunState::Failed] { "Mark failed" }
                    " "
                    button.secondary type="submit" name="state" value="queued"
                        disabled[run.state == upiflow_engine::RunState::Queued] { "Mark queued" }
                }
            }
            @if let Some(note) = run_note.as_deref() {
                p.note id="run-note" { "Note: " (note) }
            }
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
    Permitted(user, f, _): Permitted<may::Clear, ClearForm>,
) -> Result<impl IntoResponse, UiError> {
    let downstream = f.downstream.is_some_and(|v| !v.is_empty());
    let cleared = upiflow_engine::lifecycle::clear::clear(
        &s.pool, &s.cache, &dag_id, &run_id, &task_id, downstream,
    )
    .await?;
    tracing::info!(user = %user.username, %dag_id, %run_id, %task_id, downstream, "cleared from the UI");
    Ok(Redirect::to(&with_query(
        &run_url(&dag_id, &run_id),
        &[("cleared", cleared.join(", "))],
    )))
}

#[derive(Deserialize)]
struct MarkRunForm {
    /// success, failed or queued.
    state: String,
}

async fn mark_run(
    State(s): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    Permitted(user, f, _): Permitted<may::Mark, MarkRunForm>,
) -> Result<impl IntoResponse, UiError> {
    use upiflow_engine::lifecycle::mark::{self, RunMark};
    let state = RunMark::parse(&f.state).ok_or_else(|| {
        UiError::BadRequest(format!(
            "`{}` is not a state a run may be marked with (success, failed, queued)",
            f.state
        ))
    })?;
    let changed =
        mark::mark_run(&s.pool, &s.cache, &dag_id, &run_id, state, &user.username).await?;
    tracing::info!(user = %user.username, %dag_id, %run_id, state = %state.state(),
        changed = changed.len(), "run marked from the UI");
    Ok(Redirect::to(&with_query(
        &run_url(&dag_id, &run_id),
        &[("marked", state.state().to_string())],
    )))
}
