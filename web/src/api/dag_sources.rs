//! `GET /api/v2/dagSources/{dag_id}`: the text of a DAG's file, as the scheduler read it when
//! it recorded the version (Airflow's `get_dag_source`), as JSON or as plain text.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use upiflow_engine::EngineError;
use upiflow_engine::store::dag_versions;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Ids;
use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::Query;
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(source))
}

/// Airflow's `DAGSourceResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGSourceResponse)]
pub struct DagSourceResponse {
    /// The DAG file's TOML text.
    content: Option<String>,
    dag_id: String,
    version_number: Option<i64>,
    dag_display_name: String,
}

/// How the answer is to be shown, from `Accept` (Airflow's `header_accept_json_or_text`).
#[derive(Debug, PartialEq, Eq)]
enum Shown {
    Json,
    Text,
}

/// The first of the media types `Accept` lists that Airflow serves (`application/json`,
/// `text/plain`, `*/*`, the last meaning JSON); none given is `*/*`. Anything else is a 406.
fn shown(headers: &HeaderMap) -> Option<Shown> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(Shown::Json);
    };
    let accept = accept.to_str().unwrap_or_default();
    for item in accept.split(',') {
        let media = item.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json" | "*/*" => return Some(Shown::Json),
            "text/plain" => return Some(Shown::Text),
            _ => {}
        }
    }
    None
}

/// Airflow's 406 (`crate::error` has no variant for it; the shape is the same).
fn not_acceptable() -> Response {
    (
        axum::http::StatusCode::NOT_ACCEPTABLE,
        Json(serde_json::json!({
            "detail": "Only application/json or text/plain is supported"
        })),
    )
        .into_response()
}

/// The TOML text of the DAG's current version, or of version `version_number` (numbered as
/// in `/dagVersions` and runs' `dag_versions`). A version recorded before upiflow kept file
/// text has none: a 404 that says so, never made-up text.
#[utoipa::path(get, path = "/api/v2/dagSources/{dag_id}", tag = "DagSource",
    params(("dag_id" = String, Path),
        ("version_number" = Option<i64>, Query, description = "Default: the current version"),
        ("accept" = Option<String>, Header,
            description = "`application/json` (the default), `text/plain` or `*/*`")),
    responses((status = 200, description = "The DAG file's text",
            content((DagSourceResponse = "application/json"), (String = "text/plain"))),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 406, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn source(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
    headers: HeaderMap,
    mut q: Query,
) -> Result<Response, ApiError> {
    let number = q.int("version_number")?;
    q.finish::<&str>(&[])?;
    let Some(shown) = shown(&headers) else {
        return Ok(not_acceptable());
    };
    let mut conn = s.pool.acquire().await?;
    let (number, content) = dag_versions::source(&mut conn, &dag_id, number)
        .await
        .map_err(|e| match e {
            // Airflow's message for a DAG or a version it does not have.
            EngineError::DagNotFound(_) | EngineError::DagVersionNotFound { .. } => {
                ApiError::NotFound(match number {
                    Some(n) => format!(
                        "The source code of the DAG {dag_id}, version_number {n} was not found"
                    ),
                    None => format!("The source code of the DAG {dag_id} was not found"),
                })
            }
            e => e.into(),
        })?;
    Ok(match shown {
        Shown::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            content,
        )
            .into_response(),
        Shown::Json => Json(DagSourceResponse {
            content: Some(content),
            dag_display_name: dag_id.clone(),
            dag_id,
            version_number: Some(number),
        })
        .into_response(),
    })
}
