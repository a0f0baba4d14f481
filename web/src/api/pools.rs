//! `GET|POST /api/v2/pools`, `GET|PATCH|DELETE /api/v2/pools/{pool_name}`, as in Airflow 3,
//! on upiflow's pools (`upiflow_engine::pools`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use upiflow_engine::store::pools::{self as store_pools, PoolOrder, PoolUsage};
use upiflow_engine::{EngineError, ErrorKind, pools};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::bulk::{self, BulkBody, BulkResponse};
use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use super::runs::present;
use super::{Body, Ids};
use crate::AppState;
use crate::auth::{Allowed, Viewer};
use crate::error::ApiError;
use crate::roles::may;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create, bulk))
        .routes(routes!(one, patch, delete))
}

/// Airflow's `PoolResponse`. Slots are sums of the task instances' `pool_slots`.
#[derive(Serialize, ToSchema)]
pub struct PoolResponse {
    name: String,
    #[schema(minimum = 0)]
    slots: i32,
    description: Option<String>,
    /// Stored and reported; upiflow has no deferred state, so it changes nothing.
    include_deferred: bool,
    /// Running and queued slots (deferred would count too, but upiflow has none).
    occupied_slots: i64,
    running_slots: i64,
    /// Slots of task instances in state `queued`: upiflow's claim starts them at once, so 0.
    queued_slots: i64,
    /// Slots of task instances waiting for a try: `scheduled` or `up_for_retry`.
    scheduled_slots: i64,
    /// `slots` less `occupied_slots`; negative after the pool was shrunk below what runs.
    open_slots: i64,
    /// Always 0: upiflow has no deferred state.
    deferred_slots: i64,
    /// Always `null`: upiflow has no multi-team mode.
    team_name: Option<String>,
}

fn to_response(u: PoolUsage) -> PoolResponse {
    PoolResponse {
        occupied_slots: u.occupied(),
        open_slots: u.open(),
        running_slots: u.running,
        queued_slots: u.queued,
        scheduled_slots: u.scheduled,
        deferred_slots: 0,
        team_name: None,
        name: u.pool.name,
        slots: u.pool.slots,
        description: u.pool.description,
        include_deferred: u.pool.include_deferred,
    }
}

/// Airflow's `PoolCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct PoolCollectionResponse {
    pools: Vec<PoolResponse>,
    total_entries: i64,
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("The Pool with name: `{name}` was not found"))
}

/// An engine error of a pool route: a missing pool in Airflow's words, a refused name or
/// size as a 422 (pydantic refuses them in Airflow's bodies).
fn pool_error(name: &str, e: EngineError) -> ApiError {
    match e {
        EngineError::PoolNotFound(_) => not_found(name),
        e @ (EngineError::PoolNameInvalid(_) | EngineError::PoolSlotsInvalid(_)) => {
            ApiError::Unprocessable(e.to_string())
        }
        e => e.into(),
    }
}

/// Query parameters of the pool list (for the document; [`list`] reads them one by one).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct PoolListQuery {
    /// At most this many entries (0 to 1000).
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// Sort keys (repeat the parameter), `-` first for descending: `name` (the default) or
    /// its Airflow alias `pool`.
    order_by: Option<Vec<String>>,
    /// Case-insensitive substring (`%` and `_` are wildcards, `|` separates alternatives,
    /// `~` matches all).
    pool_name_pattern: Option<String>,
    /// Case-sensitive prefix (`|` separates alternatives, `~` matches all).
    pool_name_prefix_pattern: Option<String>,
}

fn pool_order(key: &str) -> Option<PoolOrder> {
    match key {
        "name" | "pool" => Some(PoolOrder::Name),
        _ => None,
    }
}

/// Pools with their use, by name unless `order_by` says otherwise.
#[utoipa::path(get, path = "/api/v2/pools", tag = "Pool", params(PoolListQuery),
    responses((status = 200, body = PoolCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<PoolCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(
        pool_order,
        " (upiflow sorts pools by `name`; they have no id)",
    )?;
    let matches = q.patterns("pool_name")?;
    q.finish::<&str>(&[])?;
    let mut conn = s.pool.acquire().await?;
    let (rows, total) = store_pools::list(&mut conn, &matches, &order, limit, offset).await?;
    Ok(Json(PoolCollectionResponse {
        pools: rows.into_iter().map(to_response).collect(),
        total_entries: total,
    }))
}

async fn fetch(s: &AppState, name: &str) -> Result<PoolResponse, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let row = store_pools::get(&mut conn, name).await?;
    row.map(to_response).ok_or_else(|| not_found(name))
}

