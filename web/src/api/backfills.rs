//! `POST /api/v2/backfills`, `GET /api/v2/backfills/{backfill_id}`, as in Airflow 3, on
//! upiflow's backfills (`upiflow_engine::backfill`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use upiflow_engine::ErrorKind;
use upiflow_engine::backfill::{self, BackfillRow, Request};
use upiflow_engine::store::dag_list;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use super::{Body, Ids};
use crate::AppState;
use crate::auth::{Allowed, Viewer};
use crate::error::ApiError;
use crate::roles::may;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(one))
        .routes(routes!(dry_run))
        .routes(routes!(pause))
        .routes(routes!(unpause))
        .routes(routes!(cancel))
}

/// Which intervals that already have a run a backfill runs again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReprocessBehavior {
    /// Those whose run failed.
    Failed,
    /// Every one, failed or successful.
    Completed,
    /// None: only intervals without a run get one.
    #[default]
    None,
}

/// Airflow's `BackfillResponse`.
#[derive(Serialize, ToSchema)]
pub struct BackfillResponse {
    #[schema(minimum = 0)]
    id: i64,
    dag_id: String,
    from_date: DateTime<Utc>,
    to_date: DateTime<Utc>,
    /// Backfill runs get the DAG's default params: always `{}`.
    #[schema(value_type = Option<Object>)]
    dag_run_conf: Option<Value>,
    /// The backfill's own pause (`PUT .../pause`), as Airflow reports it; its runs also
    /// wait while the DAG is paused.
    is_paused: bool,
    reprocess_behavior: ReprocessBehavior,
    /// The limit that holds for the backfill's runs: its own, else the DAG's
    /// `max_active_runs` (they never count against the scheduled runs', as in Airflow 3).
    max_active_runs: i32,
    /// upiflow's: whether its tasks wait behind those of other runs (see the body's field).
    yield_to_scheduled: bool,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    dag_display_name: String,
}

async fn to_response(s: &AppState, b: BackfillRow) -> Result<BackfillResponse, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let dag = dag_list::pause_and_limit(&mut conn, &b.dag_id).await?;
    let (_, max_active_runs) = dag.unwrap_or((false, 0));
    let reprocess_behavior = if b.reset {
        ReprocessBehavior::Completed
    } else if b.rerun_failed {
        ReprocessBehavior::Failed
    } else {
        ReprocessBehavior::None
    };
    Ok(BackfillResponse {
        id: b.id,
        dag_display_name: b.dag_id.clone(),
        dag_id: b.dag_id,
        from_date: b.from_date,
        to_date: b.to_date,
        dag_run_conf: Some(Value::Object(Map::new())),
        is_paused: b.is_paused,
        reprocess_behavior,
        max_active_runs: b.max_active_runs.unwrap_or(max_active_runs),
        yield_to_scheduled: b.yield_to_scheduled,
        created_at: b.created_at,
        completed_at: b.completed_at,
        updated_at: b
            .updated_at
            .into_iter()
            .chain(b.completed_at)
            .max()
            .unwrap_or(b.created_at),
    })
}

/// Airflow's `BackfillPostBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BackfillPostBody {
    dag_id: String,
    /// First logical date (inclusive).
    from_date: DateTime<Utc>,
    /// Last logical date (inclusive).
    to_date: DateTime<Utc>,
    /// Only `false`: upiflow runs a backfill's intervals oldest first.
    #[serde(default)]
    run_backwards: bool,
    /// Only `null` or `{}`: backfill runs get the DAG's default params.
    #[schema(value_type = Option<Object>)]
    dag_run_conf: Option<Value>,
    #[serde(default)]
    reprocess_behavior: ReprocessBehavior,
    /// How many of the backfill's runs may run at once; left out, the DAG's
    /// `max_active_runs`. Backfill runs never count against the scheduled runs' limit.
    #[schema(minimum = 1)]
    max_active_runs: Option<i64>,
    /// upiflow's extension: `true` (the default) puts the backfill's tasks behind those of
    /// scheduled and manual runs in the claim, so it never delays them; `false` lets them
    /// compete by `priority_weight` alone.
    #[serde(default = "yes")]
    yield_to_scheduled: bool,
    /// Only `true` or `null`: backfill runs use the DAG's current definition.
    run_on_latest_version: Option<bool>,
}

