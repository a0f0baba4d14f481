//! `GET /api/v2/dags/{dag_id}/dagVersions` (`~` for every DAG) and
//! `/dagVersions/{version_number}`: a DAG's versions, numbered 1, 2, 3, ... in the order the
//! scheduler recorded them, the numbers runs' and task instances' `dag_versions` carry.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use upiflow_engine::EngineError;
use upiflow_engine::store::dag_versions::{self, VersionFilter, VersionOrder, VersionRow};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Ids;
use super::dags::not_found;
use super::models::{self, DagVersionResponse, HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
}

/// Airflow's `DAGVersionCollectionResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGVersionCollectionResponse)]
pub struct DagVersionCollectionResponse {
    dag_versions: Vec<DagVersionResponse>,
    total_entries: i64,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct DagVersionQuery {
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    version_number: Option<i64>,
    /// upiflow's only bundle is `dags-folder`.
    bundle_name: Option<String>,
    /// A version's content hash.
    bundle_version: Option<String>,
    /// id (the default: creation order), version_number, bundle_name, bundle_version;
    /// `-` first for descending.
    order_by: Option<Vec<String>>,
}

/// A sort key; `bundle_name` is the same for every version, so it orders nothing.
fn version_order(k: &str) -> Option<Option<VersionOrder>> {
    match k {
        "id" => Some(Some(VersionOrder::Id)),
        "version_number" => Some(Some(VersionOrder::Number)),
        "bundle_version" => Some(Some(VersionOrder::BundleVersion)),
        "bundle_name" => Some(None),
        _ => None,
    }
}

/// Answers for rows, through the one numbering `models::dag_versions` gives runs.
async fn answers(
    conn: &mut sqlx::PgConnection,
    rows: Vec<VersionRow>,
) -> Result<Vec<DagVersionResponse>, ApiError> {
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.dag_id.clone(), r.hash.clone()))
        .collect();
    let mut by_key: HashMap<(String, String), DagVersionResponse> =
        models::dag_versions(conn, &keys).await?;
    Ok(keys.iter().filter_map(|k| by_key.remove(k)).collect())
}

/// A DAG's versions (Airflow's `get_dag_versions`; `~` lists every DAG's), by creation
/// unless `order_by` says otherwise. 404 for an unknown DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagVersions", tag = "DagVersion",
    params(("dag_id" = String, Path), DagVersionQuery),
    responses((status = 200, body = DagVersionCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
    mut q: Query,
) -> Result<Json<DagVersionCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order: Vec<(VersionOrder, bool)> = q
        .order_by(version_order, "")?
        .into_iter()
        .filter_map(|(o, desc)| o.map(|o| (o, desc)))
        .collect();
    let filter = VersionFilter {
        dag_id: (dag_id != "~").then(|| dag_id.clone()),
        number: q.int("version_number")?,
        hash: q.one("bundle_version")?,
        bundle_name: q.one("bundle_name")?,
    };
    q.finish::<&str>(&[])?;
    let mut conn = s.pool.acquire().await?;
    if let Some(id) = &filter.dag_id
        && !upiflow_engine::store::dag_list::exists(&mut conn, id).await?
    {
        return Err(not_found(id));
    }
    let (rows, total) = dag_versions::search(&mut conn, &filter, &order, limit, offset).await?;
    Ok(Json(DagVersionCollectionResponse {
        dag_versions: answers(&mut conn, rows).await?,
        total_entries: total,
    }))
}

/// One version of a DAG (Airflow's `get_dag_version`).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagVersions/{version_number}",
    tag = "DagVersion",
    params(("dag_id" = String, Path), ("version_number" = i64, Path)),
    responses((status = 200, body = DagVersionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, number)): Ids<(String, i64)>,
    _: NoQuery,
) -> Result<Json<DagVersionResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let row = dag_versions::get(&mut conn, &dag_id, number)
        .await
        .map_err(|e| match e {
            // Airflow's message for either.
            EngineError::DagNotFound(_) | EngineError::DagVersionNotFound { .. } => {
                ApiError::NotFound(format!(
                    "The DagVersion with dag_id: `{dag_id}` and version_number: `{number}` was not found"
                ))
            }
            e => e.into(),
        })?;
    answers(&mut conn, vec![row])
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| not_found(&dag_id))
}
