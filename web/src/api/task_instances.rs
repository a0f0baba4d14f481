//! Task instances of runs, their tries and logs, and clearing:
//! `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances[/{task_id}[/tries|/logs/{n}]]`
//! and `POST /api/v2/dags/{dag_id}/clearTaskInstances`, as in Airflow 3.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use upiflow_engine::store::filters::Cmp;
use upiflow_engine::store::task_views::{TiDate, TiDetail, TiFilter, TiOrder, TryDetail};
use upiflow_engine::{Dag, TaskState, TryOutcome};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{
    self, DagVersionResponse, HTTPExceptionResponse, HTTPValidationError, TaskInstanceState,
};
use super::query::{self, NoQuery, Query};
use super::{Body, Ids};
use crate::AppState;
use crate::auth::{Admin, Viewer};
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
        .routes(routes!(tries))
        .routes(routes!(logs))
        .routes(routes!(clear))
}

/// Airflow's `TaskInstanceResponse`. upiflow has no pools, queues, priorities, mapped tasks,
/// executors or triggers: those fields hold Airflow's defaults or `null`.
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceResponse {
    /// A UUID standing for upiflow's numeric id.
    #[schema(format = "uuid")]
    id: String,
    task_id: String,
    dag_id: String,
    dag_run_id: String,
    map_index: i32,
    logical_date: Option<DateTime<Utc>>,
    run_after: DateTime<Utc>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration: Option<f64>,
    state: Option<TaskInstanceState>,
    try_number: i32,
    /// Retries allowed (Airflow's meaning: tries beyond the first).
    max_tries: i32,
    task_display_name: String,
    dag_display_name: String,
    hostname: Option<String>,
    unixname: Option<String>,
    pool: String,
    pool_slots: i32,
    queue: Option<String>,
    priority_weight: Option<i32>,
    /// The task's kind (`sql`, `command`, ...).
    operator: Option<String>,
    operator_name: Option<String>,
    queued_when: Option<DateTime<Utc>>,
    scheduled_when: Option<DateTime<Utc>>,
    pid: Option<i32>,
    executor: Option<String>,
    executor_config: String,
    note: Option<String>,
    rendered_map_index: Option<String>,
    #[schema(value_type = Object)]
    rendered_fields: Value,
    #[schema(value_type = Option<Object>)]
    trigger: Option<Value>,
    #[schema(value_type = Option<Object>)]
    triggerer_job: Option<Value>,
    dag_version: Option<DagVersionResponse>,
}

/// Airflow's `TaskInstanceCollectionResponse` (offset pagination).
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceCollectionResponse {
    task_instances: Vec<TaskInstanceResponse>,
    total_entries: i64,
}

/// Airflow's `TaskInstanceHistoryResponse`: one try.
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceHistoryResponse {
    task_id: String,
    dag_id: String,
    dag_run_id: String,
    map_index: i32,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration: Option<f64>,
    state: Option<TaskInstanceState>,
    try_number: i32,
    max_tries: i32,
    task_display_name: String,
    dag_display_name: String,
    hostname: Option<String>,
    unixname: Option<String>,
    pool: String,
    pool_slots: i32,
    queue: Option<String>,
    priority_weight: Option<i32>,
    operator: Option<String>,
    operator_name: Option<String>,
    queued_when: Option<DateTime<Utc>>,
    scheduled_when: Option<DateTime<Utc>>,
    pid: Option<i32>,
    executor: Option<String>,
    executor_config: String,
    dag_version: Option<DagVersionResponse>,
}

/// Airflow's `TaskInstanceHistoryCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceHistoryCollectionResponse {
    task_instances: Vec<TaskInstanceHistoryResponse>,
    total_entries: i64,
}

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

/// The DAG definitions and versions a set of task instances refer to, loaded once each.
struct Context {
    dags: HashMap<(String, String), Arc<Dag>>,
    versions: HashMap<(String, String), DagVersionResponse>,
}

