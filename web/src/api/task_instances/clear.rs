//! Clearing task instances so they run again: the request, refused where upiflow would not
//! do what it asks, translated into a [`ClearSelection`] the store selects by.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use upiflow_engine::store::clear_targets::{self, ClearSelection, RunScope};
use upiflow_engine::{Dag, TaskState};
use utoipa::ToSchema;

use super::{TaskInstanceCollectionResponse, ti_responses};
use crate::AppState;
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::NoQuery;
use crate::api::{Body, Ids};
use crate::auth::Allowed;
use crate::error::ApiError;
use crate::roles::may;

/// A task to clear: its id, or `[task_id, map_index]`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(super) enum TaskMarker {
    Id(String),
    Mapped(String, i64),
}

fn default_true() -> bool {
    true
}

/// Airflow's `ClearTaskInstancesBody`. Without `dag_run_id` it clears across the runs whose
/// logical date lies in `[start_date, end_date]`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClearTaskInstancesBody {
    /// Only say what would be cleared.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    dry_run: bool,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    /// Only failed and upstream_failed instances.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    only_failed: bool,
    #[serde(default)]
    only_running: bool,
    /// `true` (the default): every run with a cleared task goes back to running so its
    /// tasks run again (Airflow queues it first; upiflow starts it at once). `false` is
    /// refused unless `dry_run`: upiflow cannot clear tasks and leave their run finished.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    reset_dag_runs: bool,
    task_ids: Option<Vec<TaskMarker>>,
    /// Clear in this run only (the range is its logical date; `start_date`/`end_date` are
    /// then refused).
    dag_run_id: Option<String>,
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_downstream: bool,
    #[serde(default)]
    include_future: bool,
    #[serde(default)]
    include_past: bool,
    /// Only `false` or `null`: a cleared run keeps the DAG version it was created with.
    run_on_latest_version: Option<bool>,
    /// `true`: a selected task instance that is running makes the request a 409. upiflow
    /// never stops a running try, so with `false` (the default) a running one is a 409 too,
    /// saying so, where Airflow would restart it.
    #[serde(default)]
    prevent_running_task: bool,
    /// Only `null`: upiflow keeps no notes.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

/// Refuses what the clear body asks that upiflow would not do.
fn check_clear(body: &ClearTaskInstancesBody) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::Unprocessable(why.to_string()));
    if body.note.is_some() {
        return refuse("note: upiflow keeps no notes on task instances; send null");
    }
    if body.run_on_latest_version == Some(true) {
        return refuse(
            "run_on_latest_version: true is not supported: a cleared run keeps the DAG version \
             it was created with",
        );
    }
    if !body.reset_dag_runs && !body.dry_run {
        return refuse(
            "reset_dag_runs: false is not supported: clearing puts each affected run back to \
             running so the cleared tasks run again",
        );
    }
    if body.dag_run_id.is_some() && (body.start_date.is_some() || body.end_date.is_some()) {
        return refuse(
            "start_date, end_date: not with dag_run_id, which sets the range to that run's \
             logical date; send one or the other",
        );
    }
    Ok(())
}

/// Every task up- or downstream of `start` in `dag`.
fn relatives(dag: &Dag, start: &BTreeSet<String>, up: bool, down: bool) -> BTreeSet<String> {
    let mut out = start.clone();
    for t in start {
        if down {
            out.extend(dag.all_downstream(t).into_iter().map(|d| d.id.clone()));
        }
        if up {
            out.extend(dag.all_upstream(t).into_iter().map(|u| u.id.clone()));
        }
    }
    out
}

/// Clears task instances so they run again (admin); with `dry_run` (the default) only lists
/// them. Answers the instances, as they are after clearing.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/clearTaskInstances", tag = "Task Instance",
    params(("dag_id" = String, Path)), request_body = ClearTaskInstancesBody,
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn clear(
    State(s): State<AppState>,
    _: Allowed<may::Clear>,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
    Body(body): Body<ClearTaskInstancesBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    check_clear(&body)?;
    let latest = crate::api::dags::latest(&s, &dag_id).await?;
    let mut conn = s.pool.acquire().await?;
    let (mut start, mut end) = (body.start_date, body.end_date);
    let mut dag = latest;
    let mut runs = None;
    if let Some(run_id) = &body.dag_run_id {
        let run = crate::api::runs::find_run(&mut conn, &dag_id, run_id).await?;
        dag = s.cache.get(&mut conn, &dag_id, &run.dag_hash).await?;
        start = Some(run.logical_date);
        end = Some(run.logical_date);
        if !(body.include_past || body.include_future) {
            runs = Some(RunScope::One(run_id.clone()));
        }
    }
    if body.include_past {
        start = None;
    }
    if body.include_future {
        end = None;
    }
    let runs = runs.unwrap_or(RunScope::LogicalDates {
        from: start,
        to: end,
    });
    let mut task_ids = None;
    if let Some(markers) = &body.task_ids {
        let mut wanted = BTreeSet::new();
        for m in markers {
            match m {
                TaskMarker::Id(t) | TaskMarker::Mapped(t, -1) => {
                    if dag.task(t).is_none() {
                        return Err(ApiError::NotFound(format!(
                            "Task `{t}` not found in DAG `{dag_id}`"
                        )));
                    }
                    wanted.insert(t.clone());
                }
                // No mapped tasks in upiflow: such a marker matches nothing.
                TaskMarker::Mapped(..) => {}
            }
        }
        let wanted = relatives(
            &dag,
            &wanted,
            body.include_upstream,
            body.include_downstream,
        );
        task_ids = Some(wanted.into_iter().collect());
    }
    let mut states: Option<Vec<Option<TaskState>>> = None;
    if body.only_failed {
        states = Some(vec![
            Some(TaskState::Failed),
            Some(TaskState::UpstreamFailed),
        ]);
    }
    if body.only_running {
        states = Some(match states {
            // Both: nothing is failed and running at once.
            Some(_) => vec![],
            None => vec![Some(TaskState::Running)],
        });
    }
    let selection = ClearSelection {
        dag_id: dag_id.clone(),
        runs,
        task_ids,
        states,
    };
    let found = clear_targets::select(&mut conn, &selection).await?;
    let running: Vec<&str> = found
        .iter()
        .filter(|t| t.state == Some(TaskState::Running))
        .map(|t| t.task_id.as_str())
        .collect();
    if !body.dry_run && !running.is_empty() {
        let names = running.join(", ");
        return Err(ApiError::Conflict(if body.prevent_running_task {
            format!("prevent_running_task: task instances are running: {names}")
        } else {
            format!(
                "cannot clear running task instances ({names}): upiflow does not stop a \
                 running try; wait for it to end"
            )
        }));
    }
    let rows = if body.dry_run || found.is_empty() {
        found
    } else {
        let targets = clear_targets::by_run(&found);
        drop(conn);
        upiflow_engine::lifecycle::clear::clear_many(&s.pool, &s.cache, &targets).await?;
        conn = s.pool.acquire().await?;
        clear_targets::reread(&mut conn, &found).await?
    };
    Ok(Json(TaskInstanceCollectionResponse {
        total_entries: rows.len() as i64,
        task_instances: ti_responses(&s, &mut conn, &rows).await?,
    }))
}
