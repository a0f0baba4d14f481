//! `PATCH /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}` and its
//! `/dry_run` twin, as Airflow 3's `patch_task_instance`: mark the task instance (and on
//! request its upstream, downstream, past and future relatives) success, failed or skipped,
//! and set its note.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use upiflow_engine::lifecycle::mark::{self, MarkTasks, TiMark};
use upiflow_engine::store::task_views;
use utoipa::ToSchema;

use super::{MapIndex, TaskInstanceCollectionResponse, check_map_index, find_ti, ti_responses};
use crate::AppState;
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::Query;
use crate::api::runs::{present, update_mask};
use crate::api::{Body, Ids};
use crate::auth::Allowed;
use crate::error::ApiError;
use crate::roles::may;

/// Airflow 3's `PatchTaskInstanceBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchTaskInstanceBody {
    /// `success`, `failed` or `skipped` (any case).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(super) new_state: Option<Option<String>>,
    /// At most 1000 characters; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub(super) note: Option<Option<String>>,
    /// Also every task upstream of it, transitively.
    #[serde(default)]
    pub(super) include_upstream: bool,
    /// Also every task downstream of it, transitively.
    #[serde(default)]
    pub(super) include_downstream: bool,
    /// Also the same tasks in runs with later logical dates.
    #[serde(default)]
    pub(super) include_future: bool,
    /// Also the same tasks in runs with earlier logical dates.
    #[serde(default)]
    pub(super) include_past: bool,
}

const FIELDS: &[&str] = &[
    "new_state",
    "note",
    "include_upstream",
    "include_downstream",
    "include_future",
    "include_past",
];

/// What a valid request asks.
struct Patch {
    state: Option<TiMark>,
    note: Option<Option<String>>,
}

/// Checks the body as Airflow's model does (a 422 naming the field) and applies
/// `update_mask` (a field it does not name is left alone).
fn validate(q: &mut Query, body: &PatchTaskInstanceBody) -> Result<Patch, ApiError> {
    let mut given = Vec::new();
    if body.new_state.is_some() {
        given.push("new_state");
    }
    if body.note.is_some() {
        given.push("note");
    }
    if let Some(m) = q.int("map_index")? {
        check_map_index(m)?;
    }
    let fields = update_mask(q, &given, FIELDS)?;
    let state = match &body.new_state {
        None => None,
        Some(None) => {
            return Err(ApiError::Unprocessable(
                "new_state: 'new_state' should not be empty".into(),
            ));
        }
        Some(Some(v)) => Some(TiMark::parse(v).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "new_state: '{}' is not one of ['success', 'failed', 'skipped']",
                v.to_lowercase()
            ))
        })?),
    };
    if let Some(Some(n)) = &body.note {
        mark::check_note(n).map_err(|e| ApiError::Unprocessable(format!("note: {e}")))?;
    }
    Ok(Patch {
        state: state.filter(|_| fields.contains(&"new_state")),
        note: body.note.clone().filter(|_| fields.contains(&"note")),
    })
}

fn request<'a>(
    ids: &'a (String, String, String),
    body: &PatchTaskInstanceBody,
    state: TiMark,
    dry_run: bool,
    by: &'a str,
) -> MarkTasks<'a> {
    MarkTasks {
        dag_id: &ids.0,
        run_id: &ids.1,
        task_id: &ids.2,
        state,
        upstream: body.include_upstream,
        downstream: body.include_downstream,
        past: body.include_past,
        future: body.include_future,
        dry_run,
        by,
    }
}

/// Marks a task instance (admin) and sets its note. A running try it changes is stopped;
/// downstream tasks then follow their trigger rules. 409 if nothing would change.
#[utoipa::path(patch,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        MapIndex,
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Only these fields of the body")),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn patch(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Mark>,
    Ids(ids): Ids<(String, String, String)>,
    q: Query,
    Body(body): Body<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    patch_one(&s, &user.username, ids, q, &body).await
}