/// One pool with its use.
#[utoipa::path(get, path = "/api/v2/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 200, body = PoolResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids(name): Ids<String>,
    _: NoQuery,
) -> Result<Json<PoolResponse>, ApiError> {
    Ok(Json(fetch(&s, &name).await?))
}

/// Refuses a team: upiflow has no multi-team mode (Airflow refuses one unless it is on).
fn no_team(team_name: &Option<String>) -> Result<(), ApiError> {
    match team_name {
        None => Ok(()),
        Some(_) => Err(ApiError::Unprocessable(
            "team_name cannot be set: upiflow has no multi-team mode".into(),
        )),
    }
}

/// Airflow's `PoolBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PoolBody {
    /// 1-256 letters, digits, `_`, `-` or `.`.
    #[serde(alias = "pool")]
    name: String,
    /// At least 0 (upiflow has no unlimited pools, Airflow's -1).
    #[schema(minimum = 0)]
    slots: i64,
    description: Option<String>,
    #[serde(default)]
    include_deferred: bool,
    /// Only `null`: upiflow has no multi-team mode.
    team_name: Option<String>,
}

/// Creates a pool (admin); a 409 if one of that name exists.
#[utoipa::path(post, path = "/api/v2/pools", tag = "Pool",
    request_body = PoolBody,
    responses((status = 201, body = PoolResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn create(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Pools>,
    _: NoQuery,
    Body(b): Body<PoolBody>,
) -> Result<(StatusCode, Json<PoolResponse>), ApiError> {
    no_team(&b.team_name)?;
    let changed = pools::create(
        &s.pool,
        &b.name,
        b.slots,
        b.description.as_deref(),
        b.include_deferred,
    )
    .await
    .map_err(|e| match e {
        EngineError::PoolExists(_) => {
            ApiError::Conflict(format!("The Pool with name: `{}` already exists", b.name))
        }
        e => pool_error(&b.name, e),
    })?;
    for w in changed.warnings() {
        tracing::warn!(user = %user.username, pool = %b.name, warning = %w, "pool created smaller than a task needs");
    }
    Ok((StatusCode::CREATED, Json(to_response(changed.pool))))
}

/// Airflow's `PoolPatchBody`: the fields given change (or, with `update_mask`, those named).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PoolPatchBody {
    /// If given, the pool's own name (pools are not renamed).
    #[serde(default, alias = "name", deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pool: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    slots: Option<Option<i64>>,
    /// `null` removes the description.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    include_deferred: Option<Option<bool>>,
    /// Only `null`: upiflow has no multi-team mode.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    team_name: Option<Option<String>>,
}

const PATCH_FIELDS: [&str; 4] = ["name", "slots", "description", "include_deferred"];

/// Changes a pool (admin). Without `update_mask` the fields the body gives change; with it,
/// exactly the fields it names (one left out of the body is then `null`: for `description`
/// that removes it). On `default_pool` only `slots` and `include_deferred` may change, and
/// only through `update_mask`, as in Airflow.
#[utoipa::path(patch, path = "/api/v2/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Fields to change: name, slots, description, include_deferred")),
    request_body = PoolPatchBody,
    responses((status = 200, body = PoolResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn patch(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Pools>,
    Ids(name): Ids<String>,
    mut q: Query,
    Body(b): Body<PoolPatchBody>,
) -> Result<Json<PoolResponse>, ApiError> {
    let mask: Vec<String> = q
        .all_split("update_mask")
        .into_iter()
        .map(|f| f.trim().to_string())
        .map(|f| if f == "pool" { "name".into() } else { f })
        .collect();
    q.finish::<&str>(&[])?;
    if let Some(bad) = mask.iter().find(|f| !PATCH_FIELDS.contains(&f.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "update_mask: `{bad}` is not a field of a pool ({})",
            PATCH_FIELDS.join(", ")
        )));
    }
    no_team(&b.team_name.clone().flatten())?;
    if let Some(Some(other)) = &b.pool
        && other != &name
    {
        return Err(ApiError::BadRequest(
            "Invalid body, pool name from request body doesn't match uri parameter".into(),
        ));
    }
    if name == upiflow_engine::dag::DEFAULT_POOL
        && (mask.is_empty()
            || mask
                .iter()
                .any(|f| !matches!(f.as_str(), "slots" | "include_deferred")))
    {
        // A missing pool is a 404 before this, as in Airflow.
        fetch(&s, &name).await?;
        return Err(ApiError::BadRequest(
            "Only slots and included_deferred can be modified on Default Pool".into(),
        ));
    }
    let wanted = |field: &str, given: bool| {
        if mask.is_empty() {
            given
        } else {
            mask.iter().any(|f| f == field)
        }
    };
    let mut p = pools::Patch::default();
    if wanted("slots", b.slots.is_some()) {
        match b.slots.flatten() {
            Some(n) => p.slots = Some(n),
            None => return Err(ApiError::Unprocessable("slots: must be a number".into())),
        }
    }
    if wanted("description", b.description.is_some()) {
        p.description = Some(b.description.flatten());
    }
    if wanted("include_deferred", b.include_deferred.is_some()) {
        match b.include_deferred.flatten() {
            Some(v) => p.include_deferred = Some(v),
            None => {
                return Err(ApiError::Unprocessable(
                    "include_deferred: must be a boolean".into(),
                ));
            }
        }
    }
    let changed = pools::update(&s.pool, &name, &p)
        .await
        .map_err(|e| pool_error(&name, e))?;
    for w in changed.warnings() {
        tracing::warn!(user = %user.username, pool = %name, warning = %w, "pool shrunk below what a task needs");
    }
    Ok(Json(to_response(changed.pool)))
}

/// Deletes a pool (admin): not `default_pool` (400), not one a current DAG version names or
/// unfinished task instances hold or wait for (409, naming them).
#[utoipa::path(delete, path = "/api/v2/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn delete(
    State(s): State<AppState>,
    _: Allowed<may::Pools>,
    Ids(name): Ids<String>,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    pools::delete(&s.pool, &name).await.map_err(|e| match e {
        EngineError::DefaultPoolUndeletable => {
            ApiError::BadRequest("Default Pool can't be deleted".into())
        }
        e if e.kind() == ErrorKind::NotFound => not_found(&name),
        e => pool_error(&name, e),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Airflow's `PoolBody` as a bulk entity, knowing which optional fields were given (a bulk
/// update without `update_mask` changes those, as Airflow's `model_fields_set`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkPoolBody {
    #[serde(alias = "pool")]
    name: String,
    slots: i64,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    include_deferred: Option<Option<bool>>,
    team_name: Option<String>,
}

impl BulkPoolBody {
    fn include_deferred(&self) -> bool {
        self.include_deferred.flatten().unwrap_or(false)
    }

    /// The fields given (`slots` always: Airflow's `PoolBody` requires it).
    fn given(&self) -> Vec<&'static str> {
        let mut out = vec!["slots"];
        if self.description.is_some() {
            out.push("description");
        }
        if self.include_deferred.is_some() {
            out.push("include_deferred");
        }
        out
    }
}

/// A pool in a bulk request: the same calls and checks as the single routes.
struct PoolEntity;

fn default_pool_refused() -> ApiError {
    ApiError::BadRequest("Only slots and included_deferred can be modified on Default Pool".into())
}

/// Sets `fields` of the pool `b` names from `b` (a bulk update or overwrite; a field named but
/// left out of `b` takes its default: no description, `include_deferred` false).
async fn set_fields(s: &AppState, b: &BulkPoolBody, fields: &[&str]) -> Result<(), ApiError> {
    if b.name == upiflow_engine::dag::DEFAULT_POOL
        && fields
            .iter()
            .any(|f| !matches!(*f, "slots" | "include_deferred"))
    {
        return Err(default_pool_refused());
    }
    let wanted = |f: &str| fields.contains(&f);
    let p = pools::Patch {
        slots: wanted("slots").then_some(b.slots),
        description: wanted("description").then(|| b.description.clone().flatten()),
        include_deferred: wanted("include_deferred").then(|| b.include_deferred()),
    };
    let changed = pools::update(&s.pool, &b.name, &p)
        .await
        .map_err(|e| pool_error(&b.name, e))?;
    for w in changed.warnings() {
        tracing::warn!(pool = %b.name, warning = %w, "pool shrunk below what a task needs");
    }
    Ok(())
}

impl bulk::Entity for PoolEntity {
    type Body = BulkPoolBody;
    const PLURAL: &'static str = "pools with these pool names:";

    fn key(b: &BulkPoolBody) -> String {
        b.name.clone()
    }

    fn check(b: &BulkPoolBody, mask: Option<&[String]>) -> Result<(), ApiError> {
        no_team(&b.team_name)?;
        pools::check_name(&b.name).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        pools::check_slots(b.slots).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        if matches!(b.include_deferred, Some(None)) {
            return Err(ApiError::Unprocessable(
                "include_deferred: must be a boolean".into(),
            ));
        }
        bulk::check_mask(mask, &PATCH_FIELDS)
    }

    fn check_key(key: &str) -> Result<(), ApiError> {
        pools::check_name(key).map_err(|e| ApiError::Unprocessable(e.to_string()))
    }

    async fn exists(s: &AppState, key: &str) -> Result<bool, ApiError> {
        let mut conn = s.pool.acquire().await?;
        Ok(store_pools::get(&mut conn, key).await?.is_some())
    }

    async fn create(s: &AppState, b: &BulkPoolBody) -> Result<(), ApiError> {
        let changed = pools::create(
            &s.pool,
            &b.name,
            b.slots,
            b.description.clone().flatten().as_deref(),
            b.include_deferred(),
        )
        .await
        .map_err(|e| match e {
            EngineError::PoolExists(_) => {
                ApiError::Conflict(format!("The Pool with name: `{}` already exists", b.name))
            }
            e => pool_error(&b.name, e),
        })?;
        for w in changed.warnings() {
            tracing::warn!(pool = %b.name, warning = %w, "pool created smaller than a task needs");
        }
        Ok(())
    }

    /// Every field from the body, a left-out one its default (Airflow's overwrite sets the
    /// whole `PoolBody`).
    async fn replace(s: &AppState, b: &BulkPoolBody) -> Result<(), ApiError> {
        set_fields(s, b, &["slots", "description", "include_deferred"]).await
    }

    /// Without a mask the fields the body gives (Airflow's `model_fields_set`); with one,
    /// the fields it names.
    async fn update(
        s: &AppState,
        b: &BulkPoolBody,
        mask: Option<&[String]>,
    ) -> Result<(), ApiError> {
        match mask {
            // Airflow changes `default_pool` only through a mask naming slots or
            // include_deferred.
            None if b.name == upiflow_engine::dag::DEFAULT_POOL => Err(default_pool_refused()),
            None => set_fields(s, b, &b.given()).await,
            Some(mask) => {
                let fields: Vec<&str> = mask
                    .iter()
                    .map(String::as_str)
                    .filter(|f| *f != "name")
                    .collect();
                set_fields(s, b, &fields).await
            }
        }
    }

    async fn delete(s: &AppState, key: &str) -> Result<(), ApiError> {
        pools::delete(&s.pool, key).await.map_err(|e| match e {
            EngineError::DefaultPoolUndeletable => {
                ApiError::BadRequest("Default Pool can't be deleted".into())
            }
            e if e.kind() == ErrorKind::NotFound => not_found(key),
            e => pool_error(key, e),
        })
    }
}

/// Creates, updates and deletes pools in one request (admin), as Airflow's `bulk_pools`:
/// Airflow's `BulkBody[PoolBody]` (`actions` of `create`, `update` or `delete`, with
/// `action_on_existence` / `action_on_non_existence`) in, `BulkResponse` out. Applied action
/// by action, not as one transaction; see `api::bulk`.
#[utoipa::path(patch, path = "/api/v2/pools", tag = "Pool",
    request_body(content = Object, description = "Airflow's BulkBody[PoolBody]"),
    responses((status = 200, body = BulkResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn bulk(
    State(s): State<AppState>,
    _: Allowed<may::Pools>,
    _: NoQuery,
    Body(b): Body<BulkBody<BulkPoolBody>>,
) -> Result<Json<BulkResponse>, ApiError> {
    Ok(Json(bulk::apply::<PoolEntity>(&s, b).await?))
}
