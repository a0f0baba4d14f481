//! The `{map_index}` variants of the task-instance routes and `listMapped`. upiflow has no
//! mapped tasks: map_index -1 is the unmapped instance itself (as in Airflow, where an
//! unmapped task instance has map_index -1), any other map_index is a 404 saying so, and
//! `listMapped` is Airflow's 404 for a task that is not mapped.

use axum::Json;
use axum::extract::State;

use super::tries::{TaskInstanceHistoryCollectionResponse, TaskInstanceHistoryResponse};
use super::{TaskInstanceResponse, check_map_index, find_ti, ti_responses};
use crate::AppState;
use crate::api::Ids;
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::NoQuery;
use crate::auth::Viewer;
use crate::error::ApiError;

/// One task instance by map index: -1, the task instance itself.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i64, Path, description = "Only -1: upiflow has no mapped tasks")),
    responses((status = 200, body = TaskInstanceResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id, map_index)): Ids<(String, String, String, i64)>,
    _: NoQuery,
) -> Result<Json<TaskInstanceResponse>, ApiError> {
    check_map_index(map_index)?;
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, &dag_id, &run_id, &task_id).await?;
    let mut out = ti_responses(&s, &mut conn, std::slice::from_ref(&ti)).await?;
    Ok(Json(out.remove(0)))
}

/// The tries of a task instance by map index: -1, the task instance itself.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i64, Path, description = "Only -1: upiflow has no mapped tasks")),
    responses((status = 200, body = TaskInstanceHistoryCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn tries(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id, map_index)): Ids<(String, String, String, i64)>,
    _: NoQuery,
) -> Result<Json<TaskInstanceHistoryCollectionResponse>, ApiError> {
    check_map_index(map_index)?;
    super::tries::all_tries(&s, &dag_id, &run_id, &task_id).await
}

/// One try of a task instance by map index: -1, the task instance itself.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries/{task_try_number}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i64, Path, description = "Only -1: upiflow has no mapped tasks"),
        ("task_try_number" = i64, Path)),
    responses((status = 200, body = TaskInstanceHistoryResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn try_detail(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id, map_index, n)): Ids<(String, String, String, i64, i64)>,
    _: NoQuery,
) -> Result<Json<TaskInstanceHistoryResponse>, ApiError> {
    check_map_index(map_index)?;
    Ok(Json(
        super::tries::one_try(&s, &dag_id, &run_id, &task_id, n).await?,
    ))
}

/// Airflow answers a 404 for the mapped instances of a task that is not mapped; in upiflow
/// no task is. The task instance must exist, else the 404 names what is missing.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = super::TaskInstanceCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn list_mapped(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id)): Ids<(String, String, String)>,
    _: NoQuery,
) -> Result<Json<super::TaskInstanceCollectionResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    find_ti(&mut conn, &dag_id, &run_id, &task_id).await?;
    Err(ApiError::NotFound(format!(
        "Task id `{task_id}` is not mapped: upiflow has no mapped tasks"
    )))
}
