//! `/dags/{dag_id}`: a DAG's grid, its recent runs (newest on the right, as in Airflow) by
//! its tasks (in topological order), each cell coloured by the task instance's state.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::Dag;
use upiflow_engine::state::TaskState;
use upiflow_engine::store::grid::{self, GridRun};

use super::badges::legend;
use super::dag_header::{Tab, header, load};
use super::extract::{UiQuery, wants_fragment};
use super::format::{duration_text, secs, ts};
use super::links::{dag_url, run_url, ti_url, with_query};
use super::{Nav, UiError, UiUser, page};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/dags/{dag_id}", get(grid_page))
}

/// Most runs the grid shows at once.
const MAX_GRID_RUNS: i64 = 1000;
const DEFAULT_GRID_RUNS: i64 = 25;

#[derive(Deserialize)]
struct GridQuery {
    runs: Option<i64>,
    offset: Option<i64>,
}

/// What the grid shows: runs oldest first (newest on the right, as in Airflow), task rows in
/// topological order, and the state of each cell.
struct Grid {
    runs: Vec<GridRun>,
    tasks: Vec<String>,
    cells: HashMap<(i64, String), (Option<TaskState>, i32)>,
    older: bool,
}

/// The page of runs (one more is asked for, to know whether older ones exist), oldest
/// first, then their task instances.
async fn grid_data(s: &AppState, dag: &Dag, limit: i64, offset: i64) -> Result<Grid, UiError> {
    let mut conn = s.pool.acquire().await?;
    let mut runs = grid::runs(&mut conn, &dag.dag_id, limit + 1, offset).await?;
    let older = runs.len() as i64 > limit;
    runs.truncate(limit as usize);
    runs.reverse();
    let pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let rows = grid::cells(&mut conn, &pks).await?;
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
                                @let late = r.is_late();
                                a class={ "run-bar state-" (r.state.as_str()) @if late { " late" } } href=(run_url(dag_id, &r.run_id))
                                    data-run=(r.run_id) data-state=(r.state.as_str()) data-late[late]
                                    style={ "height:" (bar_height(r)) "px" }
                                    title={ (r.run_id) "\n" (r.run_type.as_str()) " · " (r.state.as_str()) "\nlogical date " (ts(r.logical_date)) @if late { "\nlate: missed its deadline" }
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
                                            @let st = st.map_or("none", TaskState::as_str);
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
