//! Backfills: `/backfills` (every backfill with a progress bar), `/backfills/{id}` (one, with
//! its runs, refreshing while it runs) and `/dags/{dag_id}/backfill` (the form that starts one).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::backfill::{self, BackfillRow, BackfillState, Progress, Request};
use upiflow_engine::store::backfill_list;
use upiflow_engine::store::dags::DagRow;
use upiflow_engine::{Dag, EngineError, ErrorKind};

use super::badges::state_badge;
use super::dag_header::{Tab, header, load};
use super::extract::wants_fragment;
use super::format::{duration_text, ts, ts_opt};
use super::links::{backfill_url, dag_url, run_url};
use super::trigger::parse_form_date;
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/backfills", get(list))
        .route("/backfills/{id}", get(one))
        .route("/dags/{dag_id}/backfill", get(form_page).post(submit))
}

/// Most backfills listed, and most runs listed for one.
const LIST_LIMIT: i64 = 200;
const RUNS_LIMIT: i64 = 1000;

/// A progress bar: finished runs out of the total, failures in red.
fn progress_bar(p: &Progress) -> Markup {
    let total = p.total.max(1) as f64;
    let pct = |n: i64| (100.0 * n as f64 / total).clamp(0.0, 100.0);
    html! {
        div.progress title={ (p.done()) " of " (p.total) " done" }
            data-done=(p.done()) data-total=(p.total) role="progressbar"
            aria-valuemin="0" aria-valuemax=(p.total) aria-valuenow=(p.done()) {
            span.ok style={ "width:" (format!("{:.1}", pct(p.success))) "%" } {}
            span.bad style={ "width:" (format!("{:.1}", pct(p.failed))) "%" } {}
        }
    }
}

