//! Bulk changes to DAG runs, as Airflow 3: `PATCH /api/v2/dags/{dag_id}/dagRuns`
//! (`bulk_dag_runs`: a `BulkBody` of create / update / delete actions, answered with a
//! `BulkResponse` of per-entity successes and errors) and `POST
//! /api/v2/dags/{dag_id}/clearDagRuns` (`clear_dag_runs`). Also the bulk answer types the
//! task-instance bulk route shares.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use upiflow_engine::TaskState;
use upiflow_engine::lifecycle::mark::{self, RunMark};
use upiflow_engine::store::clear_targets::{self, ClearSelection, RunScope};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::NoQuery;
use super::runs::{self, DagRunCollectionResponse, present};
use super::task_instances::{TaskInstanceCollectionResponse, ti_responses};
use super::{Body, Ids};
use crate::AppState;
use crate::auth::Allowed;
use crate::error::ApiError;
use crate::roles::{self, Action, may};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bulk_dag_runs))
        .routes(routes!(clear_dag_runs))
}

/// Airflow's `BulkActionResponse`: the keys that succeeded, and an error object
/// (`{"error": ..., "status_code": ...}`) for each thing that did not.
#[derive(Serialize, ToSchema, Default)]
pub struct BulkActionResponse {
    pub(super) success: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub(super) errors: Vec<Value>,
}

impl BulkActionResponse {
    pub(super) fn error(&mut self, status: u16, detail: impl Into<String>) {
        self.errors
            .push(json!({ "error": detail.into(), "status_code": status }));
    }

    /// Records a request problem (a 4xx) as this entity's error; a server problem (a 5xx)
    /// fails the whole request instead of hiding in the answer.
    pub(super) fn fail(&mut self, e: ApiError) -> Result<(), ApiError> {
        let status = e.status();
        if status.is_server_error() {
            return Err(e);
        }
        self.error(status.as_u16(), e.to_string());
        Ok(())
    }
}

/// Airflow's `BulkResponse`: one field per kind of action the body had (`null` if none).
#[derive(Serialize, ToSchema, Default)]
pub struct BulkResponse {
    pub(super) create: Option<BulkActionResponse>,
    pub(super) update: Option<BulkActionResponse>,
    pub(super) delete: Option<BulkActionResponse>,
}

/// Airflow's `BulkActionOnExistence` (create only; upiflow creates nothing in bulk).
#[derive(Deserialize, ToSchema, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum BulkActionOnExistence {
    #[default]
    Fail,
    Skip,
    Overwrite,
}

/// Airflow's `BulkActionNotOnExistence`: `fail` refuses the whole action if any entity is
/// missing (nothing of it is done), `skip` leaves the missing ones out.
#[derive(Deserialize, ToSchema, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BulkActionNotOnExistence {
    #[default]
    Fail,
    Skip,
}

/// Airflow's `BulkDAGRunBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkDAGRunBody)]
pub struct BulkDagRunBody {
    dag_run_id: String,
    /// The run's DAG; needed when the path's DAG id is `~`.
    #[serde(default)]
    dag_id: Option<String>,
    /// `queued`, `success` or `failed`; `null` changes nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    state: Option<Option<String>>,
    /// At most 1000 characters; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<Option<String>>,
}

/// A run to delete: its id, or a `BulkDAGRunBody`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DagRunRef {
    Id(String),
    Entity(BulkDagRunBody),
}

/// One action of Airflow's `BulkBody[BulkDAGRunBody]`.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum DagRunAction {
    /// Not supported, as in Airflow: a run is created by triggering. (The fields are read
    /// only to check the action's shape; the action is then refused.)
    #[allow(dead_code)]
    Create {
        entities: Vec<BulkDagRunBody>,
        #[serde(default)]
        action_on_existence: BulkActionOnExistence,
    },
    /// Marks each run's state and sets its note, as the single PATCH does.
    Update {
        entities: Vec<BulkDagRunBody>,
        /// Only these fields of each entity (state, note).
        #[serde(default)]
        update_mask: Option<Vec<String>>,
        #[serde(default)]
        action_on_non_existence: BulkActionNotOnExistence,
    },
    /// Deletes each run, as the single DELETE does; a running run is a 409, as in Airflow.
    Delete {
        entities: Vec<DagRunRef>,
        #[serde(default)]
        action_on_non_existence: BulkActionNotOnExistence,
    },
}

/// Airflow's `BulkBody[BulkDAGRunBody]`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkBody_BulkDAGRunBody_)]
pub struct BulkDagRunsBody {
    actions: Vec<DagRunAction>,
}

/// A checked update of one run.
struct RunUpdate {
    key: (String, String),
    state: Option<RunMark>,
    note: Option<Option<String>>,
}

