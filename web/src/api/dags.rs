//! `GET|PATCH /api/v2/dags`, `GET|PATCH|DELETE /api/v2/dags/{dag_id}`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upiflow_engine::schedule::{Schedule, parse_timezone};
use upiflow_engine::store::dag_list::{self, DagListFilter, DagOrder, DagSummary};
use utoipa::{IntoParams, ToSchema};
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
        .routes(routes!(list, patch_many))
        .routes(routes!(one, patch, delete))
}

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
    pub(super) dag_id: String,
    pub(super) dag_display_name: String,
    pub(super) is_paused: bool,
    /// The DAG's file is gone from the DAGs folder.
    pub(super) is_stale: bool,
    pub(super) last_parsed_time: Option<DateTime<Utc>>,
    pub(super) last_parse_duration: Option<f64>,
    pub(super) last_expired: Option<DateTime<Utc>>,
    pub(super) bundle_name: Option<String>,
    pub(super) bundle_version: Option<String>,
    pub(super) relative_fileloc: Option<String>,
    pub(super) fileloc: String,
    pub(super) description: Option<String>,
    pub(super) timetable_summary: Option<String>,
    pub(super) timetable_description: Option<String>,
    pub(super) timetable_partitioned: bool,
    pub(super) timetable_periodic: bool,
    pub(super) tags: Vec<DagTagResponse>,
    /// Task instances of one run running at once (the DAG's `max_active_tasks`).
    pub(super) max_active_tasks: i64,
    pub(super) max_active_runs: Option<i32>,
    pub(super) max_consecutive_failed_dag_runs: i32,
    pub(super) has_task_concurrency_limits: bool,
    pub(super) has_import_errors: bool,
    pub(super) next_dagrun_logical_date: Option<DateTime<Utc>>,
    pub(super) next_dagrun_data_interval_start: Option<DateTime<Utc>>,
    pub(super) next_dagrun_data_interval_end: Option<DateTime<Utc>>,
    pub(super) next_dagrun_run_after: Option<DateTime<Utc>>,
    pub(super) allowed_run_types: Option<Vec<String>>,
    pub(super) owners: Vec<String>,
    pub(super) is_backfillable: bool,
    /// The content hash of the DAG's current definition.
    pub(super) file_token: String,
}

pub(super) fn to_response(r: DagSummary) -> DagResponse {
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
        max_active_tasks: i64::from(r.max_active_tasks),
        max_active_runs: Some(r.max_active_runs),
        max_consecutive_failed_dag_runs: 0,
        has_task_concurrency_limits: r.has_task_concurrency_limits,
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

/// Query parameters of the DAG list (for the document; [`list`] reads them one by one).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct DagListQuery {
    /// At most this many entries (0 to 1000).
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// Keep DAGs with these tags (repeat the parameter).
    tags: Option<Vec<String>>,
    /// `any` (the default): at least one of `tags`; `all`: every one.
    tags_match_mode: Option<String>,
    /// Case-insensitive substring (`%` and `_` are wildcards, `|` separates alternatives,
    /// `~` matches all).
    dag_id_pattern: Option<String>,
    /// Case-sensitive prefix (`|` separates alternatives, `~` matches all).
    dag_id_prefix_pattern: Option<String>,
    /// As `dag_id_pattern` (a DAG's display name is its id).
    dag_display_name_pattern: Option<String>,
    dag_display_name_prefix_pattern: Option<String>,
    /// Leave out DAGs whose file is gone (default true).
    #[param(default = true)]
    exclude_stale: Option<bool>,
    paused: Option<bool>,
    /// Keep DAGs whose file has (or has not) an import error.
    has_import_errors: Option<bool>,
    /// The state of the DAG's latest run (by logical date).
    last_dag_run_state: Option<String>,
    /// upiflow's only bundle is `dags-folder`.
    bundle_name: Option<String>,
    /// Keep DAGs with a run in one of these states (repeat the parameter) whose dates lie in
    /// the `dag_run_*` bounds.
    dag_run_state: Option<Vec<String>>,
    dag_run_start_date_gte: Option<DateTime<Utc>>,
    dag_run_start_date_gt: Option<DateTime<Utc>>,
    dag_run_start_date_lte: Option<DateTime<Utc>>,
    dag_run_start_date_lt: Option<DateTime<Utc>>,
    dag_run_end_date_gte: Option<DateTime<Utc>>,
    dag_run_end_date_gt: Option<DateTime<Utc>>,
    dag_run_end_date_lte: Option<DateTime<Utc>>,
    dag_run_end_date_lt: Option<DateTime<Utc>>,
    /// Keep the DAGs that are (or are not) favourites of the signed-in user.
    is_favorite: Option<bool>,
    /// Sort keys (repeat the parameter), `-` first for descending: dag_id (the default),
    /// dag_display_name, next_dagrun, last_run_state, last_run_start_date.
    order_by: Option<Vec<String>>,
}