impl Context {
    async fn load(
        s: &AppState,
        conn: &mut PgConnection,
        keys: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ApiError> {
        let keys: BTreeSet<(String, String)> = keys.into_iter().collect();
        let mut dags = HashMap::new();
        for (dag_id, hash) in &keys {
            let dag = s.cache.get(conn, dag_id, hash).await?;
            dags.insert((dag_id.clone(), hash.clone()), dag);
        }
        let keys: Vec<(String, String)> = keys.into_iter().collect();
        let versions = models::dag_versions(conn, &keys).await?;
        Ok(Self { dags, versions })
    }

    fn kind(&self, dag_id: &str, hash: &str, task_id: &str) -> Option<String> {
        self.dags
            .get(&(dag_id.to_string(), hash.to_string()))
            .and_then(|d| d.task(task_id))
            .map(|t| t.kind.clone())
    }

    fn version(&self, dag_id: &str, hash: &str) -> Option<DagVersionResponse> {
        self.versions
            .get(&(dag_id.to_string(), hash.to_string()))
            .cloned()
    }
}

/// upiflow counts the first try in `max_tries`; Airflow counts only retries.
fn airflow_max_tries(max_tries: i32) -> i32 {
    (max_tries - 1).max(0)
}

fn ti_response(t: &TiDetail, cx: &Context) -> TaskInstanceResponse {
    let kind = cx.kind(&t.dag_id, &t.dag_hash, &t.task_id);
    TaskInstanceResponse {
        id: models::uuid_of_id(1, t.id),
        task_id: t.task_id.clone(),
        dag_id: t.dag_id.clone(),
        dag_run_id: t.run_id.clone(),
        map_index: -1,
        logical_date: Some(t.logical_date),
        run_after: t.run_after,
        start_date: t.start_date,
        end_date: t.end_date,
        duration: models::duration(t.start_date, t.end_date),
        state: t.state.map(Into::into),
        try_number: t.try_number,
        max_tries: airflow_max_tries(t.max_tries),
        task_display_name: t.task_id.clone(),
        dag_display_name: t.dag_id.clone(),
        hostname: t.hostname.clone(),
        unixname: None,
        pool: "default_pool".into(),
        pool_slots: 1,
        queue: Some("default".into()),
        priority_weight: None,
        operator: kind.clone(),
        operator_name: kind,
        queued_when: t.queued_at,
        scheduled_when: None,
        pid: t.pid,
        executor: None,
        executor_config: "{}".into(),
        note: None,
        rendered_map_index: None,
        rendered_fields: json!({}),
        trigger: None,
        triggerer_job: None,
        dag_version: cx.version(&t.dag_id, &t.dag_hash),
    }
}

async fn ti_responses(
    s: &AppState,
    conn: &mut PgConnection,
    rows: &[TiDetail],
) -> Result<Vec<TaskInstanceResponse>, ApiError> {
    let cx = Context::load(
        s,
        conn,
        rows.iter().map(|t| (t.dag_id.clone(), t.dag_hash.clone())),
    )
    .await?;
    Ok(rows.iter().map(|t| ti_response(t, &cx)).collect())
}

fn parse_state(v: &str) -> Result<Option<TaskState>, ApiError> {
    use TaskState as T;
    Ok(Some(match v {
        "no_status" | "none" => return Ok(None),
        "scheduled" => T::Scheduled,
        "queued" => T::Queued,
        "running" => T::Running,
        "success" => T::Success,
        "failed" => T::Failed,
        "up_for_retry" => T::UpForRetry,
        "upstream_failed" => T::UpstreamFailed,
        "skipped" => T::Skipped,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "state: `{other}` is not a task-instance state"
            )));
        }
    }))
}

fn parse_order(v: &str) -> Result<(TiOrder, bool), ApiError> {
    let (desc, key) = match v.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, v),
    };
    let order = match key {
        "id" | "map_index" => TiOrder::Id,
        "dag_id" => TiOrder::DagId,
        "run_id" => TiOrder::RunId,
        "task_id" => TiOrder::TaskId,
        "state" => TiOrder::State,
        "try_number" => TiOrder::TryNumber,
        "start_date" => TiOrder::StartDate,
        "end_date" => TiOrder::EndDate,
        "logical_date" | "data_interval_start" => TiOrder::LogicalDate,
        "run_after" | "data_interval_end" => TiOrder::RunAfter,
        other => {
            return Err(ApiError::BadRequest(format!(
                "order_by: ordering with '{other}' is disallowed or the attribute does not exist on the model"
            )));
        }
    };
    Ok((order, desc))
}

