//! `/dags/{dag_id}/runs/{run_id}/tasks/{task_id}`: a task instance (with its pool, slots and
//! priority weight), its tries and the log of one try (`?try=N`, default the latest), each
//! stream in its own colour; admins mark it success, failed or skipped from here
//! (`POST .../tasks/{task_id}/mark`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::state::TaskState;
use upiflow_engine::store::{logs, task_views};

use super::badges::state_badge;
use super::dag_header::{Tab, header, load, version};
use super::extract::{UiQuery, wants_fragment};
use super::format::{duration_text, ts, ts_opt};
use super::links::{run_url, ti_url, with_query};
use super::run::load_run;
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(task_page),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            post(mark_task),
        )
}

/// Most log lines shown on the page (a runaway task can write millions).
const MAX_LOG_LINES: i64 = 50_000;

#[derive(Deserialize)]
struct TaskQuery {
    #[serde(rename = "try")]
    try_number: Option<i32>,
    /// What was just marked (shown once after the redirect).
    marked: Option<String>,
}

async fn task_page(
    State(s): State<AppState>,
    user: UiUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    UiQuery(q): UiQuery<TaskQuery>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let (row, latest) = load(&s, &dag_id).await?;
    let run = load_run(&s, &dag_id, &run_id).await?;
    let dag = version(&s, &dag_id, &run.dag_hash).await?;
    let mut conn = s.pool.acquire().await?;
    let ti = task_views::task_instance(&mut conn, run.id, &task_id)
        .await?
        .ok_or_else(|| {
            UiError::NotFound(format!(
                "run `{run_id}` of `{dag_id}` has no task `{task_id}`"
            ))
        })?;
    let tries = task_views::tries(&mut conn, ti.id).await?;
    let shown = match q.try_number {
        Some(n) => Some(tries.iter().find(|t| t.try_number == n).ok_or_else(|| {
            UiError::NotFound(format!("task `{task_id}` of run `{run_id}` has no try {n}"))
        })?),
        None => tries.last(),
    };
    let (lines, more) = match shown {
        Some(t) => {
            let mut lines = logs::log_page(&mut conn, t.id, 0, MAX_LOG_LINES + 1).await?;
            let more = lines.len() as i64 > MAX_LOG_LINES;
            lines.truncate(MAX_LOG_LINES as usize);
            (lines, more)
        }
        None => (Vec::new(), false),
    };
    drop(conn);
    let st = ti.state.map_or("none", TaskState::as_str);
    let live = !ti.state.is_some_and(TaskState::is_terminal);
    let here_base = ti_url(&dag_id, &run_id, &task_id);
    let here = match q.try_number {
        Some(n) => with_query(&here_base, &[("try", n.to_string())]),
        None => here_base.clone(),
    };
    let region = html! {
        section.card id="ti-summary" data-task=(task_id) data-state=(st) {
            dl.facts {
                div { dt { "State" } dd { (state_badge(st)) } }
                div { dt { "Try" } dd { (ti.try_number) " of at most " (ti.max_tries) } }
                div { dt { "Worker" } dd { (ti.worker.as_deref().unwrap_or("")) } }
                div { dt { "Queued" } dd { (ts_opt(ti.queued_at)) } }
                div { dt { "Started" } dd { (ts_opt(ti.start_date)) } }
                div { dt { "Ended" } dd { (ts_opt(ti.end_date)) } }
                div { dt { "Duration" } dd { (duration_text(ti.start_date, ti.end_date)) } }
                div { dt { "Pool" } dd id="ti-pool" { (ti.pool) } }
                div { dt { "Pool slots" } dd id="ti-pool-slots" { (ti.pool_slots) } }
                div { dt { "Priority weight" } dd id="ti-priority" { (ti.priority_weight) } }
                @if let Some(n) = &ti.note { div { dt { "Note" } dd id="ti-note" { (n) } } }
                @if let Some(n) = ti.next_retry_at { div { dt { "Next try at" } dd { (ts(n)) } } }
            }
        }
        h2 { "Tries" }
        @if tries.is_empty() {
            p.muted id="no-tries" { "No try yet." }
        } @else {
            table id="tries" {
                thead { tr {
                    th.num { "Try" } th { "Outcome" } th { "Worker" } th { "Started" } th { "Ended" }
                    th.num { "Duration" } th { "Error" }
                } }
                tbody {
                    @for t in &tries {
                        @let outcome = t.outcome.map_or("running", |o| o.as_str());
                        tr data-try=(t.try_number) data-state=(outcome)
                            class=[shown.is_some_and(|s| s.id == t.id).then_some("selected")] {
                            td.num { a href=(with_query(&here_base, &[("try", t.try_number.to_string())])) { (t.try_number) } }
                            td { (state_badge(outcome)) }
                            td { (t.worker) @if let Some(h) = &t.hostname { br; span.muted { (h) } } }
                            td { (ts(t.started_at)) }
                            td { (ts_opt(t.ended_at)) }
                            td.num { (duration_text(Some(t.started_at), t.ended_at)) }
                            td.error-text { (t.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        @if let Some(t) = shown {
            h2 { "Log of try " (t.try_number) }
            @if lines.is_empty() {
                p.muted id="log-empty" { "This try wrote no log lines." }
            } @else {
                pre.log id="log" data-try=(t.try_number) {
                    @for l in &lines {
                        span class=(l.stream.as_str()) data-stream=(l.stream.as_str()) {
                            span.log-time { (l.at.format("%H:%M:%S%.3f").to_string()) } " " (l.line) "\n"
                        }
                    }
                }
                @if more {
                    p.notice { "Only the first " (MAX_LOG_LINES) " lines are shown." }
                }
            }
        }
        @if !live { span hidden data-refresh-final {} }
    };
    if wants_fragment(&headers) {
        return Ok(region);
    }
    let task = dag.task(&task_id);
    Ok(page(
        &format!("{dag_id} · {task_id}"),
        &user,
        Nav::Dags,
        html! {
            (header(&user, &row, &latest, Tab::None, &here))
            h2.run-title {
                "Task " span.task-id { (task_id) } " of run "
                a href=(run_url(&dag_id, &run_id)) { (run_id) }
            }
            @if let Some(t) = task {
                p.muted {
                    "Kind " code { (t.kind) } " · trigger rule " code { (t.trigger_rule.as_str()) }
                    @if !t.upstream.is_empty() {
                        " · upstream: "
                        @for u in &t.upstream { a href=(ti_url(&dag_id, &run_id, u)) { (u) } " " }
                    }
                }
            }
            @if let Some(m) = q.marked.as_deref().filter(|m| !m.is_empty()) {
                p.notice role="status" id="marked" { "Marked: " (m) "." }
            }
            @if user.may(crate::roles::Action::Mark) {
                form.toolbar.mark-form id="ti-mark" method="post" action={ (here_base) "/mark" }
                    data-confirm={ "Change the state of " (task_id) "?" } {
                    (csrf_field(&user))
                    label.inline { input type="checkbox" name="upstream" value="on"; " upstream" }
                    label.inline { input type="checkbox" name="downstream" value="on"; " downstream" }
                    label.inline { input type="checkbox" name="past" value="on"; " past" }
                    label.inline { input type="checkbox" name="future" value="on"; " future" }
                    " "
                    button.secondary type="submit" name="state" value="success"
                        disabled[st == "success"] { "Mark success" }
                    " "
                    button.secondary type="submit" name="state" value="failed"
                        disabled[st == "failed"] { "Mark failed" }
                    " "
                    button.secondary type="submit" name="state" value="skipped"
                        disabled[st == "skipped"] { "Mark skipped" }
                }
                form.toolbar.clear-form method="post" action={ (here_base) "/clear" }
                    data-confirm={ "Clear " (task_id) " so it runs again?" } {
                    (csrf_field(&user))
                    label.inline { input type="checkbox" name="downstream" value="on"; " and downstream" }
                    button.secondary type="submit" disabled[st == "running"] { "Clear" }
                }
            }
            @if live {
                div id="ti-region" data-refresh=(here) data-every="3" { (region) }
            } @else {
                div id="ti-region" { (region) }
            }
        },
    ))
}

#[derive(Deserialize)]
struct MarkForm {
    /// success, failed or skipped.
    state: String,
    /// Checkboxes: present when ticked.
    upstream: Option<String>,
    downstream: Option<String>,
    past: Option<String>,
    future: Option<String>,
}

fn ticked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| !v.is_empty())
}

async fn mark_task(
    State(s): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Permitted(user, f, _): Permitted<may::Mark, MarkForm>,
) -> Result<impl IntoResponse, UiError> {
    use upiflow_engine::lifecycle::mark::{self, MarkTasks, TiMark};
    let state = TiMark::parse(&f.state).ok_or_else(|| {
        UiError::BadRequest(format!(
            "`{}` is not a state a task instance may be marked with (success, failed, skipped)",
            f.state
        ))
    })?;
    let req = MarkTasks {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        state,
        upstream: ticked(&f.upstream),
        downstream: ticked(&f.downstream),
        past: ticked(&f.past),
        future: ticked(&f.future),
        dry_run: false,
        by: &user.username,
    };
    let changed = mark::mark_tasks(&s.pool, &s.cache, &req).await?;
    tracing::info!(user = %user.username, %dag_id, %run_id, %task_id, state = %state.state(),
        changed = changed.len(), "task instances marked from the UI");
    let what: Vec<String> = changed
        .iter()
        .map(|m| {
            if m.run_id == run_id {
                m.task_id.clone()
            } else {
                format!("{} ({})", m.task_id, m.run_id)
            }
        })
        .collect();
    Ok(Redirect::to(&with_query(
        &ti_url(&dag_id, &run_id, &task_id),
        &[("marked", format!("{} {}", what.join(", "), state.state()))],
    )))
}