/// Parameters Airflow documents for `GET /dags` that upiflow refuses, and why.
const DAG_LIST_UNSUPPORTED: &[(&str, &str)] = &[
    ("owners", "upiflow DAGs have no owners"),
    ("bundle_version", "upiflow does not version its DAG bundle"),
    ("has_asset_schedule", "upiflow has no assets"),
    ("asset_dependency", "upiflow has no assets"),
    (
        "timetable_type",
        "upiflow has cron schedules only, not timetable classes",
    ),
];

fn dag_order(key: &str) -> Option<DagOrder> {
    match key {
        "dag_id" | "dag_display_name" => Some(DagOrder::DagId),
        "next_dagrun" => Some(DagOrder::NextDagrun),
        "last_run_state" => Some(DagOrder::LastRunState),
        "last_run_start_date" => Some(DagOrder::LastRunStartDate),
        _ => None,
    }
}

fn run_state(key: &str, v: &str) -> Result<upiflow_engine::RunState, ApiError> {
    use upiflow_engine::RunState as S;
    Ok(match v {
        "queued" => S::Queued,
        "running" => S::Running,
        "success" => S::Success,
        "failed" => S::Failed,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "{key}: `{other}` is not a DAG run state (queued, running, success, failed)"
            )));
        }
    })
}

pub(super) fn run_states(
    q: &mut Query,
    key: &str,
) -> Result<Option<Vec<upiflow_engine::RunState>>, ApiError> {
    let values = q.all_split(key);
    if values.is_empty() {
        return Ok(None);
    }
    values
        .iter()
        .map(|v| run_state(key, v))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The filters `GET /dags` and `PATCH /dags` share (Airflow's `tags`, `tags_match_mode`,
/// `dag_id_pattern`, `dag_id_prefix_pattern`, `exclude_stale` and `paused`).
fn read_common_filter(q: &mut Query) -> Result<DagListFilter, ApiError> {
    let all_tags = match q.one("tags_match_mode")?.as_deref() {
        None | Some("any") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "tags_match_mode: `{other}` is not `any` or `all`"
            )));
        }
    };
    Ok(DagListFilter {
        tags: q.all("tags"),
        all_tags,
        dag_id_matches: q.patterns("dag_id")?,
        exclude_stale: q.bool("exclude_stale")?.unwrap_or(true),
        paused: q.bool("paused")?,
        ..Default::default()
    })
}

/// The signed-in user as the owner of favourites.
pub(super) fn owner(user: &Viewer) -> upiflow_engine::store::favorites::Owner {
    upiflow_engine::store::favorites::Owner {
        name: user.username.clone(),
        api_key: user.api_key,
    }
}

/// The DAG list's filters, read from the query.
fn read_filter(q: &mut Query, user: &Viewer) -> Result<DagListFilter, ApiError> {
    let mut f = read_common_filter(q)?;
    // A DAG's display name is its id.
    f.dag_id_matches.extend(q.patterns("dag_display_name")?);
    f.has_import_errors = q.bool("has_import_errors")?;
    f.last_run_state = q
        .one("last_dag_run_state")?
        .map(|v| run_state("last_dag_run_state", &v))
        .transpose()?;
    f.bundle_name = q.one("bundle_name")?;
    f.run_states = run_states(q, "dag_run_state")?;
    f.run_starts = q.date_range("dag_run_start_date")?;
    f.run_ends = q.date_range("dag_run_end_date")?;
    // Each user's own favourites (Airflow 3.1): the caller is the signed-in user or API key.
    f.favorite_of = q.bool("is_favorite")?.map(|v| (owner(user), v));
    Ok(f)
}

/// DAGs, by id unless `order_by` says otherwise.
#[utoipa::path(get, path = "/api/v2/dags", tag = "DAG", params(DagListQuery),
    responses((status = 200, body = DagCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    user: Viewer,
    mut q: Query,
) -> Result<Json<DagCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(dag_order, "")?;
    let filter = read_filter(&mut q, &user)?;
    q.finish(DAG_LIST_UNSUPPORTED)?;
    let mut conn = s.pool.acquire().await?;
    let (rows, total) = dag_list::search(&mut conn, &filter, &order, limit, offset).await?;
    Ok(Json(DagCollectionResponse {
        dags: rows.into_iter().map(to_response).collect(),
        total_entries: total,
    }))
}

pub(super) async fn fetch(s: &AppState, dag_id: &str) -> Result<DagResponse, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let row = dag_list::summary(&mut conn, dag_id).await?;
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
    let mut conn = s.pool.acquire().await?;
    let hash = dag_list::latest_hash(&mut conn, dag_id)
        .await?
        .ok_or_else(|| not_found(dag_id))?;
    Ok(s.cache.get(&mut conn, dag_id, &hash).await?)
}

/// One DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
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