/// [`patch`] by map index: upiflow has no mapped tasks, so -1 is the task instance itself
/// (as in Airflow, where an unmapped task instance has map_index -1) and any other index
/// is a 404 saying so.
#[utoipa::path(patch,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i64, Path, description = "Only -1: upiflow has no mapped tasks"),
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Only these fields of the body")),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn patch_mapped(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Mark>,
    Ids((dag_id, run_id, task_id, map_index)): Ids<(String, String, String, i64)>,
    q: Query,
    Body(body): Body<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    check_map_index(map_index)?;
    patch_one(&s, &user.username, (dag_id, run_id, task_id), q, &body).await
}

/// The single PATCH, shared by the unmapped and the `{map_index}` routes.
pub(in crate::api) async fn patch_one(
    s: &AppState,
    by: &str,
    ids: (String, String, String),
    mut q: Query,
    body: &PatchTaskInstanceBody,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let p = validate(&mut q, body)?;
    q.finish(&[] as &[(&str, &str)])?;
    let (dag_id, run_id, task_id) = (&ids.0, &ids.1, &ids.2);
    {
        let mut conn = s.pool.acquire().await?;
        find_ti(&mut conn, dag_id, run_id, task_id).await?;
    }
    if let Some(state) = p.state {
        let req = request(&ids, body, state, false, by);
        mark::mark_tasks(&s.pool, &s.cache, &req).await?;
    }
    if let Some(n) = &p.note {
        mark::set_task_note(&s.pool, dag_id, run_id, task_id, n.as_deref(), by).await?;
    }
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, dag_id, run_id, task_id).await?;
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: ti_responses(s, &mut conn, std::slice::from_ref(&ti)).await?,
        total_entries: 1,
    }))
}

/// What [`patch`] would change, changing nothing (admin): the task instances a new state
/// would be given to, as they are now; with only a note, the task instance itself.
#[utoipa::path(patch,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        MapIndex,
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Only these fields of the body")),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn patch_dry_run(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Mark>,
    Ids(ids): Ids<(String, String, String)>,
    q: Query,
    Body(body): Body<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    dry_run_one(&s, &user.username, ids, q, &body).await
}

/// [`patch_dry_run`] by map index: -1 is the task instance itself, any other index a 404.
#[utoipa::path(patch,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("map_index" = i64, Path, description = "Only -1: upiflow has no mapped tasks"),
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Only these fields of the body")),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn patch_mapped_dry_run(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Mark>,
    Ids((dag_id, run_id, task_id, map_index)): Ids<(String, String, String, i64)>,
    q: Query,
    Body(body): Body<PatchTaskInstanceBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    check_map_index(map_index)?;
    dry_run_one(&s, &user.username, (dag_id, run_id, task_id), q, &body).await
}

async fn dry_run_one(
    s: &AppState,
    by: &str,
    ids: (String, String, String),
    mut q: Query,
    body: &PatchTaskInstanceBody,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let p = validate(&mut q, body)?;
    q.finish(&[] as &[(&str, &str)])?;
    let (dag_id, run_id, task_id) = (&ids.0, &ids.1, &ids.2);
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, dag_id, run_id, task_id).await?;
    let rows = if let Some(state) = p.state {
        let req = request(&ids, body, state, true, by);
        let would = mark::mark_tasks(&s.pool, &s.cache, &req).await?;
        let mut rows = Vec::with_capacity(would.len());
        for m in would {
            if let Some(t) = task_views::detail(&mut conn, dag_id, &m.run_id, &m.task_id).await? {
                rows.push(t);
            }
        }
        rows
    } else if p.note.is_some() {
        vec![ti]
    } else {
        Vec::new()
    };
    Ok(Json(TaskInstanceCollectionResponse {
        total_entries: rows.len() as i64,
        task_instances: ti_responses(s, &mut conn, &rows).await?,
    }))
}
