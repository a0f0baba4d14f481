//! `GET /api/v2/dags`, `GET|PATCH /api/v2/dags/{dag_id}`.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::FromRow;

use super::{Body, Page};
use crate::AppState;
use crate::auth::{Admin, Viewer};
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/dags", get(list))
        .route("/api/v2/dags/{dag_id}", get(one).patch(patch))
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
    next_dagrun: Option<chrono::DateTime<chrono::Utc>>,
    updated_at: chrono::DateTime<chrono::Utc>,
    tags: Value,
}

const SELECT: &str =
    "SELECT d.dag_id, d.description, d.fileloc, d.is_paused, d.is_active, d.schedule,
        d.timezone, d.max_active_runs, d.next_dagrun, d.updated_at,
        COALESCE(v.spec->'tags', '[]'::jsonb) AS tags
    FROM dags d LEFT JOIN dag_versions v ON v.dag_id = d.dag_id AND v.hash = d.latest_hash";

/// Airflow's DAGResponse fields (those upiflow has).
fn to_json(r: Row) -> Value {
    let tags: Vec<Value> = r
        .tags
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str())
                .map(|t| json!({ "name": t, "dag_id": r.dag_id }))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "dag_id": r.dag_id,
        "dag_display_name": r.dag_id,
        "description": r.description,
        "fileloc": r.fileloc,
        "is_paused": r.is_paused,
        "is_stale": !r.is_active,
        "timetable_summary": r.schedule,
        "timezone": r.timezone,
        "max_active_runs": r.max_active_runs,
        "next_dagrun_logical_date": r.next_dagrun,
        "last_parsed_time": r.updated_at,
        "tags": tags,
        "owners": [],
    })
}

async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = page.checked()?;
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} ORDER BY d.dag_id LIMIT $1 OFFSET $2"))
        .bind(limit)
        .bind(offset)
        .fetch_all(&s.pool)
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dags")
        .fetch_one(&s.pool)
        .await?;
    Ok(Json(json!({
        "dags": rows.into_iter().map(to_json).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

pub(super) async fn fetch(s: &AppState, dag_id: &str) -> Result<Value, ApiError> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE d.dag_id = $1"))
        .bind(dag_id)
        .fetch_optional(&s.pool)
        .await?;
    row.map(to_json)
        .ok_or_else(|| ApiError::NotFound(format!("The Dag with ID: `{dag_id}` was not found")))
}

async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Path(dag_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(fetch(&s, &dag_id).await?))
}

#[derive(Deserialize)]
struct Patch {
    is_paused: bool,
}

async fn patch(
    State(s): State<AppState>,
    _: Admin,
    Path(dag_id): Path<String>,
    Body(p): Body<Patch>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = s.pool.begin().await?;
    upiflow_engine::store::dags::set_paused(&mut tx, &dag_id, p.is_paused).await?;
    if !p.is_paused {
        upiflow_engine::store::runs::start_queued(&mut tx, &s.cache, &dag_id).await?;
        upiflow_engine::store::notify_wake(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(Json(fetch(&s, &dag_id).await?))
}
