//! `GET /api/v2/dags`, `GET|PATCH /api/v2/dags/{dag_id}`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;
use upiflow_engine::schedule::{Schedule, parse_timezone};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::{Body, Ids, Page, Params};
use crate::AppState;
use crate::auth::{Admin, Viewer};
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one, patch))
}

#[derive(FromRow)]
struct Row {
    dag_id: String,
    description: Option<String>,
    fileloc: Option<String>,
    is_paused: bool,
    is_active: bool,
    schedule: Option<String>,
    timezone: Option<String>,
    max_active_runs: i32,
    next_dagrun: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    latest_hash: Option<String>,
    tags: Value,
    task_count: i32,
    has_import_errors: bool,
}

const SELECT: &str =
    "SELECT d.dag_id, d.description, d.fileloc, d.is_paused, d.is_active, d.schedule,
        d.timezone, d.max_active_runs, d.next_dagrun, d.updated_at, d.latest_hash,
        COALESCE(v.spec->'tags', '[]'::jsonb) AS tags,
        COALESCE(jsonb_array_length(v.spec->'tasks'), 0) AS task_count,
        EXISTS (SELECT 1 FROM import_errors e WHERE e.fileloc = d.fileloc) AS has_import_errors
    FROM dags d LEFT JOIN dag_versions v ON v.dag_id = d.dag_id AND v.hash = d.latest_hash";

/// Airflow's `DagTagResponse`.
#[derive(Serialize, ToSchema)]
pub struct DagTagResponse {
    name: String,
    dag_id: String,
    dag_display_name: String,
}

/// Airflow's `DAGResponse`: the fields upiflow has, and for the others what holds for it
/// (no bundles, no task-concurrency limits, no partitions).
#[derive(Serialize, ToSchema)]
#[schema(as = DAGResponse)]
pub struct DagResponse {
    dag_id: String,
    dag_display_name: String,
    is_paused: bool,
    /// The DAG's file is gone from the DAGs folder.
    is_stale: bool,
    last_parsed_time: Option<DateTime<Utc>>,
    last_parse_duration: Option<f64>,
    last_expired: Option<DateTime<Utc>>,
    bundle_name: Option<String>,
    bundle_version: Option<String>,
    relative_fileloc: Option<String>,
    fileloc: String,
    description: Option<String>,
    timetable_summary: Option<String>,
    timetable_description: Option<String>,
    timetable_partitioned: bool,
    timetable_periodic: bool,
    tags: Vec<DagTagResponse>,
    /// upiflow has no per-DAG task limit: the most task instances that can run at once.
    max_active_tasks: i64,
    max_active_runs: Option<i32>,
    max_consecutive_failed_dag_runs: i32,
    has_task_concurrency_limits: bool,
    has_import_errors: bool,
    next_dagrun_logical_date: Option<DateTime<Utc>>,
    next_dagrun_data_interval_start: Option<DateTime<Utc>>,
    next_dagrun_data_interval_end: Option<DateTime<Utc>>,
    next_dagrun_run_after: Option<DateTime<Utc>>,
    allowed_run_types: Option<Vec<String>>,
    owners: Vec<String>,
    is_backfillable: bool,
    /// The content hash of the DAG's current definition.
    file_token: String,
}

