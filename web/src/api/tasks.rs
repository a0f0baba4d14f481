//! `GET /api/v2/dags/{dag_id}/tasks` and `/tasks/{task_id}`: the tasks of a DAG's current
//! version, as Airflow serves them from its serialized DAG.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use upiflow_engine::Dag;
use upiflow_engine::dag::TaskDef;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Ids;
use super::dags::latest;
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

/// Airflow's `TimeDelta`.
#[derive(Serialize, ToSchema)]
pub struct TimeDelta {
    __type: String,
    days: i64,
    seconds: i64,
    microseconds: i64,
}

fn time_delta(d: Duration) -> TimeDelta {
    let secs = d.as_secs() as i64;
    TimeDelta {
        __type: "TimeDelta".into(),
        days: secs / 86_400,
        seconds: secs % 86_400,
        microseconds: i64::from(d.subsec_micros()),
    }
}

/// Airflow's `TaskResponse`. upiflow has no owners, queues, colours, docs or mapped tasks:
/// those are `null`/`false`/empty, as Airflow answers for a task that sets none.
#[derive(Serialize, ToSchema)]
pub struct TaskResponse {
    task_id: Option<String>,
    task_display_name: Option<String>,
    owner: Option<String>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    trigger_rule: Option<String>,
    depends_on_past: bool,
    wait_for_downstream: bool,
    retries: Option<f64>,
    queue: Option<String>,
    pool: Option<String>,
    pool_slots: Option<f64>,
    execution_timeout: Option<TimeDelta>,
    retry_delay: Option<TimeDelta>,
    /// The factor each retry's delay grows by: 2 with `retry_exponential_backoff = true`
    /// (upiflow doubles it), 0 without (Airflow 3's float meaning).
    retry_exponential_backoff: f64,
    /// The task's own `priority_weight` (the effective one follows `weight_rule`).
    priority_weight: Option<f64>,
    weight_rule: Option<String>,
    ui_color: Option<String>,
    ui_fgcolor: Option<String>,
    /// The keys rendered per try (a command's argv and env).
    template_fields: Option<Vec<String>>,
    downstream_task_ids: Option<Vec<String>>,
    doc_md: Option<String>,
    /// The task kind (upiflow's operators).
    operator_name: Option<String>,
    /// The DAG's `[params]`, which every task sees.
    #[schema(value_type = Option<Object>)]
    params: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    class_ref: Option<Value>,
    is_mapped: Option<bool>,
    extra_links: Vec<String>,
}

fn to_response(dag: &Dag, t: &TaskDef) -> TaskResponse {
    let template_fields = match t.kind.as_str() {
        "command" => vec!["command".to_string(), "env".to_string()],
        _ => vec![],
    };
    TaskResponse {
        task_id: Some(t.id.clone()),
        task_display_name: Some(t.id.clone()),
        owner: None,
        start_date: dag.start_date,
        end_date: dag.end_date,
        trigger_rule: Some(t.trigger_rule.as_str().into()),
        depends_on_past: false,
        wait_for_downstream: false,
        retries: Some(f64::from(t.retry.retries)),
        queue: None,
        pool: Some(t.pool.clone()),
        pool_slots: Some(f64::from(t.pool_slots)),
        execution_timeout: t.timeout.map(time_delta),
        retry_delay: Some(time_delta(t.retry.retry_delay)),
        retry_exponential_backoff: if t.retry.exponential_backoff {
            2.0
        } else {
            0.0
        },
        priority_weight: Some(f64::from(t.priority_weight)),
        weight_rule: Some(t.weight_rule.as_str().into()),
        ui_color: None,
        ui_fgcolor: None,
        template_fields: Some(template_fields),
        downstream_task_ids: Some(dag.downstream_of(&t.id).map(|d| d.id.clone()).collect()),
        doc_md: None,
        operator_name: Some(t.kind.clone()),
        params: Some(dag.params.clone()),
        class_ref: None,
        is_mapped: Some(false),
        extra_links: vec![],
    }
}

/// Airflow's `TaskCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct TaskCollectionResponse {
    tasks: Vec<TaskResponse>,
    total_entries: i64,
}

/// The task attributes the list sorts by.
const SORT_KEYS: [&str; 9] = [
    "task_id",
    "task_display_name",
    "operator_name",
    "pool",
    "pool_slots",
    "priority_weight",
    "retries",
    "trigger_rule",
    "weight_rule",
];

/// A sort key of the task list: Airflow sorts by the named task attribute.
fn sort_key(t: &TaskResponse, key: &str) -> Option<Value> {
    Some(match key {
        "task_id" | "task_display_name" => Value::from(t.task_id.clone()),
        "operator_name" => Value::from(t.operator_name.clone()),
        "pool" => Value::from(t.pool.clone()),
        "pool_slots" => Value::from(t.pool_slots),
        "priority_weight" => Value::from(t.priority_weight),
        "retries" => Value::from(t.retries),
        "trigger_rule" => Value::from(t.trigger_rule.clone()),
        "weight_rule" => Value::from(t.weight_rule.clone()),
        _ => return None,
    })
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// The tasks of the DAG's current version, by `order_by` (one task attribute, `-` first for
/// descending; default `task_id`), as Airflow's `get_tasks`.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/tasks", tag = "Task",
    params(("dag_id" = String, Path),
        ("order_by" = Option<String>, Query, description = "task_id (the default), \
            task_display_name, operator_name, pool, pool_slots, priority_weight, retries, \
            trigger_rule or weight_rule; `-` first for descending")),
    responses((status = 200, body = TaskCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
    mut q: Query,
) -> Result<Json<TaskCollectionResponse>, ApiError> {
    let order = q.one("order_by")?.unwrap_or_else(|| "task_id".into());
    q.finish::<&str>(&[])?;
    let (desc, key) = match order.strip_prefix('-') {
        Some(k) => (true, k.to_string()),
        None => (false, order.clone()),
    };
    if !SORT_KEYS.contains(&key.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "order_by: '{key}' is not an attribute of a task ({})",
            SORT_KEYS.join(", ")
        )));
    }
    let dag = latest(&s, &dag_id).await?;
    let mut tasks: Vec<TaskResponse> = dag.tasks.iter().map(|t| to_response(&dag, t)).collect();
    tasks.sort_by(|a, b| {
        let o = compare(
            &sort_key(a, &key).unwrap_or_default(),
            &sort_key(b, &key).unwrap_or_default(),
        )
        .then_with(|| a.task_id.cmp(&b.task_id));
        if desc { o.reverse() } else { o }
    });
    Ok(Json(TaskCollectionResponse {
        total_entries: tasks.len() as i64,
        tasks,
    }))
}

/// One task of the DAG's current version.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/tasks/{task_id}", tag = "Task",
    params(("dag_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, task_id)): Ids<(String, String)>,
    _: NoQuery,
) -> Result<Json<TaskResponse>, ApiError> {
    let dag = latest(&s, &dag_id).await?;
    let task = dag
        .task(&task_id)
        .ok_or_else(|| ApiError::NotFound(format!("Task with id {task_id} not found")))?;
    Ok(Json(to_response(&dag, task)))
}
