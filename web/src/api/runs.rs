//! `GET|POST /api/v2/dags/{dag_id}/dagRuns`, `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::store::runs::{self, RunRow};

use super::{Body, Page};
use crate::AppState;
use crate::auth::{Admin, Viewer};
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/dags/{dag_id}/dagRuns", get(list).post(trigger))
        .route("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", get(one))
}

/// Airflow's DAGRunResponse fields.
fn to_json(r: &RunRow) -> Value {
    json!({
        "dag_run_id": r.run_id,
        "dag_id": r.dag_id,
        "logical_date": r.logical_date,
        "queued_at": r.queued_at,
        "start_date": r.start_date,
        "end_date": r.end_date,
        "data_interval_start": r.data_interval_start,
        "data_interval_end": r.data_interval_end,
        "run_after": r.data_interval_end,
        "last_scheduling_decision": null,
        "run_type": r.run_type.as_str(),
        "state": r.state.as_str(),
        "triggered_by": if r.run_type.as_str() == "manual" { "rest_api" } else { "timetable" },
        "conf": r.conf,
        "note": null,
    })
}

async fn ensure_dag(s: &AppState, dag_id: &str) -> Result<(), ApiError> {
    super::dags::fetch(s, dag_id).await.map(|_| ())
}

async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Path(dag_id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = page.checked()?;
    ensure_dag(&s, &dag_id).await?;
    let mut conn = s.pool.acquire().await?;
    let rows = runs::list(&mut conn, &dag_id, limit, offset).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE dag_id = $1")
        .bind(&dag_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Json(json!({
        "dag_runs": rows.iter().map(to_json).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let run = runs::get(&mut conn, &dag_id, &run_id).await?;
    Ok(Json(to_json(&run)))
}

/// Airflow 3's TriggerDAGRunPostBody (the fields upiflow honours).
#[derive(Deserialize)]
struct TriggerBody {
    logical_date: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    conf: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

async fn trigger(
    State(s): State<AppState>,
    _: Admin,
    Path(dag_id): Path<String>,
    Body(body): Body<TriggerBody>,
) -> Result<Json<Value>, ApiError> {
    let hash: Option<String> = sqlx::query_scalar("SELECT latest_hash FROM dags WHERE dag_id = $1")
        .bind(&dag_id)
        .fetch_optional(&s.pool)
        .await?
        .flatten();
    let hash = hash
        .ok_or_else(|| ApiError::NotFound(format!("The Dag with ID: `{dag_id}` was not found")))?;
    let mut conn = s.pool.acquire().await?;
    let dag = s.cache.get(&mut conn, &dag_id, &hash).await?;
    drop(conn);
    let req = Trigger {
        logical_date: body.logical_date,
        conf: body.conf.unwrap_or_else(|| json!({})),
        ..Trigger::default()
    };
    let run = ops::trigger(&s.pool, &s.cache, &dag, &req).await?;
    Ok(Json(to_json(&run)))
}
