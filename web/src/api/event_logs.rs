//! `GET /api/v2/eventLogs` and `GET /api/v2/eventLogs/{event_log_id}`, as in Airflow 3: the
//! audit log (`upiflow_engine::audit`), readable by every user.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use upiflow_engine::store::event_log::{self, EventColumn, EventFilter, EventOrder, EventRow};
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
        .routes(routes!(list))
        .routes(routes!(one))
}

/// Airflow's `EventLogResponse`.
#[derive(Serialize, ToSchema)]
pub struct EventLogResponse {
    event_log_id: i64,
    when: String,
    dag_id: Option<String>,
    task_id: Option<String>,
    run_id: Option<String>,
    /// -1 when the event names a task instance (upiflow has no mapped tasks).
    map_index: Option<i64>,
    try_number: Option<i32>,
    /// Airflow's event names: `trigger_dag_run`, `patch_dag`, `cli_dag_trigger`, `login`, ...
    event: String,
    logical_date: Option<String>,
    owner: Option<String>,
    /// A JSON object, as text (Airflow's): the request's fields with secrets masked, its
    /// `method`, and upiflow's `source` (cli, api, ui), `outcome` (success, refused, failed)
    /// and `remote_addr`.
    extra: Option<String>,
    /// The DAG's id (upiflow has no display names).
    dag_display_name: Option<String>,
    /// The task's id (upiflow has no display names).
    task_display_name: Option<String>,
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn to_response(r: EventRow) -> EventLogResponse {
    let mut extra = match r.extra {
        Some(serde_json::Value::Object(m)) => m,
        Some(other) => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            m
        }
        None => serde_json::Map::new(),
    };
    // The columns Airflow's `log` table lacks, where its clients look for the rest.
    extra.insert("source".into(), r.source.into());
    extra.insert("outcome".into(), r.outcome.into());
    if let Some(a) = r.remote_addr {
        extra.insert("remote_addr".into(), a.into());
    }
    EventLogResponse {
        event_log_id: r.id,
        when: time(r.dttm),
        map_index: r.task_id.as_ref().map(|_| -1),
        dag_display_name: r.dag_id.clone(),
        task_display_name: r.task_id.clone(),
        dag_id: r.dag_id,
        task_id: r.task_id,
        run_id: r.run_id,
        try_number: r.try_number,
        event: r.event,
        logical_date: r.logical_date.map(time),
        owner: r.owner,
        extra: Some(serde_json::Value::Object(extra).to_string()),
    }
}

/// Airflow's `EventLogCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct EventLogCollectionResponse {
    event_logs: Vec<EventLogResponse>,
    total_entries: i64,
}

/// Query parameters of the list (for the document; [`list`] reads them one by one).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct EventLogListQuery {
    /// At most this many entries (0 to 1000).
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// Sort keys (repeat the parameter), `-` first for descending: `id` (the default, also
    /// `event_log_id`), `dttm` (also `when`), `dag_id`, `task_id`, `run_id`, `event`,
    /// `logical_date`, `owner`, `extra`.
    order_by: Option<Vec<String>>,
    dag_id: Option<String>,
    task_id: Option<String>,
    run_id: Option<String>,
    /// -1 matches the events that name a task instance; upiflow has no mapped tasks.
    map_index: Option<i64>,
    try_number: Option<i64>,
    owner: Option<String>,
    event: Option<String>,
    /// None of these events (repeat the parameter or separate with commas).
    excluded_events: Option<Vec<String>>,
    /// One of these events (repeat the parameter or separate with commas).
    included_events: Option<Vec<String>>,
    /// Strictly before this time (RFC 3339).
    before: Option<String>,
    /// Strictly after this time (RFC 3339).
    after: Option<String>,
    /// Case-insensitive substring (`|` separates alternatives, `~` matches all).
    dag_id_pattern: Option<String>,
    dag_id_prefix_pattern: Option<String>,
    task_id_pattern: Option<String>,
    task_id_prefix_pattern: Option<String>,
    run_id_pattern: Option<String>,
    run_id_prefix_pattern: Option<String>,
    owner_pattern: Option<String>,
    owner_prefix_pattern: Option<String>,
    event_pattern: Option<String>,
    event_prefix_pattern: Option<String>,
}