/// Pauses or unpauses a DAG. `update_mask`, if given, must be exactly `is_paused` (the only
/// field that can change), as Airflow's `patch_dag` requires.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query, description = "Only `is_paused`")),
    request_body = DagPatchBody,
    responses((status = 200, body = DagResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn patch(
    State(s): State<AppState>,
    _: Allowed<may::Pause>,
    Ids(dag_id): Ids<String>,
    mut q: Query,
    Body(p): Body<DagPatchBody>,
) -> Result<Json<DagResponse>, ApiError> {
    check_update_mask(&mut q)?;
    q.finish::<&str>(&[])?;
    let mut tx = s.pool.begin().await?;
    upiflow_engine::ops::set_paused(&mut tx, &s.cache, &dag_id, p.is_paused).await?;
    tx.commit().await?;
    Ok(Json(fetch(&s, &dag_id).await?))
}

/// Airflow's `update_mask` check for `PATCH /dags` and `PATCH /dags/{dag_id}`: absent, or
/// exactly `["is_paused"]` (a 400 otherwise, with Airflow's message; Airflow compares the
/// list, so neither another field nor `is_paused` twice passes).
fn check_update_mask(q: &mut Query) -> Result<(), ApiError> {
    let mask = q.all("update_mask");
    if !mask.is_empty() && mask != ["is_paused"] {
        return Err(ApiError::BadRequest(format!(
            "Only `is_paused` field can be updated through the REST API (update_mask: {})",
            mask.join(", ")
        )));
    }
    Ok(())
}

/// Parameters Airflow documents for `PATCH /dags` that upiflow refuses, and why.
const DAG_PATCH_UNSUPPORTED: &[(&str, &str)] = &[("owners", "upiflow DAGs have no owners")];

/// Query parameters of `PATCH /dags` (for the document; [`patch_many`] reads them).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct DagPatchQuery {
    /// Only `is_paused`.
    update_mask: Option<Vec<String>>,
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    tags: Option<Vec<String>>,
    tags_match_mode: Option<String>,
    dag_id_pattern: Option<String>,
    dag_id_prefix_pattern: Option<String>,
    #[param(default = true)]
    exclude_stale: Option<bool>,
    paused: Option<bool>,
}

/// Pauses or unpauses every DAG the filters keep, one page of them (`limit`, `offset`, by
/// id), in one transaction through the same engine call as `PATCH /dags/{dag_id}`; answers
/// those DAGs as they are afterwards, and how many the filters keep in all (Airflow's
/// `patch_dags`, which, like this, needs no `dag_id_pattern` in Airflow 3).
#[utoipa::path(patch, path = "/api/v2/dags", tag = "DAG", params(DagPatchQuery),
    request_body = DagPatchBody,
    responses((status = 200, body = DagCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn patch_many(
    State(s): State<AppState>,
    _: Allowed<may::Pause>,
    mut q: Query,
    Body(p): Body<DagPatchBody>,
) -> Result<Json<DagCollectionResponse>, ApiError> {
    check_update_mask(&mut q)?;
    let (limit, offset) = q.page()?;
    let filter = read_common_filter(&mut q)?;
    q.finish(DAG_PATCH_UNSUPPORTED)?;
    let mut tx = s.pool.begin().await?;
    let (rows, total) = dag_list::search(&mut tx, &filter, &[], limit, offset).await?;
    let ids: Vec<String> = rows.into_iter().map(|r| r.dag_id).collect();
    for id in &ids {
        upiflow_engine::ops::set_paused(&mut tx, &s.cache, id, p.is_paused).await?;
    }
    let changed = DagListFilter {
        dag_ids: Some(ids),
        ..Default::default()
    };
    let (rows, _) = dag_list::search(&mut tx, &changed, &[], limit, 0).await?;
    tx.commit().await?;
    Ok(Json(DagCollectionResponse {
        dags: rows.into_iter().map(to_response).collect(),
        total_entries: total,
    }))
}

/// Deletes everything recorded of a DAG: its versions, runs, task instances with their tries
/// and logs, backfills, favourites and notifications (Airflow's `delete_dag`; the audit log
/// keeps its rows, as Airflow keeps its `log` table). A 409 while a task instance of it is
/// running, as in Airflow. The file is not touched: while it is still in the DAGs folder the
/// scheduler records the DAG again at its next sync, as a new DAG (version 1, no history),
/// as Airflow's next parse does; remove the file first to be rid of it. Airflow answers 204
/// (its document says 200).
#[utoipa::path(delete, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 204, description = "The DAG's metadata is deleted"),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn delete(
    State(s): State<AppState>,
    _: Allowed<may::Pause>,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
) -> Result<axum::http::StatusCode, ApiError> {
    upiflow_engine::ops::delete_dag(&s.pool, &dag_id)
        .await
        .map_err(|e| match e {
            upiflow_engine::EngineError::DagNotFound(_) => not_found(&dag_id),
            e => e.into(),
        })?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
