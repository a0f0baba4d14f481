//! DAG-level lists across DAGs: `GET /api/v2/dagTags`, `/dagStats`, `/dagWarnings`,
//! `/importErrors` and `/importErrors/{import_error_id}`, with Airflow's parameters.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use upiflow_engine::store::dag_meta::{self, ImportErrorFilter, ImportErrorOrder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Ids;
use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dag_tags))
        .routes(routes!(dag_stats))
        .routes(routes!(dag_warnings))
        .routes(routes!(import_errors))
        .routes(routes!(import_error))
}

/// Airflow's `DAGTagCollectionResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGTagCollectionResponse)]
pub struct DagTagCollectionResponse {
    tags: Vec<String>,
    total_entries: i64,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct DagTagQuery {
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// `name` (the default) or `-name`.
    order_by: Option<Vec<String>>,
    /// Case-insensitive substring (`%` and `_` wildcards, `|` alternatives, `~` all).
    tag_name_pattern: Option<String>,
    /// Case-sensitive prefix.
    tag_name_prefix_pattern: Option<String>,
}

/// The distinct tags of the DAGs, by name (Airflow's `get_dag_tags`).
#[utoipa::path(get, path = "/api/v2/dagTags", tag = "DAG", params(DagTagQuery),
    responses((status = 200, body = DagTagCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn dag_tags(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<DagTagCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(|k| (k == "name").then_some(()), "")?;
    let descending = order.first().is_some_and(|(_, d)| *d);
    let matches = q.patterns("tag_name")?;
    q.finish::<&str>(&[])?;
    let mut conn = s.pool.acquire().await?;
    let (tags, total) = dag_meta::tags(&mut conn, &matches, descending, limit, offset).await?;
    Ok(Json(DagTagCollectionResponse {
        tags,
        total_entries: total,
    }))
}

/// Airflow's `DagStatsStateResponse`.
#[derive(Serialize, ToSchema)]
pub struct DagStatsStateResponse {
    state: String,
    count: i64,
}

/// Airflow's `DagStatsResponse`.
#[derive(Serialize, ToSchema)]
pub struct DagStatsResponse {
    dag_id: String,
    dag_display_name: String,
    stats: Vec<DagStatsStateResponse>,
}

/// Airflow's `DagStatsCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct DagStatsCollectionResponse {
    dags: Vec<DagStatsResponse>,
    total_entries: i64,
}

/// The run states, in Airflow's order, each listed with its count (0 included).
const RUN_STATES: [&str; 4] = ["queued", "running", "success", "failed"];

/// How many runs each DAG has in each state. As Airflow's `get_dag_stats`, only DAGs with
/// runs are listed (restricted to `dag_ids` when given), each with every run state.
#[utoipa::path(get, path = "/api/v2/dagStats", tag = "DagStats",
    params(("dag_ids" = Option<Vec<String>>, Query,
        description = "Only these DAGs (repeat the parameter or separate with commas)")),
    responses((status = 200, body = DagStatsCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn dag_stats(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<DagStatsCollectionResponse>, ApiError> {
    let ids = q.all_split("dag_ids");
    q.finish::<&str>(&[])?;
    let mut conn = s.pool.acquire().await?;
    let counts =
        dag_meta::run_counts(&mut conn, (!ids.is_empty()).then_some(ids.as_slice())).await?;
    let mut dags: Vec<DagStatsResponse> = Vec::new();
    for c in counts {
        if dags.last().is_none_or(|d| d.dag_id != c.dag_id) {
            dags.push(DagStatsResponse {
                dag_display_name: c.dag_id.clone(),
                dag_id: c.dag_id.clone(),
                stats: RUN_STATES
                    .iter()
                    .map(|st| DagStatsStateResponse {
                        state: (*st).into(),
                        count: 0,
                    })
                    .collect(),
            });
        }
        let d = dags.last_mut().expect("pushed above");
        if let Some(st) = d.stats.iter_mut().find(|st| st.state == c.state) {
            st.count = c.count;
        }
    }
    Ok(Json(DagStatsCollectionResponse {
        total_entries: dags.len() as i64,
        dags,
    }))
}

/// Airflow's `DAGWarningResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGWarningResponse)]
pub struct DagWarningResponse {
    dag_id: String,
    warning_type: String,
    message: String,
    timestamp: DateTime<Utc>,
}

/// Airflow's `DAGWarningCollectionResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGWarningCollectionResponse)]
pub struct DagWarningCollectionResponse {
    dag_warnings: Vec<DagWarningResponse>,
    total_entries: i64,
}

/// Airflow's `DagWarningType` values.
const WARNING_TYPES: [&str; 3] = [
    "asset conflict",
    "non-existent pool",
    "runtime varying value",
];

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct DagWarningQuery {
    dag_id: Option<String>,
    /// asset conflict, non-existent pool or runtime varying value.
    warning_type: Option<String>,
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// dag_id, warning_type, message or timestamp.
    order_by: Option<Vec<String>>,
}

/// upiflow raises no DAG warnings: what Airflow warns about (a task naming a pool that does
/// not exist, say) makes a upiflow DAG file an import error instead (see `/importErrors`).
/// So the list is always empty, with the parameters checked as Airflow checks them.
#[utoipa::path(get, path = "/api/v2/dagWarnings", tag = "DagWarning", params(DagWarningQuery),
    responses((status = 200, body = DagWarningCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn dag_warnings(
    _: Viewer,
    mut q: Query,
) -> Result<Json<DagWarningCollectionResponse>, ApiError> {
    q.page()?;
    q.order_by(
        |k| matches!(k, "dag_id" | "warning_type" | "message" | "timestamp").then_some(()),
        "",
    )?;
    q.one("dag_id")?;
    if let Some(t) = q.one("warning_type")?
        && !WARNING_TYPES.contains(&t.as_str())
    {
        return Err(ApiError::Unprocessable(format!(
            "warning_type: `{t}` is not one of {}",
            WARNING_TYPES.join(", ")
        )));
    }
    q.finish::<&str>(&[])?;
    Ok(Json(DagWarningCollectionResponse {
        dag_warnings: vec![],
        total_entries: 0,
    }))
}

/// Airflow's `ImportErrorResponse`: one per DAG file that does not load.
#[derive(Serialize, ToSchema)]
pub struct ImportErrorResponse {
    import_error_id: i64,
    timestamp: DateTime<Utc>,
    /// The file's path.
    filename: String,
    bundle_name: Option<String>,
    /// Every problem of the file, `file:line: message`, one a line.
    stack_trace: String,
}

/// Airflow's `ImportErrorCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct ImportErrorCollectionResponse {
    import_errors: Vec<ImportErrorResponse>,
    total_entries: i64,
}

fn to_import_error(e: dag_meta::FileImportError) -> ImportErrorResponse {
    ImportErrorResponse {
        import_error_id: e.id,
        timestamp: e.timestamp,
        filename: e.fileloc,
        bundle_name: Some("dags-folder".into()),
        stack_trace: e.stack_trace,
    }
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportErrorQuery {
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// id (the default), import_error_id, timestamp or filename; `-` first for descending.
    order_by: Option<Vec<String>>,
    /// Case-insensitive substring of the file's path.
    filename_pattern: Option<String>,
    /// Case-sensitive prefix of the file's path.
    filename_prefix_pattern: Option<String>,
    /// Exactly this path.
    filename: Option<String>,
    /// upiflow's only bundle is `dags-folder`.
    bundle_name: Option<String>,
}

fn import_error_order(k: &str) -> Option<ImportErrorOrder> {
    match k {
        "id" | "import_error_id" => Some(ImportErrorOrder::Id),
        "timestamp" => Some(ImportErrorOrder::Timestamp),
        "filename" => Some(ImportErrorOrder::Filename),
        _ => None,
    }
}

/// The DAG files that do not load, one entry per file (the DAGs page shows the same).
#[utoipa::path(get, path = "/api/v2/importErrors", tag = "Import Error",
    params(ImportErrorQuery),
    responses((status = 200, body = ImportErrorCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn import_errors(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<ImportErrorCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(import_error_order, "")?;
    let mut filter = ImportErrorFilter {
        id: None,
        filename: q.one("filename")?,
        filename_matches: q.patterns("filename")?,
    };
    let bundle = q.one("bundle_name")?;
    q.finish::<&str>(&[])?;
    if bundle.as_deref().is_some_and(|b| b != "dags-folder") {
        // No file lies in another bundle; an impossible filename keeps the list empty.
        filter.id = Some(-1);
    }
    let mut conn = s.pool.acquire().await?;
    let (rows, total) = dag_meta::import_errors(&mut conn, &filter, &order, limit, offset).await?;
    Ok(Json(ImportErrorCollectionResponse {
        import_errors: rows.into_iter().map(to_import_error).collect(),
        total_entries: total,
    }))
}

/// One DAG file that does not load.
#[utoipa::path(get, path = "/api/v2/importErrors/{import_error_id}", tag = "Import Error",
    params(("import_error_id" = i64, Path)),
    responses((status = 200, body = ImportErrorResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn import_error(
    State(s): State<AppState>,
    _: Viewer,
    Ids(id): Ids<i64>,
    _: NoQuery,
) -> Result<Json<ImportErrorResponse>, ApiError> {
    let filter = ImportErrorFilter {
        id: Some(id),
        ..Default::default()
    };
    let mut conn = s.pool.acquire().await?;
    let (mut rows, _) = dag_meta::import_errors(&mut conn, &filter, &[], 1, 0).await?;
    rows.pop().map(to_import_error).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "The ImportError with import_error_id: `{id}` was not found"
        ))
    })
}