/// Query parameters of the list (for the document; parsing reads repeated keys by hand).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Keep only this task.
    task_id: Option<String>,
    /// Keep these states (repeat the parameter); `no_status` for none yet.
    state: Option<Vec<String>>,
    logical_date_gte: Option<DateTime<Utc>>,
    logical_date_gt: Option<DateTime<Utc>>,
    logical_date_lte: Option<DateTime<Utc>>,
    logical_date_lt: Option<DateTime<Utc>>,
    run_after_gte: Option<DateTime<Utc>>,
    run_after_gt: Option<DateTime<Utc>>,
    run_after_lte: Option<DateTime<Utc>>,
    run_after_lt: Option<DateTime<Utc>>,
    start_date_gte: Option<DateTime<Utc>>,
    start_date_gt: Option<DateTime<Utc>>,
    start_date_lte: Option<DateTime<Utc>>,
    start_date_lt: Option<DateTime<Utc>>,
    end_date_gte: Option<DateTime<Utc>>,
    end_date_gt: Option<DateTime<Utc>>,
    end_date_lte: Option<DateTime<Utc>>,
    end_date_lt: Option<DateTime<Utc>>,
    /// Sort keys (repeat the parameter), `-` first for descending: id or map_index (the
    /// default), dag_id, run_id, task_id, state, try_number, start_date, end_date,
    /// logical_date (or data_interval_start), run_after (or data_interval_end).
    order_by: Option<Vec<String>>,
    /// Every upiflow task instance has map index -1: any other index matches none.
    map_index: Option<Vec<i64>>,
    /// At most this many entries (0 to 1000).
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
}

struct ListArgs {
    filter: TiFilter,
    order: Vec<(TiOrder, bool)>,
    limit: i64,
    offset: i64,
    /// A `map_index` filter that keeps no task instance (upiflow's all have -1).
    matches_nothing: bool,
}

/// Parameters Airflow documents for the task-instance list that upiflow refuses, and why.
fn list_unsupported() -> Vec<(String, &'static str)> {
    let not_yet = "this filter is not implemented for task instances";
    let mut out: Vec<(String, &'static str)> = [
        (
            "cursor",
            "keyset pagination is not implemented; use limit and offset",
        ),
        ("task_display_name_pattern", not_yet),
        ("task_display_name_prefix_pattern", not_yet),
        ("dag_id_pattern", not_yet),
        ("dag_id_prefix_pattern", not_yet),
        ("run_id_pattern", not_yet),
        ("run_id_prefix_pattern", not_yet),
        ("try_number", not_yet),
        ("version_number", not_yet),
        ("operator", not_yet),
        ("operator_name_pattern", not_yet),
        ("operator_name_prefix_pattern", not_yet),
        ("task_group_id", "upiflow has no task groups"),
        ("pool", "upiflow has no pools"),
        ("pool_name_pattern", "upiflow has no pools"),
        ("pool_name_prefix_pattern", "upiflow has no pools"),
        ("queue", "upiflow has no queues"),
        ("queue_name_pattern", "upiflow has no queues"),
        ("queue_name_prefix_pattern", "upiflow has no queues"),
        ("executor", "upiflow has one executor, its workers"),
        ("rendered_map_index_pattern", "upiflow has no mapped tasks"),
        (
            "rendered_map_index_prefix_pattern",
            "upiflow has no mapped tasks",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    out.extend(query::refuse_range(
        "updated_at",
        "upiflow does not record when a task instance was last updated",
    ));
    out.extend(query::refuse_range("duration", not_yet));
    out
}

fn parse_list(q: &mut Query) -> Result<ListArgs, ApiError> {
    let (limit, offset) = q.page()?;
    let mut f = TiFilter::default();
    let task_ids = q.all("task_id");
    if task_ids.len() > 1 {
        return Err(ApiError::Unprocessable(
            "task_id: given more than once; it takes one value".into(),
        ));
    }
    if !task_ids.is_empty() {
        f.task_ids = Some(task_ids);
    }
    for one in q.all_split("state") {
        f.states
            .get_or_insert_with(Vec::new)
            .push(parse_state(&one)?);
    }
    let mut order = Vec::new();
    for one in q.all_split("order_by") {
        order.push(parse_order(&one)?);
    }
    let mut map_indexes = Vec::new();
    for v in q.all("map_index") {
        map_indexes.push(
            v.parse::<i64>().map_err(|_| {
                ApiError::Unprocessable(format!("map_index: `{v}` is not an integer"))
            })?,
        );
    }
    for (name, date) in [
        ("logical_date", TiDate::LogicalDate),
        ("run_after", TiDate::RunAfter),
        ("start_date", TiDate::StartDate),
        ("end_date", TiDate::EndDate),
    ] {
        for (cmp, at) in q.date_range(name)? {
            f.dates.push((date, cmp, at));
        }
    }
    Ok(ListArgs {
        filter: f,
        order,
        limit,
        offset,
        matches_nothing: !map_indexes.is_empty() && !map_indexes.contains(&-1),
    })
}

/// Task instances of a run. `~` for both ids lists them across runs, `~` as the run id
/// across the runs of one DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ListQuery),
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id)): Ids<(String, String)>,
    mut q: Query,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let mut args = parse_list(&mut q)?;
    q.finish(&list_unsupported())?;
    let mut conn = s.pool.acquire().await?;
    if run_id != "~" {
        if dag_id == "~" {
            return Err(ApiError::BadRequest(
                "dag_id is required when dag_run_id is specified".into(),
            ));
        }
        super::runs::find_run(&mut conn, &dag_id, &run_id).await?;
        args.filter.run_id = Some(run_id);
    }
    if dag_id != "~" {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dags WHERE dag_id = $1)")
                .bind(&dag_id)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            return Err(super::dags::not_found(&dag_id));
        }
        args.filter.dag_id = Some(dag_id);
    }
    let (rows, total) = if args.matches_nothing {
        (Vec::new(), 0)
    } else {
        upiflow_engine::store::task_views::search(
            &mut conn,
            &args.filter,
            &args.order,
            args.limit,
            args.offset,
        )
        .await?
    };
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: ti_responses(&s, &mut conn, &rows).await?,
        total_entries: total,
    }))
}

