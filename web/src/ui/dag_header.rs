//! What every page of one DAG shares: loading the DAG (its row and definition, or a 404),
//! the definition a run was created with, and the DAG's header with its tabs.

use std::sync::Arc;

use maud::{Markup, html};
use upiflow_engine::Dag;
use upiflow_engine::store::dags::{self, DagRow};

use super::format::ts;
use super::links::dag_url;
use super::{UiError, UiUser, csrf_field};
use crate::AppState;

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
                    button.secondary type="submit" disabled[!user.may(crate::roles::Action::Pause)]
                        title=(if row.is_paused { "Resume scheduling" } else { "Pause scheduling" }) {
                        (if row.is_paused { "Paused" } else { "On" })
                    }
                }
                span.spacer {}
                @if user.may(crate::roles::Action::Trigger) {
                    a.button href={ (dag_url(id)) "/trigger" } id="trigger-link" { "Trigger" }
                } @else {
                    button type="button" disabled title="your role may not trigger runs" { "Trigger" }
                }
                @if user.may(crate::roles::Action::Backfill) {
                    a.button.secondary href={ (dag_url(id)) "/backfill" } id="backfill-link" { "Backfill" }
                } @else {
                    button.secondary type="button" disabled title="your role may not start backfills" { "Backfill" }
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
