//! `GET /api/v2/dags/{dag_id}/details`: Airflow's `DAGDetailsResponse`, every field, each the
//! truth for upiflow (`null` where upiflow has no such thing).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use upiflow_engine::store::{dag_list, dag_versions, favorites};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Ids;
use super::dags::{DagTagResponse, not_found, owner, to_response};
use super::models::{self, DagVersionResponse, HTTPExceptionResponse, HTTPValidationError};
use super::query::NoQuery;
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(details))
}

/// Airflow's `DAGDetailsResponse`: `DAGResponse`'s fields and the definition's.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGDetailsResponse)]
pub struct DagDetailsResponse {
    dag_id: String,
    dag_display_name: String,
    is_paused: bool,
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
    catchup: bool,
    /// upiflow has no run timeout (its `deadline` alerts, it does not stop the run).
    dag_run_timeout: Option<String>,
    /// upiflow has no assets.
    #[schema(value_type = Option<Object>)]
    asset_expression: Option<Value>,
    /// upiflow DAGs have a `description`, no Markdown documentation.
    doc_md: Option<String>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    /// upiflow has no such DAG setting (a new DAG starts unpaused).
    is_paused_upon_creation: Option<bool>,
    /// The `[params]` table, each as Airflow dumps a `Param` (`value`, `description`,
    /// `schema`).
    #[schema(value_type = Option<Object>)]
    params: Option<Map<String, Value>>,
    /// Templates render to text.
    render_template_as_native_obj: bool,
    /// SQL files resolve next to the DAG file; there is no search path.
    template_search_path: Option<Vec<String>>,
    timezone: Option<String>,
    last_parsed: Option<DateTime<Utc>>,
    /// The `[defaults]` are folded into each task when the file is read; the tasks carry them.
    #[schema(value_type = Option<Object>)]
    default_args: Option<Value>,
    /// upiflow has no such DAG setting: a cleared run keeps its version.
    rerun_with_latest_version: Option<bool>,
    /// upiflow DAGs have no owners.
    owner_links: Option<std::collections::BTreeMap<String, String>>,
    /// Whether the signed-in user marked it a favourite.
    is_favorite: bool,
    /// Runs in state `running`.
    active_runs_count: i64,
    is_backfillable: bool,
    file_token: String,
    /// `max_active_tasks` (Airflow's deprecated name).
    concurrency: i64,
    latest_dag_version: Option<DagVersionResponse>,
}

/// A DAG with its current definition (Airflow's `get_dag_details`).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/details", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagDetailsResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn details(
    State(s): State<AppState>,
    user: Viewer,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
) -> Result<Json<DagDetailsResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let row = dag_list::summary(&mut conn, &dag_id)
        .await?
        .ok_or_else(|| not_found(&dag_id))?;
    let hash = row.latest_hash.clone().ok_or_else(|| not_found(&dag_id))?;
    let last_parsed = row.updated_at;
    let dag = s.cache.get(&mut conn, &dag_id, &hash).await?;
    let is_favorite = favorites::is_favorite(&mut conn, &owner(&user), &dag_id).await?;
    let active_runs_count = dag_versions::running_runs(&mut conn, &dag_id).await?;
    let latest_dag_version = models::dag_versions(&mut conn, &[(dag_id.clone(), hash.clone())])
        .await?
        .remove(&(dag_id.clone(), hash));
    let d = to_response(row);
    let params = dag
        .params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::json!({"value": v, "description": null, "schema": {}}),
            )
        })
        .collect();
    Ok(Json(DagDetailsResponse {
        dag_id: d.dag_id,
        dag_display_name: d.dag_display_name,
        is_paused: d.is_paused,
        is_stale: d.is_stale,
        last_parsed_time: d.last_parsed_time,
        last_parse_duration: d.last_parse_duration,
        last_expired: d.last_expired,
        bundle_name: d.bundle_name,
        bundle_version: d.bundle_version,
        relative_fileloc: d.relative_fileloc,
        fileloc: d.fileloc,
        description: d.description,
        timetable_summary: d.timetable_summary,
        timetable_description: d.timetable_description,
        timetable_partitioned: d.timetable_partitioned,
        timetable_periodic: d.timetable_periodic,
        tags: d.tags,
        max_active_tasks: d.max_active_tasks,
        max_active_runs: d.max_active_runs,
        max_consecutive_failed_dag_runs: d.max_consecutive_failed_dag_runs,
        has_task_concurrency_limits: d.has_task_concurrency_limits,
        has_import_errors: d.has_import_errors,
        next_dagrun_logical_date: d.next_dagrun_logical_date,
        next_dagrun_data_interval_start: d.next_dagrun_data_interval_start,
        next_dagrun_data_interval_end: d.next_dagrun_data_interval_end,
        next_dagrun_run_after: d.next_dagrun_run_after,
        allowed_run_types: d.allowed_run_types,
        owners: d.owners,
        catchup: dag.catchup,
        dag_run_timeout: None,
        asset_expression: None,
        doc_md: None,
        start_date: dag.start_date,
        end_date: dag.end_date,
        is_paused_upon_creation: None,
        params: Some(params),
        render_template_as_native_obj: false,
        template_search_path: None,
        timezone: Some(dag.timezone.clone()),
        last_parsed: Some(last_parsed),
        default_args: None,
        rerun_with_latest_version: None,
        owner_links: None,
        is_favorite,
        active_runs_count,
        is_backfillable: d.is_backfillable,
        file_token: d.file_token,
        concurrency: d.max_active_tasks,
        latest_dag_version,
    }))
}