/// The task instance, or a 404 naming the run or the task that is missing.
async fn find_ti(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<TiDetail, ApiError> {
    super::runs::find_run(conn, dag_id, run_id).await?;
    upiflow_engine::store::task_views::detail(conn, dag_id, run_id, task_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `-1` was not found"
            ))
        })
}

/// upiflow has no mapped tasks: every task instance has map index -1 (for the document).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct MapIndex {
    /// Only -1 finds a task instance.
    #[param(default = -1)]
    map_index: Option<i64>,
}

fn check_map_index(m: i64) -> Result<(), ApiError> {
    if m != -1 {
        return Err(ApiError::NotFound(format!(
            "upiflow has no mapped tasks: no task instance has map_index `{m}`"
        )));
    }
    Ok(())
}

/// One task instance.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskInstanceResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id)): Ids<(String, String, String)>,
    _: NoQuery,
) -> Result<Json<TaskInstanceResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, &dag_id, &run_id, &task_id).await?;
    let mut out = ti_responses(&s, &mut conn, std::slice::from_ref(&ti)).await?;
    Ok(Json(out.remove(0)))
}

fn try_state(ti: &TiDetail, t: &TryDetail) -> Option<TaskInstanceState> {
    match t.outcome {
        Some(TryOutcome::Success) => Some(TaskInstanceState::Success),
        Some(TryOutcome::Failed | TryOutcome::TimedOut | TryOutcome::Zombie) => {
            Some(TaskInstanceState::Failed)
        }
        // Not ended: the current try, in the task instance's state.
        None if t.try_number == ti.try_number => ti.state.map(Into::into),
        None => None,
    }
}

