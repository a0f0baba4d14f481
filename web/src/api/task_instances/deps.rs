//! `GET .../taskInstances/{task_id}/dependencies` (and its `{map_index}` variant): why a
//! task instance is not running, from `engine::lifecycle::deps`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{check_map_index, find_ti};
use crate::AppState;
use crate::api::Ids;
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::NoQuery;
use crate::auth::Viewer;
use crate::error::ApiError;

/// Airflow's `TaskDependencyResponse`.
#[derive(Serialize, ToSchema)]
struct TaskDependencyResponse {
    name: String,
    reason: String,
}

/// Airflow's `TaskDependencyCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub(super) struct TaskDependencyCollectionResponse {
    dependencies: Vec<TaskDependencyResponse>,
}

async fn answer(
    s: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<Json<TaskDependencyCollectionResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    find_ti(&mut conn, dag_id, run_id, task_id).await?;
    let deps =
        upiflow_engine::lifecycle::deps::failed_deps(&mut conn, &s.cache, dag_id, run_id, task_id)
            .await?;
    Ok(Json(TaskDependencyCollectionResponse {
        dependencies: deps
            .into_iter()
            .map(|d| TaskDependencyResponse {
                name: d.name.into(),
                reason: d.reason,
            })
            .collect(),
    }))
}

/// What keeps a task instance with no state (or `scheduled`) from running: its run not
/// running, its DAG paused, its trigger rule not yet met, too few open slots in its pool,
/// its task's `max_active_tis_per_dag` reached. As in Airflow, empty for a task instance
/// that is running or finished.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dependencies",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskDependencyCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn dependencies(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id)): Ids<(String, String, String)>,
    _: NoQuery,
) -> Result<Json<TaskDependencyCollectionResponse>, ApiError> {
    answer(&s, &dag_id, &run_id, &task_id).await
}

/// [`dependencies`] by map index: only -1, upiflow has no mapped tasks.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dependencies",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i64, Path, description = "Only -1: upiflow has no mapped tasks")),
    responses((status = 200, body = TaskDependencyCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn dependencies_by_map_index(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id, map_index)): Ids<(String, String, String, i64)>,
    _: NoQuery,
) -> Result<Json<TaskDependencyCollectionResponse>, ApiError> {
    check_map_index(map_index)?;
    answer(&s, &dag_id, &run_id, &task_id).await
}
