//! `/dags/{dag_id}`: the DAG's header (shared by its other pages) and the grid of recent runs
//! by tasks, plus what the DAG pages share: loading a DAG, links, query parsing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::get;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sqlx::FromRow;
use upiflow_engine::Dag;
use upiflow_engine::store::dags::{self, DagRow};

use super::{Nav, UiError, UiUser, csrf_field, human_duration, page, state_badge, ts};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/dags/{dag_id}", get(grid_page))
}

/// Most runs the grid shows at once.
pub(super) const MAX_GRID_RUNS: i64 = 1000;
const DEFAULT_GRID_RUNS: i64 = 25;

/// A query string read into `T`; a bad one is a 400 page that says what is wrong.
pub(super) struct UiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for UiQuery<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(UiQuery)
            .map_err(|e| UiError::BadRequest(format!("bad query string: {e}")))
    }
}

/// Whether the request asks only for the refreshing region (see `app.js`).
pub(super) fn wants_fragment(headers: &HeaderMap) -> bool {
    headers.contains_key("x-fragment")
}

/// One path segment, percent-encoded (run ids carry `:` and `+`).
pub(super) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn dag_url(dag_id: &str) -> String {
    format!("/dags/{}", seg(dag_id))
}

pub(super) fn run_url(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}/runs/{}", seg(dag_id), seg(run_id))
}

pub(super) fn ti_url(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!(
        "/dags/{}/runs/{}/tasks/{}",
        seg(dag_id),
        seg(run_id),
        seg(task_id)
    )
}

/// A URL with a query string built from `pairs` (values encoded).
pub(super) fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

/// `text` cut to `max` characters, with an ellipsis when cut (for labels in SVGs).
pub(super) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

/// The DAG's row and its current definition, or a 404.
pub(super) async fn load(s: &AppState, dag_id: &str) -> Result<(DagRow, Arc<Dag>), UiError> {
    let mut conn = s.pool.acquire().await?;
    let row = dags::get(&mut conn, dag_id)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("there is no DAG `{dag_id}`")))?;
    let hash = row
        .latest_hash
        .clone()
        .ok_or_else(|| UiError::NotFound(format!("DAG `{dag_id}` has no stored definition")))?;
    let dag = s.cache.get(&mut conn, dag_id, &hash).await?;
    Ok((row, dag))
}

/// The definition a run was created with.
pub(super) async fn version(s: &AppState, dag_id: &str, hash: &str) -> Result<Arc<Dag>, UiError> {
    let mut conn = s.pool.acquire().await?;
    Ok(s.cache.get(&mut conn, dag_id, hash).await?)
}

/// The tabs of a DAG's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tab {
    Grid,
    Graph,
    Missed,
    Trigger,
    Backfill,
    /// A run or task page below the DAG.
    None,
}

/// The DAG's header: description, schedule, next run, pause switch, params, tabs.
pub(super) fn header(user: &UiUser, row: &DagRow, dag: &Dag, tab: Tab, here: &str) -> Markup {
    let id = &row.dag_id;
    let tab_link = |t: Tab, href: String, label: &str| {
        html! { a.active[t == tab] href=(href) data-tab=(label.to_lowercase()) { (label) } }
    };
    html! {
        section.dag-header id="dag-header" data-dag=(id) data-paused=(row.is_paused) {
            div.toolbar {
                h1.dag-title { a href=(dag_url(id)) { (id) } }
                form.switch method="post" action={ (dag_url(id)) "/pause" } id="pause-form" {
                    (csrf_field(user))
                    input type="hidden" name="paused" value=(!row.is_paused);
                    input type="hidden" name="next" value=(here);
                    button.secondary type="submit" disabled[!user.is_admin()]
                        title=(if row.is_paused { "Resume scheduling" } else { "Pause scheduling" }) {
                        (if row.is_paused { "Paused" } else { "On" })
                    }
                }
                span.spacer {}
                @if user.is_admin() {
                    a.button href={ (dag_url(id)) "/trigger" } id="trigger-link" { "Trigger" }
                    a.button.secondary href={ (dag_url(id)) "/backfill" } id="backfill-link" { "Backfill" }
                } @else {
                    button type="button" disabled title="viewers may only read" { "Trigger" }
                    button.secondary type="button" disabled title="viewers may only read" { "Backfill" }
                }
            }
            @if let Some(d) = row.description.as_deref().or(dag.description.as_deref()) {
                p.description { (d) }
            }
            @if !row.is_active {
                p.notice { "The file of this DAG is gone from the DAGs folder; its history stays." }
            }
            dl.facts {
                div { dt { "Schedule" } dd { code { (dag.schedule) } " " span.muted { (dag.timezone) } } }
                div { dt { "Next run" } dd data-next-run { (row.next_dagrun.map(ts).unwrap_or_else(|| "none".into())) } }
                div { dt { "Catch-up" } dd { (if dag.catchup { "on" } else { "off" }) } }
                div { dt { "Max active runs" } dd { (dag.max_active_runs) } }
                div { dt { "Tasks" } dd { (dag.tasks.len()) } }
                @if !dag.tags.is_empty() {
                    div { dt { "Tags" } dd { @for t in &dag.tags { span.tag { (t) } " " } } }
                }
                div { dt { "File" } dd.muted { (dag.fileloc) } }
            }
            @if !dag.params.is_empty() {
                details.params id="params" {
                    summary { "Params (" (dag.params.len()) ")" }
                    table {
                        thead { tr { th { "Param" } th { "Default" } } }
                        tbody {
                            @for (k, v) in &dag.params {
                                tr data-param=(k) { td { code { (k) } } td { code { (v.to_string()) } } }
                            }
                        }
                    }
                }
            }
            nav.tabs {
                (tab_link(Tab::Grid, dag_url(id), "Grid"))
                (tab_link(Tab::Graph, format!("{}/graph", dag_url(id)), "Graph"))
                (tab_link(Tab::Missed, format!("{}/missed", dag_url(id)), "Missed"))
                @if tab == Tab::Trigger { (tab_link(Tab::Trigger, format!("{}/trigger", dag_url(id)), "Trigger")) }
                @if tab == Tab::Backfill { (tab_link(Tab::Backfill, format!("{}/backfill", dag_url(id)), "Backfill")) }
            }
        }
    }
}

