//! The log of one try, a page at a time (JSON or NDJSON), read on with a continuation token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{check_map_index, find_ti, log_token};
use crate::AppState;
use crate::api::Ids;
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::Query;
use crate::auth::Viewer;
use crate::error::ApiError;

/// Airflow's `StructuredLogMessage`, with the stream the line came from.
#[derive(Serialize, ToSchema)]
pub struct StructuredLogMessage {
    timestamp: DateTime<Utc>,
    event: String,
    /// `system` (upiflow's own lines), `stdout` or `stderr`.
    stream: String,
}

/// Airflow's `TaskInstancesLogResponse`. `continuation_token` is `null` once the try has
/// ended and every line was read; otherwise pass it as `token` to read on.
#[derive(Serialize, ToSchema)]
pub struct TaskInstancesLogResponse {
    content: Vec<StructuredLogMessage>,
    continuation_token: Option<String>,
}

/// Log query parameters, as Airflow has them (for the document).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// Read from the first line, ignoring `token`, and in larger pages.
    #[param(default = false)]
    full_content: Option<bool>,
    /// Only -1 finds a task instance.
    #[param(default = -1)]
    map_index: Option<i64>,
    /// The `continuation_token` of the previous answer: read the lines after it.
    token: Option<String>,
}

/// Lines per answer; a client reads on with the continuation token.
const LOG_PAGE: i64 = 10_000;
const LOG_PAGE_FULL: i64 = 200_000;

/// The log of one try: JSON (`application/json`, the default) or one JSON object per line
/// (`Accept: application/x-ndjson`, with the token in `Airflow-Continuation-Token`).
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("try_number" = i32, Path, minimum = 0), LogQuery,
        ("accept" = Option<String>, Header,
            description = "application/json (default), application/x-ndjson or */*")),
    responses((status = 200, description = "The log lines", content(
            (TaskInstancesLogResponse = "application/json"),
            (String = "application/x-ndjson"))),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 406, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn logs(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id, try_number)): Ids<(String, String, String, i32)>,
    mut q: Query,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let full_content = q.bool("full_content")?.unwrap_or(false);
    let map_index = q.int("map_index")?.unwrap_or(-1);
    let token = q.one("token")?;
    q.finish::<&str>(&[])?;
    if try_number < 0 {
        return Err(ApiError::Unprocessable(
            "try_number: must be at least 0".into(),
        ));
    }
    let Some(ndjson) = wants_ndjson(&headers) else {
        let detail = "Only application/json or application/x-ndjson is supported";
        return Ok((
            StatusCode::NOT_ACCEPTABLE,
            Json(json!({ "detail": detail })),
        )
            .into_response());
    };
    check_map_index(map_index)?;
    let after = match (&token, full_content) {
        (Some(t), false) if !t.is_empty() => log_token::decode(t)?,
        _ => 0,
    };
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, &dag_id, &run_id, &task_id).await?;
    let t = upiflow_engine::store::task_views::find_try(&mut conn, ti.id, try_number)
        .await?
        .ok_or_else(|| ApiError::NotFound("TaskInstance not found".into()))?;
    let page = if full_content {
        LOG_PAGE_FULL
    } else {
        LOG_PAGE
    };
    let lines = upiflow_engine::store::logs::log_page(&mut conn, t.id, after, page).await?;
    let last = lines.last().map_or(after, |l| l.id);
    let end_of_log = t.ended_at.is_some() && (lines.len() as i64) < page;
    let token = (!end_of_log).then(|| log_token::encode(last));
    let content: Vec<StructuredLogMessage> = lines
        .into_iter()
        .map(|l| StructuredLogMessage {
            timestamp: l.at,
            event: l.line,
            stream: l.stream.as_str().to_string(),
        })
        .collect();
    if ndjson {
        let mut body = String::new();
        for m in &content {
            body.push_str(
                &serde_json::to_string(m).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            body.push('\n');
        }
        let mut resp = (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )],
            body,
        )
            .into_response();
        if let Some(tok) = token {
            resp.headers_mut().insert(
                "airflow-continuation-token",
                HeaderValue::from_str(&tok).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
        }
        return Ok(resp);
    }
    Ok(Json(TaskInstancesLogResponse {
        content,
        continuation_token: token,
    })
    .into_response())
}

/// Airflow 3's negotiation: `*/*` or `application/json` (or no header) gets JSON,
/// `application/x-ndjson` lines, anything else (`None`) a 406.
fn wants_ndjson(headers: &HeaderMap) -> Option<bool> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(false);
    };
    let accept = accept.to_str().unwrap_or_default();
    if accept.is_empty() || accept.starts_with("*/*") || accept.starts_with("application/json") {
        return Some(false);
    }
    accept.starts_with("application/x-ndjson").then_some(true)
}
