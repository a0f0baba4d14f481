//! The tries of a task instance (Airflow's task-instance history).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use upiflow_engine::TryOutcome;
use upiflow_engine::store::task_views::{self, TiDetail, TryDetail};
use utoipa::ToSchema;

use super::{Context, MapIndex, airflow_max_tries, check_map_index, find_ti};
use crate::AppState;
use crate::api::Ids;
use crate::api::models::{
    self, DagVersionResponse, HTTPExceptionResponse, HTTPValidationError, TaskInstanceState,
};
use crate::api::query::Query;
use crate::auth::Viewer;
use crate::error::ApiError;

/// Airflow's `TaskInstanceHistoryResponse`: one try.
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceHistoryResponse {
    task_id: String,
    dag_id: String,
    dag_run_id: String,
    map_index: i32,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration: Option<f64>,
    state: Option<TaskInstanceState>,
    try_number: i32,
    max_tries: i32,
    task_display_name: String,
    dag_display_name: String,
    hostname: Option<String>,
    unixname: Option<String>,
    pool: String,
    pool_slots: i32,
    queue: Option<String>,
    priority_weight: Option<i32>,
    operator: Option<String>,
    operator_name: Option<String>,
    queued_when: Option<DateTime<Utc>>,
    scheduled_when: Option<DateTime<Utc>>,
    pid: Option<i32>,
    executor: Option<String>,
    executor_config: String,
    dag_version: Option<DagVersionResponse>,
}

/// Airflow's `TaskInstanceHistoryCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceHistoryCollectionResponse {
    task_instances: Vec<TaskInstanceHistoryResponse>,
    total_entries: i64,
}

fn try_state(ti: &TiDetail, t: &TryDetail) -> Option<TaskInstanceState> {
    match t.outcome {
        Some(TryOutcome::Success) => Some(TaskInstanceState::Success),
        Some(TryOutcome::Failed | TryOutcome::TimedOut | TryOutcome::Zombie) => {
            Some(TaskInstanceState::Failed)
        }
        // Stopped by a mark: the latest try shows the state it was marked with.
        Some(TryOutcome::Marked) if t.try_number == ti.try_number => ti.state.map(Into::into),
        Some(TryOutcome::Marked) => Some(TaskInstanceState::Failed),
        // Not ended: the current try, in the task instance's state.
        None if t.try_number == ti.try_number => ti.state.map(Into::into),
        None => None,
    }
}

/// Every try of a task instance, first try first.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        MapIndex),
    responses((status = 200, body = TaskInstanceHistoryCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn tries(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id)): Ids<(String, String, String)>,
    mut q: Query,
) -> Result<Json<TaskInstanceHistoryCollectionResponse>, ApiError> {
    let map_index = q.int("map_index")?.unwrap_or(-1);
    q.finish::<&str>(&[])?;
    check_map_index(map_index)?;
    all_tries(&s, &dag_id, &run_id, &task_id).await
}

/// Every try of a task instance, first try first.
pub(super) async fn all_tries(
    s: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<Json<TaskInstanceHistoryCollectionResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, dag_id, run_id, task_id).await?;
    let rows = task_views::tries(&mut conn, ti.id).await?;
    let cx = Context::load(s, &mut conn, [(ti.dag_id.clone(), ti.dag_hash.clone())]).await?;
    let kind = cx.kind(&ti.dag_id, &ti.dag_hash, &ti.task_id);
    let version = models::listed_version(&ti.dag_id, &ti.dag_hash, &ti.version);
    let task_instances: Vec<TaskInstanceHistoryResponse> = rows
        .iter()
        .map(|t| history(&ti, t, kind.clone(), version.clone()))
        .collect();
    Ok(Json(TaskInstanceHistoryCollectionResponse {
        total_entries: task_instances.len() as i64,
        task_instances,
    }))
}

/// One try as Airflow's `TaskInstanceHistoryResponse`.
fn history(
    ti: &TiDetail,
    t: &TryDetail,
    kind: Option<String>,
    version: Option<DagVersionResponse>,
) -> TaskInstanceHistoryResponse {
    TaskInstanceHistoryResponse {
        task_id: ti.task_id.clone(),
        dag_id: ti.dag_id.clone(),
        dag_run_id: ti.run_id.clone(),
        map_index: -1,
        start_date: Some(t.started_at),
        end_date: t.ended_at,
        duration: models::duration(Some(t.started_at), t.ended_at),
        state: try_state(ti, t),
        try_number: t.try_number,
        max_tries: airflow_max_tries(ti.max_tries),
        task_display_name: ti.task_id.clone(),
        dag_display_name: ti.dag_id.clone(),
        hostname: t.hostname.clone(),
        unixname: None,
        pool: "default_pool".into(),
        pool_slots: 1,
        queue: Some("default".into()),
        priority_weight: None,
        operator: kind.clone(),
        operator_name: kind,
        queued_when: None,
        scheduled_when: None,
        pid: t.pid,
        executor: None,
        executor_config: "{}".into(),
        dag_version: version,
    }
}

/// One try of a task instance (Airflow's `get_task_instance_try_details`), or a 404 naming
/// the try.
pub(super) async fn one_try(
    s: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: i64,
) -> Result<TaskInstanceHistoryResponse, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, dag_id, run_id, task_id).await?;
    let rows = task_views::tries(&mut conn, ti.id).await?;
    let Some(t) = rows.iter().find(|t| i64::from(t.try_number) == try_number) else {
        return Err(ApiError::NotFound(format!(
            "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: \
             `{task_id}`, try_number: `{try_number}` and map_index: `-1` was not found"
        )));
    };
    let cx = Context::load(s, &mut conn, [(ti.dag_id.clone(), ti.dag_hash.clone())]).await?;
    let kind = cx.kind(&ti.dag_id, &ti.dag_hash, &ti.task_id);
    let version = models::listed_version(&ti.dag_id, &ti.dag_hash, &ti.version);
    Ok(history(&ti, t, kind, version))
}

/// One try of a task instance.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("task_try_number" = i64, Path), MapIndex),
    responses((status = 200, body = TaskInstanceHistoryResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn try_detail(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id, n)): Ids<(String, String, String, i64)>,
    mut q: Query,
) -> Result<Json<TaskInstanceHistoryResponse>, ApiError> {
    let map_index = q.int("map_index")?.unwrap_or(-1);
    q.finish::<&str>(&[])?;
    check_map_index(map_index)?;
    Ok(Json(one_try(&s, &dag_id, &run_id, &task_id, n).await?))
}