/// Seconds between two instants (the end defaulting to now), never negative.
pub(super) fn secs(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    let start = start?;
    let end = end.unwrap_or_else(Utc::now);
    Some(((end - start).num_milliseconds() as f64 / 1000.0).max(0.0))
}

pub(super) fn duration_text(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    secs(start, end).map(human_duration).unwrap_or_default()
}

#[derive(Deserialize)]
struct GridQuery {
    runs: Option<i64>,
    offset: Option<i64>,
}

#[derive(FromRow)]
struct GridRun {
    id: i64,
    run_id: String,
    state: String,
    run_type: String,
    logical_date: DateTime<Utc>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct GridCell {
    run_pk: i64,
    task_id: String,
    state: Option<String>,
    try_number: i32,
}

/// What the grid shows: runs oldest first (newest on the right, as in Airflow), task rows in
/// topological order, and the state of each cell.
struct Grid {
    runs: Vec<GridRun>,
    tasks: Vec<String>,
    cells: HashMap<(i64, String), (Option<String>, i32)>,
    older: bool,
}

/// Two queries whatever the size: the page of runs (by the `(dag_id, logical_date)` key),
/// then their task instances (by the `(run_pk, task_id)` key).
async fn grid_data(s: &AppState, dag: &Dag, limit: i64, offset: i64) -> Result<Grid, UiError> {
    let mut conn = s.pool.acquire().await?;
    let mut runs: Vec<GridRun> = sqlx::query_as(
        "SELECT id, run_id, state::text AS state, run_type::text AS run_type, logical_date,
                start_date, end_date
         FROM dag_runs WHERE dag_id = $1 ORDER BY logical_date DESC LIMIT $2 OFFSET $3",
    )
    .bind(&dag.dag_id)
    .bind(limit + 1)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    let older = runs.len() as i64 > limit;
    runs.truncate(limit as usize);
    runs.reverse();
    let pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let rows: Vec<GridCell> = sqlx::query_as(
        "SELECT run_pk, task_id, state::text AS state, try_number
         FROM task_instances WHERE run_pk = ANY($1)",
    )
    .bind(&pks)
    .fetch_all(&mut *conn)
    .await?;
    let mut tasks: Vec<String> = dag.topological().map(|t| t.id.clone()).collect();
    // Tasks of older versions that the current one dropped still show, after the others.
    let mut gone: Vec<String> = rows
        .iter()
        .filter(|c| dag.task(&c.task_id).is_none())
        .map(|c| c.task_id.clone())
        .collect();
    gone.sort();
    gone.dedup();
    tasks.extend(gone);
    let cells = rows
        .into_iter()
        .map(|c| ((c.run_pk, c.task_id), (c.state, c.try_number)))
        .collect();
    Ok(Grid {
        runs,
        tasks,
        cells,
        older,
    })
}

fn grid_markup(dag_id: &str, g: &Grid, limit: i64, offset: i64) -> Markup {
    let longest = g
        .runs
        .iter()
        .filter_map(|r| secs(r.start_date, r.end_date))
        .fold(0.0_f64, f64::max);
    let bar_height = |r: &GridRun| -> i64 {
        match secs(r.start_date, r.end_date) {
            Some(d) if longest > 0.0 => 4 + (36.0 * d / longest).round() as i64,
            _ => 4,
        }
    };
    let base = dag_url(dag_id);
    let nav_link = |off: i64| {
        let mut q = vec![("runs", limit.to_string())];
        if off > 0 {
            q.push(("offset", off.to_string()));
        }
        with_query(&base, &q)
    };
    html! {
        div.toolbar.grid-nav {
            span.muted {
                (g.runs.len()) " run(s)"
                @if let (Some(first), Some(last)) = (g.runs.first(), g.runs.last()) {
                    ", logical dates " (ts(first.logical_date)) " to " (ts(last.logical_date))
                }
                @if offset > 0 { "; " (offset) " newer not shown" }
            }
            @if g.older { a.button.secondary href=(nav_link(offset.saturating_add(limit))) id="grid-older" { "← Older" } }
            @if offset > 0 { a.button.secondary href=(nav_link((offset - limit).max(0))) id="grid-newer" { "Newer →" } }
        }
        @if g.runs.is_empty() {
            p.notice id="grid-empty" { "This DAG has no runs yet." }
        }
        div.grid-wrap {
            table.grid id="grid" data-runs=(g.runs.len()) {
                thead {
                    tr {
                        th.task-col { "Task" }
                        @for r in &g.runs {
                            th.run-col {
                                a class={ "run-bar state-" (r.state) } href=(run_url(dag_id, &r.run_id))
                                    data-run=(r.run_id) data-state=(r.state)
                                    style={ "height:" (bar_height(r)) "px" }
                                    title={ (r.run_id) "\n" (r.run_type) " · " (r.state) "\nlogical date " (ts(r.logical_date))
                                            "\nduration " (duration_text(r.start_date, r.end_date)) } {}
                            }
                        }
                    }
                }
                tbody {
                    @for t in &g.tasks {
                        tr data-task=(t) {
                            th.task-name { (t) }
                            @for r in &g.runs {
                                td {
                                    @match g.cells.get(&(r.id, t.clone())) {
                                        Some((st, tries)) => {
                                            @let st = st.as_deref().unwrap_or("none");
                                            a class={ "cell state-" (st) } href=(ti_url(dag_id, &r.run_id, t))
                                                data-task=(t) data-run=(r.run_id) data-state=(st)
                                                title={ (t) " · " (st) " · try " (tries) "\n" (r.run_id) } {}
                                        }
                                        None => { span.cell.absent title="not in this run's version" {} }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn grid_page(
    State(s): State<AppState>,
    user: UiUser,
    Path(dag_id): Path<String>,
    UiQuery(q): UiQuery<GridQuery>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let limit = q.runs.unwrap_or(DEFAULT_GRID_RUNS);
    if !(1..=MAX_GRID_RUNS).contains(&limit) {
        return Err(UiError::BadRequest(format!(
            "runs must be between 1 and {MAX_GRID_RUNS}, not {limit}"
        )));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(UiError::BadRequest("offset must not be negative".into()));
    }
    let (row, dag) = load(&s, &dag_id).await?;
    let grid = grid_data(&s, &dag, limit, offset).await?;
    let region = grid_markup(&dag_id, &grid, limit, offset);
    if wants_fragment(&headers) {
        return Ok(region);
    }
    let mut q = vec![("runs", limit.to_string())];
    if offset > 0 {
        q.push(("offset", offset.to_string()));
    }
    let here = with_query(&dag_url(&dag_id), &q);
    Ok(page(
        &dag_id,
        &user,
        Nav::Dags,
        html! {
            (header(&user, &row, &dag, Tab::Grid, &here))
            form.toolbar method="get" action=(dag_url(&dag_id)) id="grid-size" {
                label.inline { "Runs shown "
                    select name="runs" data-autosubmit {
                        @for n in [25, 50, 100, 365, 1000] {
                            option value=(n) selected[n == limit] { (n) }
                        }
                        @if ![25, 50, 100, 365, 1000].contains(&limit) {
                            option value=(limit) selected { (limit) }
                        }
                    }
                }
                noscript { button.secondary type="submit" { "Show" } }
            }
            div id="grid-region" data-refresh=(here) data-every="5" { (region) }
            (legend())
        },
    ))
}

/// The colours of the states.
pub(super) fn legend() -> Markup {
    html! {
        div.legend {
            @for st in ["none", "scheduled", "queued", "running", "success", "failed",
                        "up_for_retry", "upstream_failed", "skipped"] {
                (state_badge(st)) " "
            }
        }
    }
}
