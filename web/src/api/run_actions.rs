//! What is done to DAG runs beyond reading and marking them, as Airflow 3 does it:
//! `DELETE /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`,
//! `POST /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear` and the batch list
//! `POST /api/v2/dags/~/dagRuns/list`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use upiflow_engine::TaskState;
use upiflow_engine::store::clear_targets::{self, ClearSelection, RunScope};
use upiflow_engine::store::filters::{self, Cmp, RunDate, RunFilter};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use super::runs::{self, DagRunCollectionResponse, DagRunResponse};
use super::task_instances::{TaskInstanceCollectionResponse, ti_responses};
use super::{Body, Ids};
use crate::AppState;
use crate::auth::{Allowed, Viewer};
use crate::error::ApiError;
use crate::roles::may;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(delete_run))
        .routes(routes!(clear_run))
        .routes(routes!(list_batch))
        .routes(routes!(wait))
}

/// Deletes a run with its task instances, tries and logs' records (Airflow: 204). As in
/// Airflow, the run's state does not matter, except that a run with a running task instance
/// is a 409: Airflow lets the running task die on its next heartbeat, upiflow never stops a
/// running try.
#[utoipa::path(delete, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 204, description = "The run is deleted"),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn delete_run(
    State(s): State<AppState>,
    _: Allowed<may::Clear>,
    Ids((dag_id, run_id)): Ids<(String, String)>,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    {
        let mut conn = s.pool.acquire().await?;
        runs::find_run(&mut conn, &dag_id, &run_id).await?;
    }
    upiflow_engine::lifecycle::run::delete(&s.pool, &s.cache, &dag_id, &run_id)
        .await
        .map_err(|e| match e.kind() {
            upiflow_engine::ErrorKind::NotFound => ApiError::NotFound(format!(
                "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
            )),
            _ => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

fn yes() -> bool {
    true
}

/// Airflow's `DAGRunClearBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DAGRunClearBody)]
struct DagRunClearBody {
    /// Only list what would be cleared (the default).
    #[serde(default = "yes")]
    #[schema(default = true)]
    dry_run: bool,
    /// Only the failed and upstream_failed task instances.
    #[serde(default)]
    only_failed: bool,
    /// Only `false`: a run keeps the DAG version it was created with, so no task is new to it.
    #[serde(default)]
    only_new: bool,
    /// Only `false` or `null`: a cleared run keeps the DAG version it was created with.
    run_on_latest_version: Option<bool>,
    /// Sets the run's note (at most 1000 characters), as Airflow does when it clears.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

/// Airflow's answer to a clear: the task instances (dry run) or the run (after clearing).
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
enum ClearAnswer {
    TaskInstances(TaskInstanceCollectionResponse),
    Run(Box<DagRunResponse>),
}

/// Clears a run's task instances (all, or with `only_failed` the failed and upstream_failed
/// ones) so they run again, and puts the run back to running, as Airflow's `clear_dag_run`.
/// With `dry_run` (the default) answers the task instances it would clear; otherwise clears
/// them (through `engine::lifecycle::clear`) and answers the run. A selected instance that
/// is running makes it a 409 (Airflow would restart it; upiflow never stops a running try).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    request_body = DagRunClearBody,
    responses((status = 200, body = ClearAnswer),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn clear_run(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Clear>,
    Ids((dag_id, run_id)): Ids<(String, String)>,
    _: NoQuery,
    Body(body): Body<DagRunClearBody>,
) -> Result<Json<ClearAnswer>, ApiError> {
    if body.only_new {
        return Err(ApiError::Unprocessable(
            "only_new: true is not supported: a run keeps the DAG version it was created with, \
             so no task is new to it"
                .into(),
        ));
    }
    if body.run_on_latest_version == Some(true) {
        return Err(ApiError::Unprocessable(
            "run_on_latest_version: true is not supported: a cleared run keeps the DAG version \
             it was created with"
                .into(),
        ));
    }
    if let Some(n) = &body.note {
        upiflow_engine::lifecycle::mark::check_note(n)
            .map_err(|e| ApiError::Unprocessable(format!("note: {e}")))?;
    }
    let mut conn = s.pool.acquire().await?;
    runs::find_run(&mut conn, &dag_id, &run_id).await?;
    let selection = ClearSelection {
        dag_id: dag_id.clone(),
        runs: RunScope::One(run_id.clone()),
        task_ids: None,
        states: body
            .only_failed
            .then(|| vec![Some(TaskState::Failed), Some(TaskState::UpstreamFailed)]),
    };
    let found = clear_targets::select(&mut conn, &selection).await?;
    if body.dry_run {
        return Ok(Json(ClearAnswer::TaskInstances(
            TaskInstanceCollectionResponse {
                total_entries: found.len() as i64,
                task_instances: ti_responses(&s, &mut conn, &found).await?,
            },
        )));
    }
    let running: Vec<&str> = found
        .iter()
        .filter(|t| t.state == Some(TaskState::Running))
        .map(|t| t.task_id.as_str())
        .collect();
    if !running.is_empty() {
        return Err(ApiError::Conflict(format!(
            "cannot clear running task instances ({}): upiflow does not stop a running try; \
             wait for it to end",
            running.join(", ")
        )));
    }
    drop(conn);
    if !found.is_empty() {
        let targets = clear_targets::by_run(&found);
        upiflow_engine::lifecycle::clear::clear_many(&s.pool, &s.cache, &targets).await?;
    }
    if let Some(n) = &body.note {
        upiflow_engine::lifecycle::mark::set_run_note(
            &s.pool,
            &dag_id,
            &run_id,
            Some(n),
            &user.username,
        )
        .await?;
    }
    let mut conn = s.pool.acquire().await?;
    let run = runs::find_run(&mut conn, &dag_id, &run_id).await?;
    let mut out = runs::responses(&mut conn, std::slice::from_ref(&run)).await?;
    Ok(Json(ClearAnswer::Run(Box::new(out.remove(0)))))
}

fn default_limit() -> i64 {
    100
}

/// Airflow's `DAGRunsBatchBody`: the run list's filters in a body, across DAGs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DAGRunsBatchBody)]
struct DagRunsBatchBody {
    /// One sort key (`-` before it: descending), as the run list's `order_by`.
    order_by: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0)]
    page_offset: i64,
    #[serde(default = "default_limit")]
    #[schema(minimum = 0, default = 100)]
    page_limit: i64,
    /// Only runs of these DAGs.
    dag_ids: Option<Vec<String>>,
    /// Only runs in one of these states (`null` in the list matches no run: every run has one).
    states: Option<Vec<Option<String>>>,
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
    duration_gte: Option<f64>,
    duration_gt: Option<f64>,
    duration_lte: Option<f64>,
    duration_lt: Option<f64>,
    /// Only `null`: filtering on conf is not implemented.
    conf_contains: Option<String>,
}

fn batch_filter(b: &DagRunsBatchBody) -> Result<RunFilter, ApiError> {
    use upiflow_engine::RunState as S;
    if b.conf_contains.is_some() {
        return Err(ApiError::Unprocessable(
            "conf_contains: filtering on conf is not implemented; send null".into(),
        ));
    }
    let mut f = RunFilter::default();
    if let Some(ids) = &b.dag_ids {
        // Airflow matches the ids exactly; an empty list matches no run.
        f.dag_ids = Some(ids.clone());
    }
    if let Some(states) = &b.states {
        let mut out = Vec::new();
        for st in states.iter().flatten() {
            out.push(match st.as_str() {
                "queued" => S::Queued,
                "running" => S::Running,
                "success" => S::Success,
                "failed" => S::Failed,
                other => {
                    return Err(ApiError::Unprocessable(format!(
                        "states: `{other}` is not a DAG run state (queued, running, success, \
                         failed)"
                    )));
                }
            });
        }
        f.states = Some(out);
    }
    let dates = [
        (
            RunDate::RunAfter,
            [
                b.run_after_gte,
                b.run_after_gt,
                b.run_after_lte,
                b.run_after_lt,
            ],
        ),
        (
            RunDate::LogicalDate,
            [
                b.logical_date_gte,
                b.logical_date_gt,
                b.logical_date_lte,
                b.logical_date_lt,
            ],
        ),
        (
            RunDate::StartDate,
            [
                b.start_date_gte,
                b.start_date_gt,
                b.start_date_lte,
                b.start_date_lt,
            ],
        ),
        (
            RunDate::EndDate,
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

/// Runs of every DAG (the path's DAG id is always `~`, as in Airflow), filtered by the
/// body, by id unless `order_by` says otherwise.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns/list", tag = "DagRun",
    params(("dag_id" = String, Path, description = "Only `~`: runs of every DAG")),
    request_body = DagRunsBatchBody,
    responses((status = 200, body = DagRunCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list_batch(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
    Body(body): Body<DagRunsBatchBody>,
) -> Result<Json<DagRunCollectionResponse>, ApiError> {
    if dag_id != "~" {
        return Err(ApiError::Unprocessable(format!(
            "dag_id: the batch list takes `~` (every DAG), not `{dag_id}`; filter with dag_ids"
        )));
    }
    let (limit, offset) = super::check_page(body.page_limit, body.page_offset)?;
    let mut order = Vec::new();
    if let Some(key) = body.order_by.as_deref().filter(|k| !k.is_empty()) {
        let (desc, name) = match key.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, key),
        };
        let k = runs::run_order(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "order_by: ordering with '{name}' is disallowed or the attribute does not exist \
                 on the model"
            ))
        })?;
        order.push((k, desc));
    }
    let f = batch_filter(&body)?;
    let mut conn = s.pool.acquire().await?;
    let (rows, total) = filters::search_runs(&mut conn, &f, &order, limit, offset).await?;
    Ok(Json(DagRunCollectionResponse {
        dag_runs: runs::list_responses(&rows),
        total_entries: total,
    }))
}

/// The longest pause between two checks of a waited-for run.
const MAX_WAIT_INTERVAL: f64 = 3600.0;

/// One NDJSON line: the run's state, as Airflow's waiter writes it.
fn state_line(state: upiflow_engine::RunState) -> String {
    let mut line = serde_json::json!({ "state": state.to_string() }).to_string();
    line.push('\n');
    line
}

/// Streams the run's state as NDJSON (Airflow 3.1's experimental `wait`): a line at once,
/// then one every `interval` seconds, ending after the line of a finished (success or
/// failed) run. `result` asks for the tasks' XCom results, which upiflow does not have: it
/// is refused rather than answered empty. If the run is deleted while waited for, a last
/// line says so.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/wait", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
        ("interval" = f64, Query, description = "Seconds between checks (more than 0, at most 3600)"),
        ("result" = Option<Vec<String>>, Query, description = "Only absent: upiflow has no XCom")),
    responses((status = 200, description = "NDJSON: `{\"state\": ...}` lines until the run finishes",
            content_type = "application/x-ndjson", body = String),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn wait(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id)): Ids<(String, String)>,
    mut q: Query,
) -> Result<axum::response::Response, ApiError> {
    let interval = q.float("interval")?;
    let result = q.all_split("result");
    q.finish(&[] as &[(&str, &str)])?;
    let interval =
        interval.ok_or_else(|| ApiError::Unprocessable("interval: Field required".into()))?;
    if !(interval > 0.0 && interval <= MAX_WAIT_INTERVAL) {
        return Err(ApiError::Unprocessable(format!(
            "interval: must be more than 0 and at most {MAX_WAIT_INTERVAL} seconds"
        )));
    }
    if !result.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "result: upiflow has no XCom, so task `{}` has no result to collect",
            result[0]
        )));
    }
    {
        let mut conn = s.pool.acquire().await?;
        runs::find_run(&mut conn, &dag_id, &run_id).await?;
    }
    let pause = std::time::Duration::from_secs_f64(interval);
    let pool = s.pool.clone();
    // (first check, finished): the stream ends after the line of a finished run.
    let lines = futures::stream::unfold((true, false), move |(first, done)| {
        let (pool, dag_id, run_id) = (pool.clone(), dag_id.clone(), run_id.clone());
        async move {
            if done {
                return None;
            }
            if !first {
                tokio::time::sleep(pause).await;
            }
            let read = async {
                let mut conn = pool.acquire().await?;
                upiflow_engine::store::runs::get(&mut conn, &dag_id, &run_id).await
            };
            let (line, finished) = match read.await {
                Ok(run) => (state_line(run.state), run.state.is_terminal()),
                Err(e) => {
                    tracing::warn!(%dag_id, %run_id, error = %e, "wait: the run cannot be read");
                    let detail = match e.kind() {
                        upiflow_engine::ErrorKind::NotFound => "the run was deleted".to_string(),
                        _ => "the run's state could not be read".to_string(),
                    };
                    let mut line = serde_json::json!({ "detail": detail }).to_string();
                    line.push('\n');
                    (line, true)
                }
            };
            Some((Ok::<_, std::convert::Infallible>(line), (false, finished)))
        }
    });
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(lines))
        .map_err(|e| ApiError::Internal(e.to_string()))
}