fn event_order(key: &str) -> Option<EventOrder> {
    Some(match key {
        "id" | "event_log_id" => EventOrder::Id,
        "dttm" | "when" => EventOrder::Dttm,
        "dag_id" => EventOrder::Text(EventColumn::DagId),
        "task_id" => EventOrder::Text(EventColumn::TaskId),
        "run_id" => EventOrder::Text(EventColumn::RunId),
        "event" => EventOrder::Text(EventColumn::Event),
        "owner" => EventOrder::Text(EventColumn::Owner),
        "logical_date" => EventOrder::LogicalDate,
        "extra" => EventOrder::Extra,
        _ => return None,
    })
}

/// The filter of a list request (shared with nothing: the UI page reads its own form).
fn read_filter(q: &mut Query) -> Result<EventFilter, ApiError> {
    let try_number = q
        .int("try_number")?
        .map(|n| {
            i32::try_from(n)
                .map_err(|_| ApiError::Unprocessable(format!("try_number: `{n}` is out of range")))
        })
        .transpose()?;
    let list = |q: &mut Query, key: &str| {
        let v = q.all_split(key);
        (!v.is_empty()).then_some(v)
    };
    let mut f = EventFilter {
        dag_id: q.one("dag_id")?,
        task_id: q.one("task_id")?,
        run_id: q.one("run_id")?,
        try_number,
        map_index: q.int("map_index")?,
        owner: q.one("owner")?,
        event: q.one("event")?,
        excluded_events: list(q, "excluded_events"),
        included_events: list(q, "included_events"),
        before: q.date("before")?,
        after: q.date("after")?,
        ..EventFilter::default()
    };
    for (name, col) in [
        ("dag_id", EventColumn::DagId),
        ("task_id", EventColumn::TaskId),
        ("run_id", EventColumn::RunId),
        ("owner", EventColumn::Owner),
        ("event", EventColumn::Event),
    ] {
        for m in q.patterns(name)? {
            f.matches.push((col, m));
        }
    }
    Ok(f)
}

/// Events of the audit log, oldest first (by id) unless `order_by` says otherwise.
#[utoipa::path(get, path = "/api/v2/eventLogs", tag = "Event Log", params(EventLogListQuery),
    responses((status = 200, body = EventLogCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<EventLogCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(event_order, "")?;
    let f = read_filter(&mut q)?;
    q.finish(&[
        (
            "task_instance_id",
            "upiflow's events name a task instance by dag_id, run_id and task_id",
        ),
        ("teams", "upiflow has no multi-team mode"),
        (
            "owner_display_name_pattern",
            "upiflow's users have no display names",
        ),
        (
            "owner_display_name_prefix_pattern",
            "upiflow's users have no display names",
        ),
    ])?;
    let mut conn = s.pool.acquire().await?;
    let (rows, total) = event_log::search(&mut conn, &f, &order, limit, offset).await?;
    Ok(Json(EventLogCollectionResponse {
        event_logs: rows.into_iter().map(to_response).collect(),
        total_entries: total,
    }))
}

/// One event of the audit log.
#[utoipa::path(get, path = "/api/v2/eventLogs/{event_log_id}", tag = "Event Log",
    params(("event_log_id" = i64, Path)),
    responses((status = 200, body = EventLogResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids(id): Ids<i64>,
    _: NoQuery,
) -> Result<Json<EventLogResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let row = event_log::get(&mut conn, id).await?;
    row.map(|r| Json(to_response(r)))
        .ok_or_else(|| ApiError::NotFound(format!("The Event Log with id: `{id}` not found")))
}