/// The `(dag_id, run_id)` of an entity: its own DAG id, else the path's (not `~`).
fn run_key(
    path_dag: &str,
    dag_id: Option<&str>,
    run_id: &str,
    out: &mut BulkActionResponse,
) -> Option<(String, String)> {
    let dag = dag_id.unwrap_or(path_dag);
    if dag == "~" || run_id == "~" {
        out.error(
            400,
            format!(
                "When using wildcard in path, dag_id must be specified in request body for \
                 dag_run_id: {run_id}"
            ),
        );
        return None;
    }
    Some((dag.to_string(), run_id.to_string()))
}

/// Which of `keys` name no run.
async fn missing_runs(
    s: &AppState,
    keys: &[(String, String)],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let mut out = Vec::new();
    for (dag, run) in keys {
        match upiflow_engine::store::runs::get(&mut conn, dag, run).await {
            Ok(_) => {}
            Err(e) if e.kind() == upiflow_engine::ErrorKind::NotFound => {
                out.push((dag.clone(), run.clone()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn not_found_message(missing: &[(String, String)]) -> String {
    let ids: Vec<String> = missing
        .iter()
        .map(|(d, r)| format!("('{d}', '{r}')"))
        .collect();
    format!(
        "The DagRuns with these identifiers: [{}] were not found",
        ids.join(", ")
    )
}

/// Checks every entity of an update as the single PATCH's model does (a 422 for the whole
/// request, as Airflow's body validation).
fn check_update(
    e: &BulkDagRunBody,
    mask: Option<&[String]>,
) -> Result<(Option<RunMark>, Option<Option<String>>), ApiError> {
    let wanted = |f: &str| mask.is_none_or(|m| m.iter().any(|x| x == f));
    let state = match e.state.clone().flatten().filter(|_| wanted("state")) {
        None => None,
        Some(v) => Some(RunMark::parse(&v).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "state: Input should be 'queued', 'success' or 'failed', not '{v}'"
            ))
        })?),
    };
    let note = e.note.clone().filter(|_| wanted("note"));
    if let Some(Some(n)) = &note {
        mark::check_note(n).map_err(|err| ApiError::Unprocessable(format!("note: {err}")))?;
    }
    Ok((state, note))
}

/// Applies the actions of the body in order. Each action's answer lists the runs changed
/// (`dag_id.run_id`, as Airflow) and an error per run it could not change; with
/// `action_on_non_existence: fail` (the default) one missing run fails that whole action
/// (a 404 in its errors), with `skip` the missing runs are left out. `create` is always an
/// error (405), as in Airflow: runs are created by triggering. A viewer is refused (403).
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path, description = "A DAG id, or `~` (each entity names its DAG)")),
    request_body = BulkDagRunsBody,
    responses((status = 200, body = BulkResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn bulk_dag_runs(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Mark>,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
    Body(body): Body<BulkDagRunsBody>,
) -> Result<Json<BulkResponse>, ApiError> {
    let deletes = body
        .actions
        .iter()
        .any(|a| matches!(a, DagRunAction::Delete { .. }));
    if deletes && !roles::may(user.role, Action::Clear) {
        return Err(ApiError::Forbidden(roles::refusal(
            &user.username,
            user.role,
            Action::Clear,
        )));
    }
    if dag_id != "~" {
        let mut conn = s.pool.acquire().await?;
        if !upiflow_engine::store::dag_list::exists(&mut conn, &dag_id).await? {
            return Err(super::dags::not_found(&dag_id));
        }
    }
    // Validate every update before changing anything.
    let mut checked = Vec::new();
    for a in &body.actions {
        if let DagRunAction::Update {
            entities,
            update_mask,
            ..
        } = a
        {
            if let Some(bad) = update_mask
                .iter()
                .flatten()
                .find(|m| !["state", "note"].contains(&m.as_str()))
            {
                return Err(ApiError::Unprocessable(format!(
                    "update_mask: `{bad}` is not a field that can be updated (state, note)"
                )));
            }
            let mut one = Vec::new();
            for e in entities {
                one.push(check_update(e, update_mask.as_deref())?);
            }
            checked.push(one);
        }
    }
    let mut checked = checked.into_iter();
    let mut out = BulkResponse::default();
    for a in body.actions {
        match a {
            DagRunAction::Create { .. } => {
                out.create.get_or_insert_default().error(
                    405,
                    "Dag Runs bulk create is not supported. Use the trigger Dag Run endpoint \
                     instead.",
                );
            }
            DagRunAction::Update {
                entities,
                action_on_non_existence,
                ..
            } => {
                let res = out.update.get_or_insert_default();
                let fields = checked.next().unwrap_or_default();
                let mut updates = Vec::new();
                for (e, (state, note)) in entities.iter().zip(fields) {
                    if let Some(key) = run_key(&dag_id, e.dag_id.as_deref(), &e.dag_run_id, res) {
                        updates.push(RunUpdate { key, state, note });
                    }
                }
                let keys: Vec<_> = updates.iter().map(|u| u.key.clone()).collect();
                let missing = missing_runs(&s, &keys).await?;
                if !missing.is_empty() && action_on_non_existence == BulkActionNotOnExistence::Fail
                {
                    res.error(404, not_found_message(&missing));
                    continue;
                }
                for u in updates.into_iter().filter(|u| !missing.contains(&u.key)) {
                    let (d, r) = (&u.key.0, &u.key.1);
                    if let Some(state) = u.state
                        && let Err(e) =
                            mark::mark_run(&s.pool, &s.cache, d, r, state, &user.username).await
                    {
                        res.fail(e.into())?;
                        continue;
                    }
                    if let Some(n) = &u.note
                        && let Err(e) =
                            mark::set_run_note(&s.pool, d, r, n.as_deref(), &user.username).await
                    {
                        res.fail(e.into())?;
                        continue;
                    }
                    res.success.push(format!("{d}.{r}"));
                }
            }
            DagRunAction::Delete {
                entities,
                action_on_non_existence,
            } => {
                let res = out.delete.get_or_insert_default();
                let mut keys = BTreeSet::new();
                for e in &entities {
                    let key = match e {
                        DagRunRef::Id(r) => run_key(&dag_id, None, r, res),
                        DagRunRef::Entity(b) => {
                            run_key(&dag_id, b.dag_id.as_deref(), &b.dag_run_id, res)
                        }
                    };
                    keys.extend(key);
                }
                let keys: Vec<_> = keys.into_iter().collect();
                let missing = missing_runs(&s, &keys).await?;
                if !missing.is_empty() && action_on_non_existence == BulkActionNotOnExistence::Fail
                {
                    res.error(404, not_found_message(&missing));
                    continue;
                }
                for (d, r) in keys.iter().filter(|k| !missing.contains(k)) {
                    match delete_run(&s, d, r).await {
                        Ok(()) => res.success.push(format!("{d}.{r}")),
                        Err(e) => res.fail(e)?,
                    }
                }
            }
        }
    }
    Ok(Json(out))
}

/// Deletes one run as the single DELETE does, except that a running run is a 409 (as
/// Airflow's bulk delete, which deletes only runs in a state a run may be set to).
async fn delete_run(s: &AppState, dag_id: &str, run_id: &str) -> Result<(), ApiError> {
    {
        let mut conn = s.pool.acquire().await?;
        let run = runs::find_run(&mut conn, dag_id, run_id).await?;
        if run.state == upiflow_engine::RunState::Running {
            return Err(ApiError::Conflict(format!(
                "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` cannot be deleted in \
                 running state"
            )));
        }
    }
    upiflow_engine::lifecycle::run::delete(&s.pool, &s.cache, dag_id, run_id).await?;
    Ok(())
}

fn yes() -> bool {
    true
}

/// Airflow's `BulkDAGRunClearBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkDAGRunClearBody)]
struct BulkDagRunClearBody {
    /// The runs to clear (each `dag_id` is needed when the path's DAG id is `~`; `state` and
    /// `note` only `null`: clearing sets the state, the body's `note` the note).
    #[serde(default)]
    dag_runs: Vec<BulkDagRunBody>,
    /// Only list what would be cleared (the default).
    #[serde(default = "yes")]
    #[schema(default = true)]
    dry_run: bool,
    /// Only the failed and upstream_failed task instances.
    #[serde(default)]
    only_failed: bool,
    /// Only `false`: a run keeps the DAG version it was created with, so no task is new.
    #[serde(default)]
    only_new: bool,
    /// Only `false` or `null`: a cleared run keeps the DAG version it was created with.
    run_on_latest_version: Option<bool>,
    /// Sets each cleared run's note (at most 1000 characters).
    #[schema(max_length = 1000)]
    note: Option<String>,
    /// Only `null`: upiflow has no partitioned runs.
    partition_key: Option<String>,
    /// Only `null`: upiflow has no partitioned runs.
    partition_date_start: Option<chrono::DateTime<chrono::Utc>>,
    /// Only `null`: upiflow has no partitioned runs.
    partition_date_end: Option<chrono::DateTime<chrono::Utc>>,
}

/// Airflow's answer to a bulk clear: the task instances (dry run) or the runs cleared.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum BulkClearAnswer {
    TaskInstances(TaskInstanceCollectionResponse),
    Runs(DagRunCollectionResponse),
}

fn check_clear(b: &BulkDagRunClearBody) -> Result<(), ApiError> {
    let refuse = |m: &str| Err(ApiError::Unprocessable(m.into()));
    if b.partition_key.is_some() || b.partition_date_start.is_some() {
        return refuse("partition_key: upiflow has no partitioned runs; send null");
    }
    if b.partition_date_end.is_some() {
        return refuse("partition_date_end: upiflow has no partitioned runs; send null");
    }
    if b.only_new {
        return refuse(
            "only_new: true is not supported: a run keeps the DAG version it was created with, \
             so no task is new to it",
        );
    }
    if b.run_on_latest_version == Some(true) {
        return refuse(
            "run_on_latest_version: true is not supported: a cleared run keeps the DAG version \
             it was created with",
        );
    }
    if let Some(n) = &b.note {
        mark::check_note(n).map_err(|e| ApiError::Unprocessable(format!("note: {e}")))?;
    }
    if b.dag_runs.is_empty() {
        return refuse("dag_runs: name at least one run to clear");
    }
    if let Some(e) = b
        .dag_runs
        .iter()
        .find(|e| e.state.as_ref().is_some_and(Option::is_some))
    {
        return refuse(&format!(
            "dag_runs: `{}`: state must be null; clearing puts the run back to running",
            e.dag_run_id
        ));
    }
    if let Some(e) = b
        .dag_runs
        .iter()
        .find(|e| e.note.as_ref().is_some_and(Option::is_some))
    {
        return refuse(&format!(
            "dag_runs: `{}`: note must be null; the body's note is set on every cleared run",
            e.dag_run_id
        ));
    }
    Ok(())
}

/// Clears the task instances of several runs (all, or with `only_failed` the failed and
/// upstream_failed ones) so they run again, each run back to running, as Airflow's
/// `clear_dag_runs`. With `dry_run` (the default) answers the task instances it would
/// clear; otherwise clears them all at once (through `engine::lifecycle::clear`, all or
/// nothing) and answers the runs. A missing DAG or run is a 404; a selected instance that
/// is running a 409 (Airflow would restart it; upiflow never stops a running try).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/clearDagRuns", tag = "DagRun",
    params(("dag_id" = String, Path, description = "A DAG id, or `~` (each run names its DAG)")),
    request_body = BulkDagRunClearBody,
    responses((status = 200, body = BulkClearAnswer),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn clear_dag_runs(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Clear>,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
    Body(body): Body<BulkDagRunClearBody>,
) -> Result<Json<BulkClearAnswer>, ApiError> {
    check_clear(&body)?;
    let mut conn = s.pool.acquire().await?;
    if dag_id != "~" && !upiflow_engine::store::dag_list::exists(&mut conn, &dag_id).await? {
        return Err(super::dags::not_found(&dag_id));
    }
    let mut keys = Vec::new();
    for e in &body.dag_runs {
        let dag = e.dag_id.as_deref().unwrap_or(&dag_id);
        if dag == "~" {
            return Err(ApiError::BadRequest(format!(
                "When using wildcard in path, dag_id must be specified in request body for \
                 dag_run_id: {}",
                e.dag_run_id
            )));
        }
        let key = (dag.to_string(), e.dag_run_id.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut found = Vec::new();
    for (d, r) in &keys {
        runs::find_run(&mut conn, d, r).await?;
        let selection = ClearSelection {
            dag_id: d.clone(),
            runs: RunScope::One(r.clone()),
            task_ids: None,
            states: body
                .only_failed
                .then(|| vec![Some(TaskState::Failed), Some(TaskState::UpstreamFailed)]),
        };
        found.extend(clear_targets::select(&mut conn, &selection).await?);
    }
    if body.dry_run {
        return Ok(Json(BulkClearAnswer::TaskInstances(
            TaskInstanceCollectionResponse {
                total_entries: found.len() as i64,
                task_instances: ti_responses(&s, &mut conn, &found).await?,
            },
        )));
    }
    let running: Vec<String> = found
        .iter()
        .filter(|t| t.state == Some(TaskState::Running))
        .map(|t| format!("{}.{}.{}", t.dag_id, t.run_id, t.task_id))
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
        for (d, r) in &keys {
            mark::set_run_note(&s.pool, d, r, Some(n), &user.username).await?;
        }
    }
    let mut conn = s.pool.acquire().await?;
    let mut rows = Vec::new();
    for (d, r) in &keys {
        rows.push(runs::find_run(&mut conn, d, r).await?);
    }
    Ok(Json(BulkClearAnswer::Runs(DagRunCollectionResponse {
        total_entries: rows.len() as i64,
        dag_runs: runs::responses(&mut conn, &rows).await?,
    })))
}
