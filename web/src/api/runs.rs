//! `GET|POST /api/v2/dags/{dag_id}/dagRuns`, `GET|PATCH /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`
//! (the PATCH marks the run and sets its note, as Airflow 3's `patch_dag_run`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::store::filters::{self, RunDate, RunFilter, RunOrder};
use upiflow_engine::store::runs::{self, RunRow};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{self, DagVersionResponse, HTTPExceptionResponse, HTTPValidationError};
use super::query::{self, NoQuery, Query};
use super::{Body, Ids};
use crate::AppState;
use crate::auth::{Allowed, Viewer};
use crate::error::ApiError;
use crate::roles::may;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, trigger))
        .routes(routes!(one, patch_run))
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DagRunType {
    Backfill,
    Scheduled,
    Manual,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DagRunState {
    Queued,
    Running,
    Success,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DagRunTriggeredByType {
    RestApi,
    Timetable,
    Backfill,
}

/// Airflow's `DAGRunResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGRunResponse)]
pub struct DagRunResponse {
    dag_run_id: String,
    dag_id: String,
    logical_date: Option<DateTime<Utc>>,
    queued_at: Option<DateTime<Utc>>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration: Option<f64>,
    data_interval_start: Option<DateTime<Utc>>,
    data_interval_end: Option<DateTime<Utc>>,
    run_after: DateTime<Utc>,
    last_scheduling_decision: Option<DateTime<Utc>>,
    run_type: DagRunType,
    state: DagRunState,
    triggered_by: Option<DagRunTriggeredByType>,
    triggering_user_name: Option<String>,
    conf: Option<Value>,
    note: Option<String>,
    dag_versions: Vec<DagVersionResponse>,
    bundle_version: Option<String>,
    dag_display_name: String,
    partition_key: Option<String>,
    partition_date: Option<DateTime<Utc>>,
}

fn to_response(r: &RunRow, version: Option<&DagVersionResponse>) -> DagRunResponse {
    use upiflow_engine::{RunState as S, RunType as T};
    let (run_type, triggered_by) = match r.run_type {
        T::Manual => (DagRunType::Manual, DagRunTriggeredByType::RestApi),
        T::Scheduled => (DagRunType::Scheduled, DagRunTriggeredByType::Timetable),
        T::Backfill => (DagRunType::Backfill, DagRunTriggeredByType::Backfill),
    };
    DagRunResponse {
        dag_run_id: r.run_id.clone(),
        dag_id: r.dag_id.clone(),
        logical_date: Some(r.logical_date),
        queued_at: Some(r.queued_at),
        start_date: r.start_date,
        end_date: r.end_date,
        duration: models::duration(r.start_date, r.end_date),
        data_interval_start: Some(r.data_interval_start),
        data_interval_end: Some(r.data_interval_end),
        run_after: r.data_interval_end,
        last_scheduling_decision: None,
        run_type,
        state: match r.state {
            S::Queued => DagRunState::Queued,
            S::Running => DagRunState::Running,
            S::Success => DagRunState::Success,
            S::Failed => DagRunState::Failed,
        },
        triggered_by: Some(triggered_by),
        triggering_user_name: r.triggering_user_name.clone(),
        conf: Some(r.conf.clone()),
        note: r.note.clone(),
        dag_versions: version.cloned().into_iter().collect(),
        bundle_version: None,
        dag_display_name: r.dag_id.clone(),
        partition_key: None,
        partition_date: None,
    }
}

pub(super) async fn responses(
    conn: &mut PgConnection,
    rows: &[RunRow],
) -> Result<Vec<DagRunResponse>, ApiError> {
    let wanted: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.dag_id.clone(), r.dag_hash.clone()))
        .collect();
    let versions = models::dag_versions(conn, &wanted).await?;
    Ok(rows
        .iter()
        .map(|r| to_response(r, versions.get(&(r.dag_id.clone(), r.dag_hash.clone()))))
        .collect())
}

/// The responses of listed runs, which carry their versions.
pub(super) fn list_responses(rows: &[filters::ListedRun]) -> Vec<DagRunResponse> {
    rows.iter()
        .map(|l| {
            let version = models::listed_version(&l.run.dag_id, &l.run.dag_hash, &l.version);
            to_response(&l.run, version.as_ref())
        })
        .collect()
}

/// Airflow's `DAGRunCollectionResponse`.
#[derive(Serialize, ToSchema)]
#[schema(as = DAGRunCollectionResponse)]
pub struct DagRunCollectionResponse {
    pub(super) dag_runs: Vec<DagRunResponse>,
    pub(super) total_entries: i64,
}

