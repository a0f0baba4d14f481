//! `POST /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list`, Airflow 3's
//! `get_task_instances_batch`: the task-instance list's filters in a body, across runs and
//! DAGs (`~` in the path for every DAG or every run, as Airflow allows).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use upiflow_engine::store::filters::Cmp;
use upiflow_engine::store::task_views::{self, TiDate, TiFilter};
use utoipa::ToSchema;

use super::list::{parse_order, parse_state};
use super::{TaskInstanceCollectionResponse, ti_responses};
use crate::AppState;
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::NoQuery;
use crate::api::{Body, Ids};
use crate::auth::Viewer;
use crate::error::ApiError;

fn default_limit() -> i64 {
    100
}

/// Airflow's `TaskInstancesBatchBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskInstancesBatchBody {
    /// Only instances of these DAGs (exactly; an empty list matches none).
    dag_ids: Option<Vec<String>>,
    /// Only instances of runs with these ids.
    dag_run_ids: Option<Vec<String>>,
    /// Only these tasks.
    task_ids: Option<Vec<String>>,
    /// Only instances in one of these states (`null` in the list: no state yet).
    state: Option<Vec<Option<String>>>,
    run_after_gte: Option<DateTime<Utc>>,
    run_after_gt: Option<DateTime<Utc>>,
    run_after_lte: Option<DateTime<Utc>>,
    run_after_lt: Option<DateTime<Utc>>,
    logical_date_gte: Option<DateTime<Utc>>,
    logical_date_gt: Option<DateTime<Utc>>,
    logical_date_lte: Option<DateTime<Utc>>,
    logical_date_lt: Option<DateTime<Utc>>,
    start_date_gte: Option<DateTime<Utc>>,
    start_date_gt: Option<DateTime<Utc>>,
    start_date_lte: Option<DateTime<Utc>>,
    start_date_lt: Option<DateTime<Utc>>,
    end_date_gte: Option<DateTime<Utc>>,
    end_date_gt: Option<DateTime<Utc>>,
    end_date_lte: Option<DateTime<Utc>>,
    end_date_lt: Option<DateTime<Utc>>,
    /// Seconds from start to end (instances that have not ended never match).
    duration_gte: Option<f64>,
    duration_gt: Option<f64>,
    duration_lte: Option<f64>,
    duration_lt: Option<f64>,
    /// Only instances in these pools.
    pool: Option<Vec<String>>,
    /// Every upiflow task instance is in queue `default`: a list without it matches none.
    queue: Option<Vec<String>>,
    /// Only `null`: upiflow has one executor, its workers, and names none.
    executor: Option<Vec<String>>,
    #[serde(default)]
    #[schema(minimum = 0)]
    page_offset: i64,
    #[serde(default = "default_limit")]
    #[schema(minimum = 0, default = 100)]
    page_limit: i64,
    /// One sort key (`-` before it: descending), as the list's `order_by`.
    order_by: Option<String>,
}

fn filter(b: &TaskInstancesBatchBody) -> Result<TiFilter, ApiError> {
    if b.executor.is_some() {
        return Err(ApiError::Unprocessable(
            "executor: upiflow has one executor, its workers, and names none; send null".into(),
        ));
    }
    let mut f = TiFilter {
        dag_ids: b.dag_ids.clone(),
        run_ids: b.dag_run_ids.clone(),
        task_ids: b.task_ids.clone(),
        pools: b.pool.clone(),
        ..TiFilter::default()
    };
    if let Some(states) = &b.state {
        let mut out = Vec::new();
        for st in states {
            out.push(match st {
                None => None,
                Some(v) => parse_state(v)?,
            });
        }
        f.states = Some(out);
    }
    let dates = [
        (
            TiDate::RunAfter,
            [
                b.run_after_gte,
                b.run_after_gt,
                b.run_after_lte,
                b.run_after_lt,
            ],
        ),
        (
            TiDate::LogicalDate,
            [
                b.logical_date_gte,
                b.logical_date_gt,
                b.logical_date_lte,
                b.logical_date_lt,
            ],
        ),
        (
            TiDate::StartDate,
            [
                b.start_date_gte,
                b.start_date_gt,
                b.start_date_lte,
                b.start_date_lt,
            ],
        ),
        (
            TiDate::EndDate,
            [b.end_date_gte, b.end_date_gt, b.end_date_lte, b.end_date_lt],
        ),
    ];
    let cmps = [Cmp::Gte, Cmp::Gt, Cmp::Lte, Cmp::Lt];
    for (date, bounds) in dates {
        for (cmp, at) in cmps.iter().zip(bounds) {
            if let Some(at) = at {
                f.dates.push((date, *cmp, at));
            }
        }
    }
    let durations = [b.duration_gte, b.duration_gt, b.duration_lte, b.duration_lt];
    for (cmp, d) in cmps.iter().zip(durations) {
        if let Some(d) = d {
            if !d.is_finite() {
                return Err(ApiError::Unprocessable("duration: not a number".into()));
            }
            f.durations.push((*cmp, d));
        }
    }
    Ok(f)
}

/// Task instances filtered by the body, by id unless `order_by` says otherwise. As in
/// Airflow, a DAG id or run id in the path (rather than `~`) also filters, and must exist
/// (else a 404); a run id needs a DAG id.
#[utoipa::path(post,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list",
    tag = "Task Instance",
    params(("dag_id" = String, Path, description = "A DAG id, or `~` for every DAG"),
        ("dag_run_id" = String, Path, description = "A run id, or `~` for every run")),
    request_body = TaskInstancesBatchBody,
    responses((status = 200, body = TaskInstanceCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn list_batch(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id)): Ids<(String, String)>,
    _: NoQuery,
    Body(body): Body<TaskInstancesBatchBody>,
) -> Result<Json<TaskInstanceCollectionResponse>, ApiError> {
    let (limit, offset) = crate::api::check_page(body.page_limit, body.page_offset)?;
    let mut order = Vec::new();
    if let Some(key) = body.order_by.as_deref().filter(|k| !k.is_empty()) {
        let (desc, name) = match key.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, key),
        };
        let k = parse_order(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "order_by: ordering with '{name}' is disallowed or the attribute does not exist \
                 on the model"
            ))
        })?;
        order.push((k, desc));
    }
    let mut f = filter(&body)?;
    let mut conn = s.pool.acquire().await?;
    if run_id != "~" {
        if dag_id == "~" {
            return Err(ApiError::BadRequest(
                "dag_id is required when dag_run_id is specified".into(),
            ));
        }
        crate::api::runs::find_run(&mut conn, &dag_id, &run_id).await?;
        f.run_id = Some(run_id);
    }
    if dag_id != "~" {
        if !upiflow_engine::store::dag_list::exists(&mut conn, &dag_id).await? {
            return Err(crate::api::dags::not_found(&dag_id));
        }
        f.dag_id = Some(dag_id);
    }
    // An empty list matches none, as Airflow's `IN ()`.
    let queue_keeps = body
        .queue
        .as_ref()
        .is_none_or(|q| q.iter().any(|q| q == "default"));
    let (rows, total) = if queue_keeps {
        task_views::search(&mut conn, &f, &order, limit, offset).await?
    } else {
        (Vec::new(), 0)
    };
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: ti_responses(&s, &mut conn, &rows).await?,
        total_entries: total,
    }))
}
