//! The task-instance list (one run, a DAG's runs or every run) and one task instance.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use upiflow_engine::TaskState;
use upiflow_engine::store::task_views::{self, TiDate, TiFilter, TiOrder};
use utoipa::IntoParams;

use super::{TaskInstanceCollectionResponse, TaskInstanceResponse, find_ti, ti_responses};
use crate::AppState;
use crate::api::Ids;
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::{self, NoQuery, Query};
use crate::auth::Viewer;
use crate::error::ApiError;

pub(super) fn parse_state(v: &str) -> Result<Option<TaskState>, ApiError> {
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

pub(super) fn parse_order(key: &str) -> Option<TiOrder> {
    match key {
        "id" | "map_index" => Some(TiOrder::Id),
        "dag_id" => Some(TiOrder::DagId),
        "run_id" => Some(TiOrder::RunId),
        "task_id" => Some(TiOrder::TaskId),
        "state" => Some(TiOrder::State),
        "try_number" => Some(TiOrder::TryNumber),
        "start_date" => Some(TiOrder::StartDate),
        "end_date" => Some(TiOrder::EndDate),
        "logical_date" | "data_interval_start" => Some(TiOrder::LogicalDate),
        "run_after" | "data_interval_end" => Some(TiOrder::RunAfter),
        "pool" => Some(TiOrder::Pool),
        "duration" => Some(TiOrder::Duration),
        _ => None,
    }
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
    /// logical_date (or data_interval_start), run_after (or data_interval_end), pool,
    /// duration.
    order_by: Option<Vec<String>>,
    /// Every upiflow task instance has map index -1: any other index matches none.
    map_index: Option<Vec<i64>>,
    /// Seconds from start to end (instances that have not ended never match).
    duration_gte: Option<f64>,
    duration_gt: Option<f64>,
    duration_lte: Option<f64>,
    duration_lt: Option<f64>,
    /// Case-insensitive substring of the task id (a task's display name is its id; `%`
    /// and `_` are wildcards, `|` separates alternatives, `~` matches all).
    task_display_name_pattern: Option<String>,
    /// Case-sensitive prefix of the task id (`|` separates alternatives).
    task_display_name_prefix_pattern: Option<String>,
    dag_id_pattern: Option<String>,
    dag_id_prefix_pattern: Option<String>,
    run_id_pattern: Option<String>,
    run_id_prefix_pattern: Option<String>,
    /// Keep instances in any of these pools (repeat the parameter).
    pool: Option<Vec<String>>,
    pool_name_pattern: Option<String>,
    pool_name_prefix_pattern: Option<String>,
    /// Every upiflow task instance is in queue `default`: any other queue matches none.
    queue: Option<Vec<String>>,
    /// Keep instances whose current try has any of these numbers.
    try_number: Option<Vec<i64>>,
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
    /// A `map_index` or `queue` filter that keeps no task instance (upiflow's all have -1
    /// and `default`).
    matches_nothing: bool,
}

/// Parameters Airflow documents for the task-instance list that upiflow refuses, and why.
fn list_unsupported() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = [
        (
            "cursor",
            "keyset pagination is not implemented; use limit and offset",
        ),
        (
            "version_number",
            "filtering on DAG versions is not implemented",
        ),
        (
            "operator",
            "filtering on the task kind is not implemented (it lives in the DAG definition)",
        ),
        (
            "operator_name_pattern",
            "filtering on the task kind is not implemented (it lives in the DAG definition)",
        ),
        (
            "operator_name_prefix_pattern",
            "filtering on the task kind is not implemented (it lives in the DAG definition)",
        ),
        ("task_group_id", "upiflow has no task groups"),
        (
            "queue_name_pattern",
            "upiflow has no queues (every task instance is in `default`); filter with queue",
        ),
        (
            "queue_name_prefix_pattern",
            "upiflow has no queues (every task instance is in `default`); filter with queue",
        ),
        (
            "executor",
            "upiflow has one executor, its workers, and names none",
        ),
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
    out
}

/// Integers of a repeatable (or comma-separated) parameter.
fn ints(q: &mut Query, name: &str) -> Result<Vec<i64>, ApiError> {
    q.all_split(name)
        .iter()
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::Unprocessable(format!("{name}: `{v}` is not an integer")))
        })
        .collect()
}

/// Whether the queue filter keeps upiflow's task instances: every one is in Airflow's
/// `default` queue (the `queue` field answered), so `queue` keeps all of them if it names
/// `default` and none otherwise.
pub(super) fn queue_keeps(queues: &[String]) -> bool {
    queues.is_empty() || queues.iter().any(|q| q == "default")
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
    let order = q.order_by(parse_order, "")?;
    let map_indexes = ints(q, "map_index")?;
    // Airflow's display name of a task is its id unless set; upiflow's always is.
    f.task_id_matches = q.patterns("task_display_name")?;
    f.dag_id_matches = q.patterns("dag_id")?;
    f.run_id_matches = q.patterns("run_id")?;
    f.pool_matches = q.patterns("pool_name")?;
    let pools = q.all_split("pool");
    if !pools.is_empty() {
        f.pools = Some(pools);
    }
    let tries = ints(q, "try_number")?;
    if !tries.is_empty() {
        f.try_numbers = Some(
            tries
                .into_iter()
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
                .collect(),
        );
    }
    f.durations = q.float_range("duration")?;
    let queues = q.all_split("queue");
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
        matches_nothing: (!map_indexes.is_empty() && !map_indexes.contains(&-1))
            || !queue_keeps(&queues),
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
pub(super) async fn list(
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
        crate::api::runs::find_run(&mut conn, &dag_id, &run_id).await?;
        args.filter.run_id = Some(run_id);
    }
    // A run that was found proves its DAG; otherwise a DAG with task instances exists, so
    // only an empty answer asks whether the DAG does (Airflow's 404 for an unknown DAG).
    let unproven = (dag_id != "~" && args.filter.run_id.is_none()).then(|| dag_id.clone());
    if dag_id != "~" {
        args.filter.dag_id = Some(dag_id);
    }
    let (rows, total) = if args.matches_nothing {
        (Vec::new(), 0)
    } else {
        task_views::search(
            &mut conn,
            &args.filter,
            &args.order,
            args.limit,
            args.offset,
        )
        .await?
    };
    if let Some(dag_id) = unproven
        && rows.is_empty()
        && !upiflow_engine::store::dag_list::exists(&mut conn, &dag_id).await?
    {
        return Err(crate::api::dags::not_found(&dag_id));
    }
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: ti_responses(&s, &mut conn, &rows).await?,
        total_entries: total,
    }))
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
pub(super) async fn one(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_a_closed_set() {
        assert!(parse_order("state").is_some());
        assert!(parse_order("ti.id; DROP TABLE dags").is_none());
    }
}