/// Query parameters of the run list (for the document; [`list`] reads them one by one).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct RunListQuery {
    /// At most this many entries (0 to 1000).
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// Keep runs in any of these states (repeat the parameter).
    state: Option<Vec<String>>,
    /// Keep runs of any of these types (repeat the parameter): scheduled, manual, backfill.
    run_type: Option<Vec<String>>,
    logical_date_gte: Option<DateTime<Utc>>,
    logical_date_gt: Option<DateTime<Utc>>,
    logical_date_lte: Option<DateTime<Utc>>,
    logical_date_lt: Option<DateTime<Utc>>,
    /// `run_after` is the end of the run's data interval.
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
    /// Seconds from start to end (runs that have not ended never match).
    duration_gte: Option<f64>,
    duration_gt: Option<f64>,
    duration_lte: Option<f64>,
    duration_lt: Option<f64>,
    /// Case-insensitive substring (`%` and `_` are wildcards, `|` separates alternatives,
    /// `~` matches all).
    run_id_pattern: Option<String>,
    /// Case-sensitive prefix (`|` separates alternatives, `~` matches all).
    run_id_prefix_pattern: Option<String>,
    /// Who triggered the run (runs the scheduler or a backfill made have no one and never
    /// match): case-insensitive substring, as run_id_pattern.
    triggering_user_name_pattern: Option<String>,
    /// Case-sensitive prefix of who triggered the run.
    triggering_user_name_prefix_pattern: Option<String>,
    /// With `~` as the DAG id: keep the runs of matching DAGs.
    dag_id_pattern: Option<String>,
    dag_id_prefix_pattern: Option<String>,
    /// Sort keys (repeat the parameter), `-` first for descending: id (the default), state,
    /// dag_id, run_id (or dag_run_id), logical_date, run_after, start_date, end_date, duration.
    order_by: Option<Vec<String>>,
}

/// Parameters Airflow documents for the run list that upiflow refuses, and why.
fn run_list_unsupported() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = [
        (
            "cursor",
            "keyset pagination is not implemented; use limit and offset",
        ),
        ("conf_contains", "filtering on conf is not implemented"),
        (
            "dag_version",
            "filtering on DAG versions is not implemented",
        ),
        ("bundle_version", "upiflow does not version its DAG bundle"),
        ("partition_date_gte", "upiflow has no partitioned runs"),
        ("partition_date_lte", "upiflow has no partitioned runs"),
        ("partition_key_pattern", "upiflow has no partitioned runs"),
        (
            "partition_key_prefix_pattern",
            "upiflow has no partitioned runs",
        ),
        ("consuming_asset_pattern", "upiflow has no assets"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    out.extend(query::refuse_range(
        "updated_at",
        "upiflow does not record when a run was last updated",
    ));
    out
}

pub(super) fn run_order(key: &str) -> Option<RunOrder> {
    match key {
        "id" => Some(RunOrder::Id),
        "state" => Some(RunOrder::State),
        "dag_id" => Some(RunOrder::DagId),
        "run_id" | "dag_run_id" => Some(RunOrder::RunId),
        "logical_date" => Some(RunOrder::LogicalDate),
        "run_after" => Some(RunOrder::RunAfter),
        "start_date" => Some(RunOrder::StartDate),
        "end_date" => Some(RunOrder::EndDate),
        "duration" => Some(RunOrder::Duration),
        _ => None,
    }
}

fn run_type(v: &str) -> Result<upiflow_engine::RunType, ApiError> {
    use upiflow_engine::RunType as T;
    Ok(match v {
        "scheduled" => T::Scheduled,
        "manual" => T::Manual,
        "backfill" => T::Backfill,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "run_type: `{other}` is not a run type upiflow has (scheduled, manual, backfill)"
            )));
        }
    })
}

/// Runs of a DAG (`~`: of every DAG), by id unless `order_by` says otherwise.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path, description = "A DAG id, or `~` for every DAG"),
        RunListQuery),
    responses((status = 200, body = DagRunCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    Ids(dag_id): Ids<String>,
    mut q: Query,
) -> Result<Json<DagRunCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(run_order, "")?;
    let mut f = RunFilter {
        states: super::dags::run_states(&mut q, "state")?,
        dag_id_matches: q.patterns("dag_id")?,
        run_id_matches: q.patterns("run_id")?,
        triggering_user_matches: q.patterns("triggering_user_name")?,
        durations: q.float_range("duration")?,
        ..RunFilter::default()
    };
    let types = q.all_split("run_type");
    if !types.is_empty() {
        f.run_types = Some(
            types
                .iter()
                .map(|t| run_type(t))
                .collect::<Result<_, _>>()?,
        );
    }
    for (name, date) in [
        ("logical_date", RunDate::LogicalDate),
        ("run_after", RunDate::RunAfter),
        ("start_date", RunDate::StartDate),
        ("end_date", RunDate::EndDate),
    ] {
        for (cmp, at) in q.date_range(name)? {
            f.dates.push((date, cmp, at));
        }
    }
    q.finish(&run_list_unsupported())?;
    let mut conn = s.pool.acquire().await?;
    let named = (dag_id != "~").then_some(dag_id);
    f.dag_id = named.clone();
    let (rows, total) = filters::search_runs(&mut conn, &f, &order, limit, offset).await?;
    // A DAG that has runs exists: only an empty answer asks whether the DAG does (Airflow's
    // 404 for an unknown DAG), saving the list a round trip.
    if let Some(dag_id) = named
        && total == 0
        && !upiflow_engine::store::dag_list::exists(&mut conn, &dag_id).await?
    {
        return Err(super::dags::not_found(&dag_id));
    }
    Ok(Json(DagRunCollectionResponse {
        dag_runs: list_responses(&rows),
        total_entries: total,
    }))
}