/// Every try of a task instance, first try first.
#[utoipa::path(get,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        MapIndex),
    responses((status = 200, body = TaskInstanceHistoryCollectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn tries(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id, task_id)): Ids<(String, String, String)>,
    mut q: Query,
) -> Result<Json<TaskInstanceHistoryCollectionResponse>, ApiError> {
    let map_index = q.int("map_index")?.unwrap_or(-1);
    q.finish::<&str>(&[])?;
    check_map_index(map_index)?;
    let mut conn = s.pool.acquire().await?;
    let ti = find_ti(&mut conn, &dag_id, &run_id, &task_id).await?;
    let rows = upiflow_engine::store::task_views::tries(&mut conn, ti.id).await?;
    let cx = Context::load(&s, &mut conn, [(ti.dag_id.clone(), ti.dag_hash.clone())]).await?;
    let kind = cx.kind(&ti.dag_id, &ti.dag_hash, &ti.task_id);
    let version = cx.version(&ti.dag_id, &ti.dag_hash);
    let task_instances: Vec<TaskInstanceHistoryResponse> = rows
        .iter()
        .map(|t| TaskInstanceHistoryResponse {
            task_id: ti.task_id.clone(),
            dag_id: ti.dag_id.clone(),
            dag_run_id: ti.run_id.clone(),
            map_index: -1,
            start_date: Some(t.started_at),
            end_date: t.ended_at,
            duration: models::duration(Some(t.started_at), t.ended_at),
            state: try_state(&ti, t),
            try_number: t.try_number,
            max_tries: airflow_max_tries(ti.max_tries),
            task_display_name: ti.task_id.clone(),
            dag_display_name: ti.dag_id.clone(),
            hostname: t.hostname.clone(),
            unixname: None,
            pool: "default_pool".into(),
            pool_slots: 1,
            queue: Some("default".into()),
            priority_weight: None,
            operator: kind.clone(),
            operator_name: kind.clone(),
            queued_when: None,
            scheduled_when: None,
            pid: t.pid,
            executor: None,
            executor_config: "{}".into(),
            dag_version: version.clone(),
        })
        .collect();
    Ok(Json(TaskInstanceHistoryCollectionResponse {
        total_entries: task_instances.len() as i64,
        task_instances,
    }))
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

fn encode_token(after: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{after}"))
}

fn decode_token(token: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(
            "Bad Signature. Please use only the tokens provided by the API.".into(),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("after:")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(bad)
}

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
async fn logs(
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
        (Some(t), false) if !t.is_empty() => decode_token(t)?,
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
    let token = (!end_of_log).then(|| encode_token(last));
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

/// A task to clear: its id, or `[task_id, map_index]`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum TaskMarker {
    Id(String),
    Mapped(String, i64),
}

fn default_true() -> bool {
    true
}

/// Airflow's `ClearTaskInstancesBody`. Without `dag_run_id` it clears across the runs whose
/// logical date lies in `[start_date, end_date]`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClearTaskInstancesBody {
    /// Only say what would be cleared.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    dry_run: bool,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    /// Only failed and upstream_failed instances.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    only_failed: bool,
    #[serde(default)]
    only_running: bool,
    /// `true` (the default): every run with a cleared task goes back to running so its
    /// tasks run again (Airflow queues it first; upiflow starts it at once). `false` is
    /// refused unless `dry_run`: upiflow cannot clear tasks and leave their run finished.
    #[serde(default = "default_true")]
    #[schema(default = true)]
    reset_dag_runs: bool,
    task_ids: Option<Vec<TaskMarker>>,
    /// Clear in this run only (the range is its logical date; `start_date`/`end_date` are
    /// then refused).
    dag_run_id: Option<String>,
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_downstream: bool,
    #[serde(default)]
    include_future: bool,
    #[serde(default)]
    include_past: bool,
    /// Only `false` or `null`: a cleared run keeps the DAG version it was created with.
    run_on_latest_version: Option<bool>,
    /// `true`: a selected task instance that is running makes the request a 409. upiflow
    /// never stops a running try, so with `false` (the default) a running one is a 409 too,
    /// saying so, where Airflow would restart it.
    #[serde(default)]
    prevent_running_task: bool,
    /// Only `null`: upiflow keeps no notes.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

/// Refuses what the clear body asks that upiflow would not do.
fn check_clear(body: &ClearTaskInstancesBody) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::Unprocessable(why.to_string()));
    if body.note.is_some() {
        return refuse("note: upiflow keeps no notes on task instances; send null");
    }
    if body.run_on_latest_version == Some(true) {
        return refuse(
            "run_on_latest_version: true is not supported: a cleared run keeps the DAG version \
             it was created with",
        );
    }
    if !body.reset_dag_runs && !body.dry_run {
        return refuse(
            "reset_dag_runs: false is not supported: clearing puts each affected run back to \
             running so the cleared tasks run again",
        );
    }
    if body.dag_run_id.is_some() && (body.start_date.is_some() || body.end_date.is_some()) {
        return refuse(
            "start_date, end_date: not with dag_run_id, which sets the range to that run's \
             logical date; send one or the other",
        );
    }
    Ok(())
}

/// Every task up- or downstream of `start` in `dag`.
fn relatives(dag: &Dag, start: &BTreeSet<String>, up: bool, down: bool) -> BTreeSet<String> {
    let mut out = start.clone();
    for t in start {
        if down {
            out.extend(dag.all_downstream(t).into_iter().map(|d| d.id.clone()));
        }
        if up {
            out.extend(dag.all_upstream(t).into_iter().map(|u| u.id.clone()));
        }
    }
    out
}

