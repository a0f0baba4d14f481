//! `GET|POST /api/v2/dags/{dag_id}/dagRuns`, `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::store::runs::{self, RunRow};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{self, DagVersionResponse, HTTPExceptionResponse, HTTPValidationError};
use super::{Body, Ids, Page, Params};
use crate::AppState;
use crate::auth::{Admin, Viewer};
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, trigger))
        .routes(routes!(one))
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DagRunType {
    Backfill,
    Scheduled,
    Manual,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DagRunState {
    Queued,
    Running,
    Success,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DagRunTriggeredByType {
    RestApi,
    Timetable,
    Backfill,
}

/// Airflow's `DAGRunResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGRunResponse)]
pub struct DagRunResponse {
    dag_run_id: String,
    dag_id: String,
    logical_date: Option<DateTime<Utc>>,
    queued_at: Option<DateTime<Utc>>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration: Option<f64>,
    data_interval_start: Option<DateTime<Utc>>,
    data_interval_end: Option<DateTime<Utc>>,
    run_after: DateTime<Utc>,
    last_scheduling_decision: Option<DateTime<Utc>>,
    run_type: DagRunType,
    state: DagRunState,
    triggered_by: Option<DagRunTriggeredByType>,
    triggering_user_name: Option<String>,
    conf: Option<Value>,
    note: Option<String>,
    dag_versions: Vec<DagVersionResponse>,
    bundle_version: Option<String>,
    dag_display_name: String,
    partition_key: Option<String>,
    partition_date: Option<DateTime<Utc>>,
}

fn to_response(r: &RunRow, version: Option<&DagVersionResponse>) -> DagRunResponse {
    use upiflow_engine::{RunState as S, RunType as T};
    let (run_type, triggered_by) = match r.run_type {
        T::Manual => (DagRunType::Manual, DagRunTriggeredByType::RestApi),
        T::Scheduled => (DagRunType::Scheduled, DagRunTriggeredByType::Timetable),
        T::Backfill => (DagRunType::Backfill, DagRunTriggeredByType::Backfill),
    };
    DagRunResponse {
        dag_run_id: r.run_id.clone(),
        dag_id: r.dag_id.clone(),
        logical_date: Some(r.logical_date),
        queued_at: Some(r.queued_at),
        start_date: r.start_date,
        end_date: r.end_date,
        duration: models::duration(r.start_date, r.end_date),
        data_interval_start: Some(r.data_interval_start),
        data_interval_end: Some(r.data_interval_end),
        run_after: r.data_interval_end,
        last_scheduling_decision: None,
        run_type,
        state: match r.state {
            S::Queued => DagRunState::Queued,
            S::Running => DagRunState::Running,
            S::Success => DagRunState::Success,
            S::Failed => DagRunState::Failed,
        },
        triggered_by: Some(triggered_by),
        triggering_user_name: None,
        conf: Some(r.conf.clone()),
        note: None,
        dag_versions: version.cloned().into_iter().collect(),
        bundle_version: None,
        dag_display_name: r.dag_id.clone(),
        partition_key: None,
        partition_date: None,
    }
}

async fn responses(
    conn: &mut PgConnection,
    rows: &[RunRow],
) -> Result<Vec<DagRunResponse>, ApiError> {
    let wanted: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.dag_id.clone(), r.dag_hash.clone()))
        .collect();
    let versions = models::dag_versions(conn, &wanted).await?;
    Ok(rows
        .iter()
        .map(|r| to_response(r, versions.get(&(r.dag_id.clone(), r.dag_hash.clone()))))
        .collect())
}

/// Airflow's `DAGRunCollectionResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGRunCollectionResponse)]
pub struct DagRunCollectionResponse {
    dag_runs: Vec<DagRunResponse>,
    total_entries: i64,
}

/// Runs of a DAG, newest logical date first.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path), Page),
    responses((status = 200, body = DagRunCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
    Params(page): Params<Page>,
) -> Result<Json<DagRunCollectionResponse>, ApiError> {
    let (limit, offset) = page.checked()?;
    let mut conn = s.pool.acquire().await?;
    // Whether the DAG exists and how many runs it has, in one round trip.
    let (exists, total): (bool, i64) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM dags WHERE dag_id = $1),
                (SELECT count(*) FROM dag_runs WHERE dag_id = $1)",
    )
    .bind(&dag_id)
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Err(super::dags::not_found(&dag_id));
    }
    let rows = runs::list(&mut conn, &dag_id, limit, offset).await?;
    Ok(Json(DagRunCollectionResponse {
        dag_runs: responses(&mut conn, &rows).await?,
        total_entries: total,
    }))
}

/// A run of a DAG, or a 404 naming what is missing.
pub(super) async fn find_run(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
) -> Result<RunRow, ApiError> {
    runs::get(conn, dag_id, run_id).await.map_err(|e| match e {
        upiflow_engine::EngineError::NotFound(_) => ApiError::NotFound(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        )),
        other => other.into(),
    })
}

/// One run.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DagRunResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id)): Ids<(String, String)>,
) -> Result<Json<DagRunResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let run = find_run(&mut conn, &dag_id, &run_id).await?;
    let mut out = responses(&mut conn, std::slice::from_ref(&run)).await?;
    Ok(Json(out.remove(0)))
}

/// Airflow 3's `TriggerDAGRunPostBody` (the fields upiflow honours; `note` is accepted and
/// not kept).
#[derive(Deserialize, ToSchema)]
#[schema(as = TriggerDAGRunPostBody)]
struct TriggerBody {
    logical_date: Option<DateTime<Utc>>,
    #[serde(default)]
    conf: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// Creates a manual run (admin). Without a logical date, it covers the latest complete
/// interval.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path)), request_body = TriggerBody,
    responses((status = 200, body = DagRunResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn trigger(
    State(s): State<AppState>,
    _: Admin,
    Ids(dag_id): Ids<String>,
    Body(body): Body<TriggerBody>,
) -> Result<Json<DagRunResponse>, ApiError> {
    let dag = super::dags::latest(&s, &dag_id).await?;
    let req = Trigger {
        logical_date: body.logical_date,
        conf: body.conf.unwrap_or_else(|| json!({})),
        ..Trigger::default()
    };
    let run = ops::trigger(&s.pool, &s.cache, &dag, &req).await?;
    let mut conn = s.pool.acquire().await?;
    let mut out = responses(&mut conn, std::slice::from_ref(&run)).await?;
    Ok(Json(out.remove(0)))
}