/// A run of a DAG, or a 404 naming what is missing.
pub(super) async fn find_run(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
) -> Result<RunRow, ApiError> {
    runs::get(conn, dag_id, run_id)
        .await
        .map_err(|e| match e.kind() {
            upiflow_engine::ErrorKind::NotFound => ApiError::NotFound(format!(
                "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
            )),
            _ => e.into(),
        })
}

/// One run.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DagRunResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids((dag_id, run_id)): Ids<(String, String)>,
    _: NoQuery,
) -> Result<Json<DagRunResponse>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let run = find_run(&mut conn, &dag_id, &run_id).await?;
    let mut out = responses(&mut conn, std::slice::from_ref(&run)).await?;
    Ok(Json(out.remove(0)))
}

/// Airflow 3's `TriggerDAGRunPostBody`. upiflow derives a run's data interval from its
/// logical date: `data_interval_start`/`_end` are accepted only when they are what upiflow
/// would give anyway; `run_after` only when not in the future (the run may start at once);
/// `partition_key` only as `null`. `dag_run_id` is the caller's choice, as in Airflow.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TriggerDAGRunPostBody)]
struct TriggerBody {
    /// The run covers the schedule interval containing it; `null`: the latest complete one.
    logical_date: Option<DateTime<Utc>>,
    /// Overrides of the DAG's params (unknown ones are refused).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    conf: Option<Value>,
    /// The run's id (1-250 of letters, digits and `_.~:+-`, Airflow's default
    /// `allowed_run_id_pattern`); `null`: `manual__<logical date>`. An id the DAG has
    /// already is a 409.
    #[serde(default)]
    #[schema(max_length = 250)]
    dag_run_id: Option<String>,
    /// Only the interval the logical date falls in.
    #[serde(default)]
    data_interval_start: Option<DateTime<Utc>>,
    #[serde(default)]
    data_interval_end: Option<DateTime<Utc>>,
    /// Only a time that has passed: runs start as soon as the DAG has room.
    #[serde(default)]
    run_after: Option<DateTime<Utc>>,
    /// A note on the run (at most 1000 characters).
    #[serde(default)]
    #[schema(max_length = 1000)]
    note: Option<String>,
    /// Only `null`: upiflow has no partitioned runs.
    #[serde(default)]
    partition_key: Option<String>,
}

/// Refuses what the trigger body asks that upiflow would not do.
fn check_trigger(dag: &upiflow_engine::Dag, body: &TriggerBody) -> Result<(), ApiError> {
    let refuse = |field: &str, why: String| Err(ApiError::Unprocessable(format!("{field}: {why}")));
    if let Some(n) = &body.note {
        upiflow_engine::lifecycle::mark::check_note(n)
            .map_err(|e| ApiError::Unprocessable(format!("note: {e}")))?;
    }
    if body.partition_key.is_some() {
        return refuse(
            "partition_key",
            "upiflow has no partitioned runs; send null".into(),
        );
    }
    if let Some(at) = body.run_after
        && at > Utc::now()
    {
        return refuse(
            "run_after",
            "a run that waits for a later time is not supported: upiflow starts a triggered run \
             as soon as the DAG has room"
                .into(),
        );
    }
    let (_, (start, end)) = ops::resolve_interval(dag, body.logical_date);
    if let Some(id) = &body.dag_run_id {
        // A 422 naming the field, as this body's other refusals.
        ops::check_run_id(id).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    }
    match (body.data_interval_start, body.data_interval_end) {
        (None, None) => {}
        (Some(a), Some(b)) if a == start && b == end => {}
        (Some(_), Some(_)) => {
            return refuse(
                "data_interval_start",
                format!(
                    "upiflow derives the data interval from the schedule: for this logical date \
                     it is [{}, {})",
                    start.to_rfc3339(),
                    end.to_rfc3339()
                ),
            );
        }
        (Some(_), None) | (None, Some(_)) => {
            return refuse(
                "data_interval_end",
                "data_interval_start and data_interval_end go together".into(),
            );
        }
    }
    Ok(())
}