/// Creates a backfill (admin): a run for every interval whose logical date lies in
/// `[from_date, to_date]`. Asking again for a running backfill resumes it.
#[utoipa::path(post, path = "/api/v2/backfills", tag = "Backfill",
    request_body = BackfillPostBody,
    responses((status = 200, body = BackfillResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn create(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Backfill>,
    _: NoQuery,
    Body(body): Body<BackfillPostBody>,
) -> Result<Json<BackfillResponse>, ApiError> {
    let (dag, req) = request(&s, &body, user.username).await?;
    let b = backfill::start(&s.pool, &s.cache, &dag, &req)
        .await
        .map_err(unprocessable)?;
    Ok(Json(to_response(&s, b).await?))
}

/// A range without intervals, a DAG without schedule: Airflow answers 422.
fn unprocessable(e: upiflow_engine::EngineError) -> ApiError {
    match ApiError::from(e) {
        ApiError::BadRequest(m) => ApiError::Unprocessable(m),
        other => other,
    }
}

/// The DAG and the engine's request for a backfill body, refusing what upiflow would not do.
async fn request(
    s: &AppState,
    body: &BackfillPostBody,
    created_by: String,
) -> Result<(std::sync::Arc<upiflow_engine::Dag>, Request), ApiError> {
    if body.run_backwards {
        return Err(ApiError::Unprocessable(
            "run_backwards is not supported: upiflow backfills run oldest first".into(),
        ));
    }
    if body
        .dag_run_conf
        .as_ref()
        .is_some_and(|c| c.as_object().is_none_or(|o| !o.is_empty()))
    {
        return Err(ApiError::Unprocessable(
            "dag_run_conf must be null or {}: backfill runs use the DAG's default params".into(),
        ));
    }
    if body.max_active_runs.is_some_and(|n| n < 1) {
        return Err(ApiError::Unprocessable(
            "max_active_runs must be at least 1".into(),
        ));
    }
    if body.run_on_latest_version == Some(false) {
        return Err(ApiError::Unprocessable(
            "run_on_latest_version: false is not supported: backfill runs use the DAG's \
             current definition"
                .into(),
        ));
    }
    let dag = super::dags::latest(s, &body.dag_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => {
                ApiError::NotFound(format!("Could not find dag {}", body.dag_id))
            }
            other => other,
        })?;
    let req = Request {
        from: body.from_date,
        to: body.to_date,
        rerun_failed: body.reprocess_behavior == ReprocessBehavior::Failed,
        reset: body.reprocess_behavior == ReprocessBehavior::Completed,
        created_by,
        max_active_runs: body
            .max_active_runs
            .map(|n| n.min(i64::from(u32::MAX)) as u32),
        yield_to_scheduled: body.yield_to_scheduled,
    };
    Ok((dag, req))
}

/// One backfill.
#[utoipa::path(get, path = "/api/v2/backfills/{backfill_id}", tag = "Backfill",
    params(("backfill_id" = i64, Path, minimum = 0)),
    responses((status = 200, body = BackfillResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids(id): Ids<i64>,
    _: NoQuery,
) -> Result<Json<BackfillResponse>, ApiError> {
    if id < 0 {
        return Err(ApiError::Unprocessable(
            "backfill_id must be at least 0".into(),
        ));
    }
    let b = backfill::get(&s.pool, id)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => ApiError::NotFound(format!("Backfill with id {id} not found")),
            _ => e.into(),
        })?;
    Ok(Json(to_response(&s, b).await?))
}

fn yes() -> bool {
    true
}

/// Airflow's `BackfillCollectionResponse`.
#[derive(Serialize, ToSchema)]
struct BackfillCollectionResponse {
    backfills: Vec<BackfillResponse>,
    total_entries: i64,
}