/// Clears task instances so they run again (admin); with `dry_run` (the default) only lists
/// them. Answers the instances, as they are after clearing.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/clearTaskInstances", tag = "Task Instance",
    params(("dag_id" = String, Path)), request_body = ClearTaskInstancesBody,
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn clear(
    State(s): State<AppState>,
    _: Admin,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
    Body(body): Body<ClearTaskInstancesBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    check_clear(&body)?;
    let latest = super::dags::latest(&s, &dag_id).await?;
    let mut conn = s.pool.acquire().await?;
    let mut filter = TiFilter {
        dag_id: Some(dag_id.clone()),
        ..TiFilter::default()
    };
    let (mut start, mut end) = (body.start_date, body.end_date);
    let mut dag = latest;
    let single_run = body.dag_run_id.is_some() && !(body.include_past || body.include_future);
    if let Some(run_id) = &body.dag_run_id {
        let run = super::runs::find_run(&mut conn, &dag_id, run_id).await?;
        dag = s.cache.get(&mut conn, &dag_id, &run.dag_hash).await?;
        start = Some(run.logical_date);
        end = Some(run.logical_date);
        if single_run {
            filter.run_id = Some(run_id.clone());
        }
    }
    if body.include_past {
        start = None;
    }
    if body.include_future {
        end = None;
    }
    if !single_run {
        if let Some(t) = start {
            filter.dates.push((TiDate::LogicalDate, Cmp::Gte, t));
        }
        if let Some(t) = end {
            filter.dates.push((TiDate::LogicalDate, Cmp::Lte, t));
        }
    }
    if let Some(markers) = &body.task_ids {
        let mut wanted = BTreeSet::new();
        for m in markers {
            match m {
                TaskMarker::Id(t) | TaskMarker::Mapped(t, -1) => {
                    if dag.task(t).is_none() {
                        return Err(ApiError::NotFound(format!(
                            "Task `{t}` not found in DAG `{dag_id}`"
                        )));
                    }
                    wanted.insert(t.clone());
                }
                // No mapped tasks in upiflow: such a marker matches nothing.
                TaskMarker::Mapped(..) => {}
            }
        }
        let wanted = relatives(
            &dag,
            &wanted,
            body.include_upstream,
            body.include_downstream,
        );
        filter.task_ids = Some(wanted.into_iter().collect());
    }
    let mut states: Option<Vec<Option<TaskState>>> = None;
    if body.only_failed {
        states = Some(vec![
            Some(TaskState::Failed),
            Some(TaskState::UpstreamFailed),
        ]);
    }
    if body.only_running {
        states = Some(match states {
            // Both: nothing is failed and running at once.
            Some(_) => vec![],
            None => vec![Some(TaskState::Running)],
        });
    }
    filter.states = states;
    let (found, _) =
        upiflow_engine::store::task_views::search(&mut conn, &filter, &[], i64::MAX, 0).await?;
    let running: Vec<&str> = found
        .iter()
        .filter(|t| t.state == Some(TaskState::Running))
        .map(|t| t.task_id.as_str())
        .collect();
    if !body.dry_run && !running.is_empty() {
        let names = running.join(", ");
        return Err(ApiError::Conflict(if body.prevent_running_task {
            format!("prevent_running_task: task instances are running: {names}")
        } else {
            format!(
                "cannot clear running task instances ({names}): upiflow does not stop a \
                 running try; wait for it to end"
            )
        }));
    }
    let rows = if body.dry_run || found.is_empty() {
        found
    } else {
        let mut by_run: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for t in &found {
            by_run.entry(t.run_pk).or_default().push(t.task_id.clone());
        }
        let targets: Vec<(i64, Vec<String>)> = by_run.into_iter().collect();
        drop(conn);
        upiflow_engine::lifecycle::clear::clear_many(&s.pool, &s.cache, &targets).await?;
        conn = s.pool.acquire().await?;
        let again = TiFilter {
            run_pks: Some(targets.iter().map(|(pk, _)| *pk).collect()),
            task_ids: Some(found.iter().map(|t| t.task_id.clone()).collect()),
            ..TiFilter::default()
        };
        let ids: BTreeSet<i64> = found.iter().map(|t| t.id).collect();
        let (after, _) =
            upiflow_engine::store::task_views::search(&mut conn, &again, &[], i64::MAX, 0).await?;
        after.into_iter().filter(|t| ids.contains(&t.id)).collect()
    };
    Ok(Json(TaskInstanceCollectionResponse {
        total_entries: rows.len() as i64,
        task_instances: ti_responses(&s, &mut conn, &rows).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tokens_round_trip_and_forged_ones_are_refused() {
        assert_eq!(decode_token(&encode_token(42)).unwrap(), 42);
        for bad in ["forged", "", "YWZ0ZXI6LTE", "!!"] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_are_a_closed_set() {
        assert!(parse_order("-state").is_ok());
        assert!(parse_order("ti.id; DROP TABLE dags").is_err());
    }
}