/// Creates a manual run (admin). Without a logical date, it covers the latest complete
/// interval.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path)), request_body = TriggerBody,
    responses((status = 200, body = DagRunResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn trigger(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Trigger>,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
    Body(body): Body<TriggerBody>,
) -> Result<Json<DagRunResponse>, ApiError> {
    let dag = super::dags::latest(&s, &dag_id).await?;
    check_trigger(&dag, &body)?;
    let req = Trigger {
        logical_date: body.logical_date,
        conf: body.conf.unwrap_or_else(|| json!({})),
        run_id: body.dag_run_id.clone(),
        triggered_by: Some(user.username.clone()),
        ..Trigger::default()
    };
    let mut run = ops::trigger(&s.pool, &s.cache, &dag, &req).await?;
    if let Some(n) = &body.note {
        upiflow_engine::lifecycle::mark::set_run_note(
            &s.pool,
            &run.dag_id,
            &run.run_id,
            Some(n),
            &user.username,
        )
        .await?;
        run.note = Some(n.clone());
    }
    let mut conn = s.pool.acquire().await?;
    let mut out = responses(&mut conn, std::slice::from_ref(&run)).await?;
    Ok(Json(out.remove(0)))
}

/// For a body field where absent and `null` differ: present (even as `null`) is `Some`.
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The fields a PATCH changes, as Airflow decides them: those present in the body, and with
/// an `update_mask` (repeatable or comma-separated) only those it names too. A mask naming a
/// field the body type does not have is refused.
pub(super) fn update_mask<'a>(
    q: &mut Query,
    present: &[&'a str],
    fields: &[&str],
) -> Result<Vec<&'a str>, ApiError> {
    let mask = q.all_split("update_mask");
    if let Some(bad) = mask.iter().find(|m| !fields.contains(&m.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "update_mask: `{bad}` is not a field that can be updated ({})",
            fields.join(", ")
        )));
    }
    Ok(present
        .iter()
        .copied()
        .filter(|f| mask.is_empty() || mask.iter().any(|m| m == f))
        .collect())
}

/// Airflow 3's `DAGRunPatchBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DAGRunPatchBody)]
struct DagRunPatchBody {
    /// `queued`, `success` or `failed`; `null` changes nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DagRunPatchStates>)]
    state: Option<Option<String>>,
    /// At most 1000 characters; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<Option<String>>,
}

/// The states a run may be set to.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(as = DAGRunPatchStates)]
#[serde(rename_all = "snake_case")]
enum DagRunPatchStates {
    Queued,
    Success,
    Failed,
}

/// Marks a run (admin): `success` sets every task instance not in success to success,
/// `failed` fails its running task instances (stopping their tries) and skips the
/// unfinished ones, `queued` puts it back in the queue; and sets its note.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Only these fields of the body (state, note)")),
    request_body = DagRunPatchBody,
    responses((status = 200, body = DagRunResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn patch_run(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Mark>,
    Ids((dag_id, run_id)): Ids<(String, String)>,
    mut q: Query,
    Body(body): Body<DagRunPatchBody>,
) -> Result<Json<DagRunResponse>, ApiError> {
    use upiflow_engine::lifecycle::mark::{self, RunMark};
    let mut given = Vec::new();
    if body.state.is_some() {
        given.push("state");
    }
    if body.note.is_some() {
        given.push("note");
    }
    let fields = update_mask(&mut q, &given, &["state", "note"])?;
    q.finish(&[] as &[(&str, &str)])?;
    let state = match body.state.flatten().filter(|_| fields.contains(&"state")) {
        None => None,
        Some(v) => Some(RunMark::parse(&v).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "state: Input should be 'queued', 'success' or 'failed', not '{v}'"
            ))
        })?),
    };
    let note = body.note.filter(|_| fields.contains(&"note"));
    if let Some(Some(n)) = &note {
        mark::check_note(n).map_err(|e| ApiError::Unprocessable(format!("note: {e}")))?;
    }
    {
        let mut conn = s.pool.acquire().await?;
        find_run(&mut conn, &dag_id, &run_id).await?;
    }
    if let Some(state) = state {
        mark::mark_run(&s.pool, &s.cache, &dag_id, &run_id, state, &user.username).await?;
    }
    if let Some(n) = &note {
        mark::set_run_note(&s.pool, &dag_id, &run_id, n.as_deref(), &user.username).await?;
    }
    let mut conn = s.pool.acquire().await?;
    let run = find_run(&mut conn, &dag_id, &run_id).await?;
    let mut out = responses(&mut conn, std::slice::from_ref(&run)).await?;
    Ok(Json(out.remove(0)))
}