fn to_response(r: Row) -> DagResponse {
    let tags = r
        .tags
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str())
                .map(|t| DagTagResponse {
                    name: t.to_string(),
                    dag_id: r.dag_id.clone(),
                    dag_display_name: r.dag_id.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let schedule = r.schedule.as_deref().and_then(|s| Schedule::parse(s).ok());
    let periodic = schedule.as_ref().is_some_and(|s| !s.is_none());
    let next_end = match (&schedule, r.next_dagrun, r.timezone.as_deref()) {
        (Some(s), Some(start), Some(tz)) => parse_timezone(tz)
            .ok()
            .and_then(|tz| s.next_after(start, tz)),
        _ => None,
    };
    let relative = r.fileloc.as_deref().and_then(|f| {
        std::path::Path::new(f)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    });
    DagResponse {
        dag_display_name: r.dag_id.clone(),
        is_paused: r.is_paused,
        is_stale: !r.is_active,
        last_parsed_time: Some(r.updated_at),
        last_parse_duration: None,
        last_expired: None,
        bundle_name: Some("dags-folder".into()),
        bundle_version: None,
        relative_fileloc: relative,
        fileloc: r.fileloc.unwrap_or_default(),
        description: r.description,
        timetable_summary: r.schedule,
        timetable_description: None,
        timetable_partitioned: false,
        timetable_periodic: periodic,
        tags,
        max_active_tasks: i64::from(r.task_count) * i64::from(r.max_active_runs),
        max_active_runs: Some(r.max_active_runs),
        max_consecutive_failed_dag_runs: 0,
        has_task_concurrency_limits: false,
        has_import_errors: r.has_import_errors,
        next_dagrun_logical_date: r.next_dagrun,
        next_dagrun_data_interval_start: r.next_dagrun,
        next_dagrun_data_interval_end: next_end,
        next_dagrun_run_after: next_end,
        allowed_run_types: None,
        owners: vec![],
        is_backfillable: periodic,
        file_token: r.latest_hash.unwrap_or_default(),
        dag_id: r.dag_id,
    }
}

/// Airflow's `DAGCollectionResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGCollectionResponse)]
pub struct DagCollectionResponse {
    dags: Vec<DagResponse>,
    total_entries: i64,
}

/// DAGs, by id.
#[utoipa::path(get, path = "/api/v2/dags", tag = "DAG", params(Page),
    responses((status = 200, body = DagCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Params(page): Params<Page>,
) -> Result<Json<DagCollectionResponse>, ApiError> {
    let (limit, offset) = page.checked()?;
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} ORDER BY d.dag_id LIMIT $1 OFFSET $2"))
        .bind(limit)
        .bind(offset)
        .fetch_all(&s.pool)
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dags")
        .fetch_one(&s.pool)
        .await?;
    Ok(Json(DagCollectionResponse {
        dags: rows.into_iter().map(to_response).collect(),
        total_entries: total,
    }))
}

pub(super) async fn fetch(s: &AppState, dag_id: &str) -> Result<DagResponse, ApiError> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE d.dag_id = $1"))
        .bind(dag_id)
        .fetch_optional(&s.pool)
        .await?;
    row.map(to_response).ok_or_else(|| not_found(dag_id))
}

pub(super) fn not_found(dag_id: &str) -> ApiError {
    ApiError::NotFound(format!("The Dag with ID: `{dag_id}` was not found"))
}

/// The current definition of a DAG, from its latest version (404 if there is no such DAG).
pub(super) async fn latest(
    s: &AppState,
    dag_id: &str,
) -> Result<std::sync::Arc<upiflow_engine::Dag>, ApiError> {
    let hash: Option<String> = sqlx::query_scalar("SELECT latest_hash FROM dags WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(&s.pool)
        .await?
        .flatten();
    let hash = hash.ok_or_else(|| not_found(dag_id))?;
    let mut conn = s.pool.acquire().await?;
    Ok(s.cache.get(&mut conn, dag_id, &hash).await?)
}

/// One DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
) -> Result<Json<DagResponse>, ApiError> {
    Ok(Json(fetch(&s, &dag_id).await?))
}

/// Airflow's `DAGPatchBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DAGPatchBody)]
struct DagPatchBody {
    is_paused: bool,
}

/// Pauses or unpauses a DAG (admin).
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)), request_body = DagPatchBody,
    responses((status = 200, body = DagResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn patch(
    State(s): State<AppState>,
    _: Admin,
    Ids(dag_id): Ids<String>,
    Body(p): Body<DagPatchBody>,
) -> Result<Json<DagResponse>, ApiError> {
    let mut tx = s.pool.begin().await?;
    upiflow_engine::ops::set_paused(&mut tx, &s.cache, &dag_id, p.is_paused).await?;
    tx.commit().await?;
    Ok(Json(fetch(&s, &dag_id).await?))
}