/// The backfills of a DAG (Airflow requires `dag_id`), by id unless `order_by` (`id` or
/// `-id`, the one key Airflow supports) says otherwise.
#[utoipa::path(get, path = "/api/v2/backfills", tag = "Backfill",
    params(("dag_id" = String, Query),
        ("limit" = Option<i64>, Query, minimum = 0, maximum = 1000),
        ("offset" = Option<i64>, Query, minimum = 0),
        ("order_by" = Option<Vec<String>>, Query, description = "`id` or `-id`")),
    responses((status = 200, body = BackfillCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<BackfillCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(|k| (k == "id").then_some(()), "; supported: id")?;
    let desc = order.first().is_some_and(|(_, d)| *d);
    let dag_id = q.one("dag_id")?;
    q.finish(&[] as &[(&str, &str)])?;
    let dag_id = dag_id.ok_or_else(|| {
        ApiError::Unprocessable("dag_id: Field required (the DAG whose backfills to list)".into())
    })?;
    let mut conn = s.pool.acquire().await?;
    if !dag_list::exists(&mut conn, &dag_id).await? {
        return Err(ApiError::NotFound(format!("Could not find dag {dag_id}")));
    }
    let (rows, total) =
        upiflow_engine::store::backfill_list::of_dag(&mut conn, &dag_id, desc, limit, offset)
            .await?;
    drop(conn);
    let mut backfills = Vec::with_capacity(rows.len());
    for b in rows {
        backfills.push(to_response(&s, b).await?);
    }
    Ok(Json(BackfillCollectionResponse {
        backfills,
        total_entries: total,
    }))
}

/// Airflow's `DryRunBackfillResponse`: one run a backfill would create or re-run.
#[derive(Serialize, ToSchema)]
struct DryRunBackfillResponse {
    logical_date: Option<DateTime<Utc>>,
    /// upiflow has no partitioned runs: always `null`.
    partition_key: Option<String>,
    partition_date: Option<DateTime<Utc>>,
}

/// Airflow's `DryRunBackfillCollectionResponse`.
#[derive(Serialize, ToSchema)]
struct DryRunBackfillCollectionResponse {
    backfills: Vec<DryRunBackfillResponse>,
    total_entries: i64,
}

/// The runs a backfill of this body would run, oldest first, without creating anything
/// (Airflow's `create_backfill_dry_run`): intervals without a run, and with
/// `reprocess_behavior` those whose run failed (`failed`) or finished (`completed`).
#[utoipa::path(post, path = "/api/v2/backfills/dry_run", tag = "Backfill",
    request_body = BackfillPostBody,
    responses((status = 200, body = DryRunBackfillCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn dry_run(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Backfill>,
    _: NoQuery,
    Body(body): Body<BackfillPostBody>,
) -> Result<Json<DryRunBackfillCollectionResponse>, ApiError> {
    let (dag, req) = request(&s, &body, user.username).await?;
    let dates = backfill::dry_run(&s.pool, &dag, &req)
        .await
        .map_err(unprocessable)?;
    Ok(Json(DryRunBackfillCollectionResponse {
        total_entries: dates.len() as i64,
        backfills: dates
            .into_iter()
            .map(|d| DryRunBackfillResponse {
                logical_date: Some(d),
                partition_key: None,
                partition_date: None,
            })
            .collect(),
    }))
}

/// The backfill id of a path, refusing a negative one (Airflow's `minimum: 0`) with a 422.
fn checked_id(id: i64) -> Result<i64, ApiError> {
    if id < 0 {
        return Err(ApiError::Unprocessable(
            "backfill_id must be at least 0".into(),
        ));
    }
    Ok(id)
}

/// An engine error of pause, unpause or cancel in Airflow's words: a missing backfill is a
/// 404 (`Could not find the backfill`), a completed one a 409 (`Backfill is already
/// completed.`).
fn change_error(id: i64, e: upiflow_engine::EngineError) -> ApiError {
    match e {
        upiflow_engine::EngineError::BackfillNotFound(_) => {
            ApiError::NotFound(format!("Could not find backfill with id {id}"))
        }
        e @ upiflow_engine::EngineError::BackfillCompleted(_) => ApiError::Conflict(e.to_string()),
        e => e.into(),
    }
}

/// Pauses a backfill, as Airflow 3 does: none of its queued runs starts until it is
/// unpaused; running runs go on. Pausing a paused one changes nothing; a completed one is a
/// 409.
#[utoipa::path(put, path = "/api/v2/backfills/{backfill_id}/pause", tag = "Backfill",
    params(("backfill_id" = i64, Path, minimum = 0)),
    responses((status = 200, body = BackfillResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn pause(
    State(s): State<AppState>,
    _: Allowed<may::Backfill>,
    Ids(id): Ids<i64>,
    _: NoQuery,
) -> Result<Json<BackfillResponse>, ApiError> {
    let id = checked_id(id)?;
    let b = backfill::set_paused(&s.pool, &s.cache, id, true)
        .await
        .map_err(|e| change_error(id, e))?;
    Ok(Json(to_response(&s, b).await?))
}

/// Unpauses a backfill, as Airflow 3 does: its queued runs start again (now, as far as its
/// `max_active_runs` allows). A completed one is a 409.
#[utoipa::path(put, path = "/api/v2/backfills/{backfill_id}/unpause", tag = "Backfill",
    params(("backfill_id" = i64, Path, minimum = 0)),
    responses((status = 200, body = BackfillResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn unpause(
    State(s): State<AppState>,
    _: Allowed<may::Backfill>,
    Ids(id): Ids<i64>,
    _: NoQuery,
) -> Result<Json<BackfillResponse>, ApiError> {
    let id = checked_id(id)?;
    let b = backfill::set_paused(&s.pool, &s.cache, id, false)
        .await
        .map_err(|e| change_error(id, e))?;
    Ok(Json(to_response(&s, b).await?))
}

/// Cancels a backfill, as Airflow 3's `cancel_backfill`: it is paused, its queued runs are
/// set `failed` (they never run), its running runs are left to finish, and it is completed
/// (`completed_at` now). A completed one is a 409.
#[utoipa::path(put, path = "/api/v2/backfills/{backfill_id}/cancel", tag = "Backfill",
    params(("backfill_id" = i64, Path, minimum = 0)),
    responses((status = 200, body = BackfillResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn cancel(
    State(s): State<AppState>,
    _: Allowed<may::Backfill>,
    Ids(id): Ids<i64>,
    _: NoQuery,
) -> Result<Json<BackfillResponse>, ApiError> {
    let id = checked_id(id)?;
    let b = backfill::cancel(&s.pool, id)
        .await
        .map_err(|e| change_error(id, e))?;
    Ok(Json(to_response(&s, b).await?))
}
