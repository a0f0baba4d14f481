//! Airflow endpoints for concepts upiflow lacks. Where Airflow's empty answer is the truth
//! (upiflow loads no plugins, installs no providers and has no assets) it is served, with the
//! paging parameters checked. Where an empty answer would lie, or the call would change
//! something upiflow cannot hold, the operation is in `unserved` (a 501 naming what is missing).

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(plugins))
        .routes(routes!(plugin_import_errors))
        .routes(routes!(providers))
        .routes(routes!(assets))
        .routes(routes!(asset_aliases))
        .routes(routes!(asset_events))
}

/// Checks `limit`/`offset` and refuses every other parameter with `why`.
fn empty_page(mut q: Query, others: &[&str], why: &str) -> Result<(), ApiError> {
    q.page()?;
    let unsupported: Vec<(&str, &str)> = others.iter().map(|k| (*k, why)).collect();
    q.finish(&unsupported)
}

/// Airflow's `PluginCollectionResponse` (always empty: upiflow loads no plugins; its task
/// kinds are built in).
#[derive(Serialize, ToSchema)]
pub struct PluginCollectionResponse {
    #[schema(value_type = Vec<Object>)]
    plugins: Vec<serde_json::Value>,
    total_entries: i64,
}

/// upiflow loads no plugins: Airflow's answer for an installation without any.
#[utoipa::path(get, path = "/api/v2/plugins", tag = "Plugin",
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = PluginCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn plugins(_: Viewer, q: Query) -> Result<Json<PluginCollectionResponse>, ApiError> {
    empty_page(q, &[], "")?;
    Ok(Json(PluginCollectionResponse {
        plugins: vec![],
        total_entries: 0,
    }))
}

/// Airflow's `PluginImportErrorCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct PluginImportErrorCollectionResponse {
    #[schema(value_type = Vec<Object>)]
    import_errors: Vec<serde_json::Value>,
    total_entries: i64,
}

/// upiflow loads no plugins, so none fails to load.
#[utoipa::path(get, path = "/api/v2/plugins/importErrors", tag = "Plugin",
    responses((status = 200, body = PluginImportErrorCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn plugin_import_errors(_: Viewer, _: NoQuery) -> Json<PluginImportErrorCollectionResponse> {
    Json(PluginImportErrorCollectionResponse {
        import_errors: vec![],
        total_entries: 0,
    })
}

/// Airflow's `ProviderCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct ProviderCollectionResponse {
    #[schema(value_type = Vec<Object>)]
    providers: Vec<serde_json::Value>,
    total_entries: i64,
}

/// upiflow installs no provider packages (its task kinds and connections are built in).
#[utoipa::path(get, path = "/api/v2/providers", tag = "Provider",
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = ProviderCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn providers(_: Viewer, q: Query) -> Result<Json<ProviderCollectionResponse>, ApiError> {
    empty_page(q, &[], "")?;
    Ok(Json(ProviderCollectionResponse {
        providers: vec![],
        total_entries: 0,
    }))
}

const NO_ASSETS: &str = "upiflow has no assets (DAGs run on cron schedules only)";

/// Airflow's `AssetCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct AssetCollectionResponse {
    #[schema(value_type = Vec<Object>)]
    assets: Vec<serde_json::Value>,
    total_entries: i64,
}

/// upiflow has no assets: the empty list. Filters on asset fields are refused by name.
#[utoipa::path(get, path = "/api/v2/assets", tag = "Asset",
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = AssetCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn assets(_: Viewer, q: Query) -> Result<Json<AssetCollectionResponse>, ApiError> {
    empty_page(
        q,
        &[
            "name_pattern",
            "name_prefix_pattern",
            "uri_pattern",
            "uri_prefix_pattern",
            "dag_ids",
            "only_active",
            "order_by",
        ],
        NO_ASSETS,
    )?;
    Ok(Json(AssetCollectionResponse {
        assets: vec![],
        total_entries: 0,
    }))
}

/// Airflow's `AssetAliasCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct AssetAliasCollectionResponse {
    #[schema(value_type = Vec<Object>)]
    asset_aliases: Vec<serde_json::Value>,
    total_entries: i64,
}

/// upiflow has no asset aliases: the empty list.
#[utoipa::path(get, path = "/api/v2/assets/aliases", tag = "Asset",
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = AssetAliasCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn asset_aliases(
    _: Viewer,
    q: Query,
) -> Result<Json<AssetAliasCollectionResponse>, ApiError> {
    empty_page(
        q,
        &["name_pattern", "name_prefix_pattern", "order_by"],
        NO_ASSETS,
    )?;
    Ok(Json(AssetAliasCollectionResponse {
        asset_aliases: vec![],
        total_entries: 0,
    }))
}

/// Airflow's `AssetEventCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct AssetEventCollectionResponse {
    #[schema(value_type = Vec<Object>)]
    asset_events: Vec<serde_json::Value>,
    total_entries: i64,
}

/// upiflow has no assets, so no asset events: the empty list.
#[utoipa::path(get, path = "/api/v2/assets/events", tag = "Asset",
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = AssetEventCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn asset_events(_: Viewer, q: Query) -> Result<Json<AssetEventCollectionResponse>, ApiError> {
    empty_page(
        q,
        &[
            "order_by",
            "asset_id",
            "source_dag_id",
            "source_task_id",
            "source_run_id",
            "source_map_index",
            "name_pattern",
            "name_prefix_pattern",
            "timestamp_gte",
            "timestamp_gt",
            "timestamp_lte",
            "timestamp_lt",
        ],
        NO_ASSETS,
    )?;
    Ok(Json(AssetEventCollectionResponse {
        asset_events: vec![],
        total_entries: 0,
    }))
}