async fn list(
    State(s): State<AppState>,
    user: UiUser,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let rows = {
        let mut conn = s.pool.acquire().await?;
        backfill_list::list(&mut conn, LIST_LIMIT).await?
    };
    let region = html! {
        @if rows.is_empty() {
            p.notice id="no-backfills" { "No backfill yet. Start one from a DAG's page." }
        } @else {
            table id="backfill-list" {
                thead { tr {
                    th.num { "#" } th { "DAG" } th { "From" } th { "To" } th { "State" }
                    th { "Progress" } th.num { "Done" } th { "By" } th { "Created" } th { "Took" }
                } }
                tbody {
                    @for b in &rows {
                        @let p = Progress { total: b.total as i64, success: b.success, failed: b.failed, running: b.running, queued: b.queued };
                        tr data-backfill=(b.id) data-state=(b.state.as_str()) {
                            td.num { a href=(backfill_url(b.id)) { (b.id) } }
                            td { a href=(dag_url(&b.dag_id)) { (b.dag_id) } }
                            td { (ts(b.from_date)) }
                            td { (ts(b.to_date)) }
                            td { (state_badge(b.state.as_str())) }
                            td.progress-cell { (progress_bar(&p)) }
                            td.num { (p.done()) " / " (p.total) }
                            td { (b.created_by) }
                            td { (ts(b.created_at)) }
                            td { (b.completed_at.map(|c| duration_text(Some(b.created_at), Some(c))).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    if wants_fragment(&headers) {
        return Ok(region);
    }
    Ok(page(
        "Backfills",
        &user,
        Nav::Backfills,
        html! {
            h1 { "Backfills" }
            div id="backfills-region" data-refresh="/backfills" data-every="5" { (region) }
        },
    ))
}

async fn one(
    State(s): State<AppState>,
    user: UiUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| UiError::NotFound(format!("there is no backfill `{id}`")))?;
    let b = backfill::get(&s.pool, id).await?;
    let p = backfill::progress(&s.pool, &b).await?;
    let runs = {
        let mut conn = s.pool.acquire().await?;
        backfill_list::runs_in_range(&mut conn, &b.dag_id, b.from_date, b.to_date, RUNS_LIMIT)
            .await?
    };
    let region = html! {
        section.card id="backfill-progress" data-backfill=(b.id) data-state=(b.state)
            data-done=(p.done()) data-total=(p.total) {
            div.toolbar {
                (state_badge(b.state.as_str()))
                strong { (p.done()) " / " (p.total) " runs done" }
            }
            (progress_bar(&p))
            dl.facts.counts {
                div data-count="success" { dt { "Succeeded" } dd { (p.success) } }
                div data-count="failed" { dt { "Failed" } dd { (p.failed) } }
                div data-count="running" { dt { "Running" } dd { (p.running) } }
                div data-count="queued" { dt { "Queued" } dd { (p.queued) } }
            }
        }
        h2 { "Runs" }
        @if runs.is_empty() {
            p.muted { "No run in the range yet." }
        } @else {
            table id="backfill-runs" {
                thead { tr {
                    th { "Run" } th { "State" } th { "Type" } th { "Logical date" } th { "Started" } th { "Ended" } th.num { "Duration" }
                } }
                tbody {
                    @for r in &runs {
                        tr data-run=(r.run_id) data-state=(r.state.as_str()) {
                            td {
                                a href=(run_url(&b.dag_id, &r.run_id)) { (r.run_id) }
                                @if r.backfill_id != Some(b.id) { " " span.muted title="a run this backfill found, not one it made" { "(existing)" } }
                            }
                            td { (state_badge(r.state.as_str())) }
                            td { (r.run_type.as_str()) }
                            td { (ts(r.logical_date)) }
                            td { (ts_opt(r.start_date)) }
                            td { (ts_opt(r.end_date)) }
                            td.num { (duration_text(r.start_date, r.end_date)) }
                        }
                    }
                }
            }
            @if runs.len() as i64 >= RUNS_LIMIT { p.muted { "Only the first " (RUNS_LIMIT) " runs are listed." } }
        }
        @if b.state != BackfillState::Running { span hidden data-refresh-final {} }
    };
    if wants_fragment(&headers) {
        return Ok(region);
    }
    let here = backfill_url(b.id);
    Ok(page(
        &format!("Backfill {}", b.id),
        &user,
        Nav::Backfills,
        html! {
            h1 { "Backfill #" (b.id) " of " a href=(dag_url(&b.dag_id)) { (b.dag_id) } }
            p.muted {
                "Logical dates " (ts(b.from_date)) " to " (ts(b.to_date)) " (UTC, both included)"
                @if b.rerun_failed { " · re-runs failed runs" }
                @if b.reset { " · re-runs every run" }
                @if let Some(n) = b.max_active_runs { " · at most " (n) " runs at once" }
                @if !b.yield_to_scheduled { " · competes with scheduled runs" }
                " · by " (b.created_by) " at " (ts(b.created_at))
                @if let Some(c) = b.completed_at { " · completed " (ts(c)) }
            }
            @if b.state == BackfillState::Running {
                div id="backfill-region" data-refresh=(here) data-every="3" { (region) }
            } @else {
                div id="backfill-region" { (region) }
            }
        },
    ))
}

#[derive(Deserialize, Default)]
struct BackfillForm {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// Checkboxes: present when ticked.
    rerun_failed: Option<String>,
    reset: Option<String>,
    /// Empty for "the DAG's limit".
    #[serde(default)]
    max_active_runs: String,
    /// Ticked: its tasks compete with scheduled runs' instead of waiting behind them.
    compete: Option<String>,
}

fn form(
    user: &UiUser,
    row: &DagRow,
    dag: &Dag,
    input: &BackfillForm,
    error: Option<&str>,
) -> Markup {
    let action = format!("{}/backfill", dag_url(&dag.dag_id));
    html! {
        (header(user, row, dag, Tab::Backfill, &action))
        h2 { "Backfill" }
        @if !user.may(crate::roles::Action::Backfill) {
            p.notice { "Your role (" (user.role.name()) ") may not start backfills: the form is shown read-only." }
        }
        @if dag.schedule().is_none() {
            p.notice { "This DAG has no schedule, so it has no intervals to backfill; trigger it instead." }
        }
        @if let Some(e) = error {
            p.error-message role="alert" id="form-error" { (e) }
        }
        form.card.form id="backfill-form" method="post" action=(action) {
            (csrf_field(user))
            fieldset disabled[!user.may(crate::roles::Action::Backfill)] {
                p.hint { "Every interval whose logical date lies between From and To (both included) gets a run; dates are in " (dag.timezone) " unless an offset is given." }
                label { "From" input type="text" name="from" value=(input.from) placeholder="2026-01-01" required; }
                label { "To" input type="text" name="to" value=(input.to) placeholder="2026-01-31" required; }
                label.inline { input type="checkbox" name="rerun_failed" value="on" checked[input.rerun_failed.is_some()]; " Re-run intervals whose run failed" }
                label.inline { input type="checkbox" name="reset" value="on" checked[input.reset.is_some()]; " Re-run every interval, successful ones included" }
                label.inline { input type="checkbox" name="compete" value="on" checked[input.compete.is_some()]; " Compete with scheduled runs (by default a backfill's tasks wait behind theirs)" }
                label { "Max active runs (optional; default the DAG's " (row.max_active_runs) ")"
                    input type="number" name="max_active_runs" min="1" step="1" value=(input.max_active_runs) placeholder=(row.max_active_runs); }
                div { button type="submit" { "Start backfill" } " " a.button.secondary href=(dag_url(&dag.dag_id)) { "Cancel" } }
            }
        }
    }
}

async fn form_page(
    State(s): State<AppState>,
    user: UiUser,
    Path(dag_id): Path<String>,
) -> Result<Markup, UiError> {
    let (row, dag) = load(&s, &dag_id).await?;
    Ok(page(
        &format!("Backfill {dag_id}"),
        &user,
        Nav::Dags,
        form(&user, &row, &dag, &BackfillForm::default(), None),
    ))
}

/// Starts (or resumes) a backfill on behalf of a user of the UI.
pub(super) async fn start(
    s: &AppState,
    dag: &Dag,
    req: &Request,
) -> Result<BackfillRow, EngineError> {
    let b = backfill::start(&s.pool, &s.cache, dag, req).await?;
    tracing::info!(user = %req.created_by, dag_id = %dag.dag_id, backfill = b.id, total = b.total, "backfill started from the UI");
    Ok(b)
}

async fn submit(
    State(s): State<AppState>,
    Path(dag_id): Path<String>,
    Permitted(user, f, _): Permitted<may::Backfill, BackfillForm>,
) -> Result<Response, UiError> {
    let (row, dag) = load(&s, &dag_id).await?;
    let again = |status: StatusCode, message: String| -> Response {
        let body = page(
            &format!("Backfill {dag_id}"),
            &user,
            Nav::Dags,
            form(&user, &row, &dag, &f, Some(&message)),
        );
        (status, body).into_response()
    };
    let from = match parse_form_date(&f.from, &dag) {
        Ok(d) => d,
        Err(e) => return Ok(again(StatusCode::BAD_REQUEST, format!("From: {e}"))),
    };
    let to = match parse_form_date(&f.to, &dag) {
        Ok(d) => d,
        Err(e) => return Ok(again(StatusCode::BAD_REQUEST, format!("To: {e}"))),
    };
    let max_active_runs = match f.max_active_runs.trim() {
        "" => None,
        n => match n.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Ok(again(
                    StatusCode::BAD_REQUEST,
                    format!("Max active runs: `{n}` is not a whole number of at least 1"),
                ));
            }
        },
    };
    let req = Request {
        from,
        to,
        rerun_failed: f.rerun_failed.is_some(),
        reset: f.reset.is_some(),
        created_by: user.username.clone(),
        max_active_runs,
        yield_to_scheduled: f.compete.is_none(),
    };
    match start(&s, &dag, &req).await {
        Ok(b) => Ok(Redirect::to(&backfill_url(b.id)).into_response()),
        Err(e) if e.kind() == ErrorKind::Conflict => {
            Ok(again(StatusCode::CONFLICT, e.client_message()))
        }
        Err(e) if e.kind() == ErrorKind::Invalid => Ok(again(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.client_message()
                .replace("--from", "From")
                .replace("--to", "To")
                .replace("--logical-date", "a logical date"),
        )),
        Err(e) => Err(e.into()),
    }
}
