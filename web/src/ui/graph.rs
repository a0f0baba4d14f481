//! `/dags/{dag_id}/graph`: the DAG as an SVG (laid out by `graph_layout`), nodes coloured by
//! their state in the selected run (the latest by default). The SVG is maud markup, so task
//! ids are escaped like any other text.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::Dag;
use upiflow_engine::state::TaskState;
use upiflow_engine::store::{runs, task_views};

use super::badges::legend;
use super::dag_header::{Tab, header, load, version};
use super::extract::{UiQuery, wants_fragment};
use super::format::{clip, ts};
use super::graph_layout::{NODE_H, NODE_W, edge_path, layout};
use super::links::{dag_url, run_url, ti_url, with_query};
use super::{Nav, UiError, UiUser, page};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/dags/{dag_id}/graph", get(graph_page))
}

/// Runs offered in the run picker, newest first.
const PICKER_RUNS: i64 = 25;
/// Longest task id drawn in full inside a node (the whole id is in its tooltip).
const LABEL_CHARS: usize = 22;

/// The SVG of `dag` with each node's state from `states` (task id -> state) and, when a run
/// is given, each node linking to its task instance.
fn svg(dag: &Dag, states: &HashMap<String, Option<TaskState>>, run_id: Option<&str>) -> Markup {
    let l = layout(dag);
    let mut at = vec![(0.0, 0.0); dag.tasks.len()];
    for &(i, x, y) in &l.nodes {
        at[i] = (x, y);
    }
    html! {
        svg.dag-graph id="graph" xmlns="http://www.w3.org/2000/svg" role="img"
            width=(l.width) height=(l.height) viewBox={ "0 0 " (l.width) " " (l.height) } {
            title { "Tasks of " (dag.dag_id) " and their dependencies" }
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"
                    markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" fill="#8a96a3" {}
                }
            }
            @for e in &l.edges {
                @let start = (at[e.from].0 + NODE_W, at[e.from].1 + NODE_H / 2.0);
                @let end = (at[e.to].0 - 1.0, at[e.to].1 + NODE_H / 2.0);
                path.edge data-from=(dag.tasks[e.from].id) data-to=(dag.tasks[e.to].id)
                    d=(edge_path(start, &e.lanes, end)) marker-end="url(#arrow)" {}
            }
            @for &(i, x, y) in &l.nodes {
                @let t = &dag.tasks[i];
                @let st = states.get(&t.id).copied().flatten().map_or("none", TaskState::as_str);
                @let node = html! {
                    title { (t.id) " (" (t.kind) ") · " (st) }
                    rect class={ "node state-" (st) } x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6" {}
                    text.node-label x=(x + 10.0) y=(y + 16.0) { (clip(&t.id, LABEL_CHARS)) }
                    text.node-kind x=(x + 10.0) y=(y + 30.0) { (t.kind) " · " (st.replace('_', " ")) }
                };
                g.node data-task=(t.id) data-state=(st) {
                    @if let Some(run_id) = run_id {
                        a href=(ti_url(&dag.dag_id, run_id, &t.id)) { (node) }
                    } @else {
                        (node)
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct GraphQuery {
    run_id: Option<String>,
}

async fn graph_page(
    State(s): State<AppState>,
    user: UiUser,
    Path(dag_id): Path<String>,
    UiQuery(q): UiQuery<GraphQuery>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let (row, latest) = load(&s, &dag_id).await?;
    let (recent, selected, states) = {
        let mut conn = s.pool.acquire().await?;
        let recent = runs::list(&mut conn, &dag_id, PICKER_RUNS, 0).await?;
        let selected = match q.run_id.as_deref().filter(|r| !r.is_empty()) {
            Some(run_id) => Some(runs::get(&mut conn, &dag_id, run_id).await?),
            None => recent.first().cloned(),
        };
        let states: HashMap<String, Option<TaskState>> = match &selected {
            Some(r) => task_views::for_run(&mut conn, r.id)
                .await?
                .into_iter()
                .map(|t| (t.task_id, t.state))
                .collect(),
            None => HashMap::new(),
        };
        (recent, selected, states)
    };
    // A run is drawn with the definition it was created with.
    let dag = match &selected {
        Some(r) => version(&s, &dag_id, &r.dag_hash).await?,
        None => latest.clone(),
    };
    let region = html! {
        @if let Some(r) = &selected {
            p.muted id="graph-run" data-run=(r.run_id) data-state=(r.state.as_str()) {
                "States of run " a href=(run_url(&dag_id, &r.run_id)) { (r.run_id) }
                " (" (r.state.as_str()) ", logical date " (ts(r.logical_date)) ")"
            }
        } @else {
            p.muted id="graph-run" { "No runs yet: the graph of the current definition." }
        }
        div.graph-wrap { (svg(&dag, &states, selected.as_ref().map(|r| r.run_id.as_str()))) }
    };
    if wants_fragment(&headers) {
        return Ok(region);
    }
    let base = format!("{}/graph", dag_url(&dag_id));
    let here = match &q.run_id {
        Some(r) if !r.is_empty() => with_query(&base, &[("run_id", r.clone())]),
        _ => base.clone(),
    };
    // Refresh while the run shown can still change (or, following the latest run, always).
    let live = match (&selected, q.run_id.as_deref().filter(|r| !r.is_empty())) {
        (Some(r), Some(_)) => !r.state.is_terminal(),
        _ => true,
    };
    Ok(page(
        &format!("{dag_id} · graph"),
        &user,
        Nav::Dags,
        html! {
            (header(&user, &row, &latest, Tab::Graph, &here))
            @if !recent.is_empty() {
                form.toolbar method="get" action=(base) id="graph-run-picker" {
                    label.inline { "Run "
                        select name="run_id" data-autosubmit {
                            option value="" selected[q.run_id.as_deref().unwrap_or("").is_empty()] { "latest" }
                            @for r in &recent {
                                option value=(r.run_id) selected[q.run_id.as_deref() == Some(r.run_id.as_str())] {
                                    (r.run_id) " · " (r.state.as_str())
                                }
                            }
                        }
                    }
                    noscript { button.secondary type="submit" { "Show" } }
                }
            }
            @if live {
                div id="graph-region" data-refresh=(here) data-every="5" { (region) }
            } @else {
                div id="graph-region" { (region) }
            }
            (legend())
        },
    ))
}
