//! `DELETE /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}` (Airflow
//! 3.2's `delete_task_instance`) and `PATCH .../taskInstances` (`bulk_task_instances`: a
//! `BulkBody` of create / update / delete actions, answered with a `BulkResponse`).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;
use upiflow_engine::lifecycle::ti_delete::{self, TiDeleted};
use utoipa::ToSchema;

use super::mark::{PatchTaskInstanceBody, patch_one};
use super::{MapIndex, check_map_index, find_ti};
use crate::AppState;
use crate::api::bulk_runs::{
    BulkActionNotOnExistence, BulkActionOnExistence, BulkActionResponse, BulkResponse,
};
use crate::api::models::{HTTPExceptionResponse, HTTPValidationError};
use crate::api::query::{NoQuery, Query};
use crate::api::{Body, Ids};
use crate::auth::Allowed;
use crate::error::ApiError;
use crate::roles::{self, Action, may};

/// Deletes one task instance with its tries and their logs' records, as Airflow 3.2
/// (answers 200 and `null`). Unlike Airflow, which lets a running task die on its next
/// heartbeat, a running instance is a 409: upiflow never stops a running try. What happens
/// next depends on the run, as with Airflow's scheduler: in a finished run the instance is
/// gone and the run keeps its state; in a queued or running run the scheduler recreates the
/// missing instance (Airflow's `verify_integrity`), so it comes back with no state and no
/// tries and runs again when its upstream allows.
#[utoipa::path(delete,
    path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        MapIndex),
    responses((status = 200, description = "The task instance is deleted", body = Option<Object>),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn delete(
    State(s): State<AppState>,
    _: Allowed<may::Clear>,
    Ids((dag_id, run_id, task_id)): Ids<(String, String, String)>,
    mut q: Query,
) -> Result<Json<Value>, ApiError> {
    if let Some(m) = q.int("map_index")? {
        check_map_index(m)?;
    }
    q.finish(&[] as &[(&str, &str)])?;
    delete_one(&s, &dag_id, &run_id, &task_id).await?;
    Ok(Json(Value::Null))
}

async fn delete_one(
    s: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<TiDeleted, ApiError> {
    {
        let mut conn = s.pool.acquire().await?;
        find_ti(&mut conn, dag_id, run_id, task_id).await?;
    }
    Ok(ti_delete::delete_task_instance(&s.pool, &s.cache, dag_id, run_id, task_id).await?)
}

/// Airflow's `BulkTaskInstanceBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkTaskInstanceBody {
    task_id: String,
    /// `null` or -1: upiflow has no mapped tasks.
    #[serde(default)]
    map_index: Option<i64>,
    /// The instance's DAG and run; needed when the path has `~`.
    #[serde(default)]
    dag_id: Option<String>,
    #[serde(default)]
    dag_run_id: Option<String>,
    /// `success`, `failed` or `skipped`.
    #[serde(default, deserialize_with = "crate::api::runs::present")]
    #[schema(value_type = Option<String>)]
    new_state: Option<Option<String>>,
    /// At most 1000 characters; `null` removes it.
    #[serde(default, deserialize_with = "crate::api::runs::present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<Option<String>>,
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_downstream: bool,
    #[serde(default)]
    include_future: bool,
    #[serde(default)]
    include_past: bool,
}

/// A task instance to delete: its task id, or a `BulkTaskInstanceBody`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(super) enum TaskInstanceRef {
    Id(String),
    Entity(BulkTaskInstanceBody),
}

/// One action of Airflow's `BulkBody[BulkTaskInstanceBody]`.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum TaskInstanceAction {
    /// Not supported, as in Airflow: task instances come with their runs. (The fields are
    /// read only to check the action's shape; the action is then refused.)
    #[allow(dead_code)]
    Create {
        entities: Vec<BulkTaskInstanceBody>,
        #[serde(default)]
        action_on_existence: BulkActionOnExistence,
    },
    /// Marks and notes each instance, as the single PATCH does.
    Update {
        entities: Vec<BulkTaskInstanceBody>,
        /// Only these fields of each entity.
        #[serde(default)]
        update_mask: Option<Vec<String>>,
        #[serde(default)]
        action_on_non_existence: BulkActionNotOnExistence,
    },
    /// Deletes each instance, as the single DELETE does.
    Delete {
        entities: Vec<TaskInstanceRef>,
        #[serde(default)]
        action_on_non_existence: BulkActionNotOnExistence,
    },
}

/// Airflow's `BulkBody[BulkTaskInstanceBody]`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkBody_BulkTaskInstanceBody_)]
pub(super) struct BulkTaskInstancesBody {
    actions: Vec<TaskInstanceAction>,
}

/// `(dag_id, run_id, task_id)` of an entity (its own DAG and run, else the path's, not
/// `~`), or its error recorded.
fn ti_key(
    path: &(String, String),
    e: Option<&BulkTaskInstanceBody>,
    task_id: &str,
    res: &mut BulkActionResponse,
) -> Option<(String, String, String)> {
    let dag = e.and_then(|e| e.dag_id.as_deref()).unwrap_or(&path.0);
    let run = e.and_then(|e| e.dag_run_id.as_deref()).unwrap_or(&path.1);
    if dag == "~" || run == "~" {
        res.error(
            400,
            format!(
                "When using wildcard in path, dag_id and dag_run_id must be specified in request \
                 body for task_id: {task_id}"
            ),
        );
        return None;
    }
    if let Some(m) = e.and_then(|e| e.map_index).filter(|m| *m != -1) {
        res.error(
            404,
            format!("upiflow has no mapped tasks: no task instance has map_index `{m}`"),
        );
        return None;
    }
    Some((dag.to_string(), run.to_string(), task_id.to_string()))
}

/// Which of `keys` name no task instance.
async fn missing_tis(
    s: &AppState,
    keys: &[(String, String, String)],
) -> Result<Vec<(String, String, String)>, ApiError> {
    let mut conn = s.pool.acquire().await?;
    let mut out = Vec::new();
    for k in keys {
        if upiflow_engine::store::task_views::detail(&mut conn, &k.0, &k.1, &k.2)
            .await?
            .is_none()
        {
            out.push(k.clone());
        }
    }
    Ok(out)
}

fn not_found_message(missing: &[(String, String, String)]) -> String {
    let ids: Vec<String> = missing
        .iter()
        .map(|(d, r, t)| {
            format!("{{'dag_id': '{d}', 'dag_run_id': '{r}', 'task_id': '{t}', 'map_index': -1}}")
        })
        .collect();
    format!(
        "The task instances with these identifiers: [{}] were not found",
        ids.join(", ")
    )
}

/// Applies the actions in order. `update` marks and notes each task instance through the
/// single PATCH (the key `task_id[-1]` on success, as Airflow); `delete` deletes each as the
/// single DELETE (a running one is a 409 in the errors). With `action_on_non_existence:
/// fail` (the default) one missing instance fails the whole action (a 404 in its errors),
/// with `skip` the missing ones are left out. `create` is always an error (405), as in
/// Airflow. A viewer is refused (403).
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
    tag = "Task Instance",
    params(("dag_id" = String, Path, description = "A DAG id, or `~` (each entity names its DAG)"),
        ("dag_run_id" = String, Path, description = "A run id, or `~` (each entity names its run)")),
    request_body = BulkTaskInstancesBody,
    responses((status = 200, body = BulkResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
pub(super) async fn bulk(
    State(s): State<AppState>,
    Allowed(user, _): Allowed<may::Mark>,
    Ids(path): Ids<(String, String)>,
    _: NoQuery,
    Body(body): Body<BulkTaskInstancesBody>,
) -> Result<Json<BulkResponse>, ApiError> {
    let deletes = body
        .actions
        .iter()
        .any(|a| matches!(a, TaskInstanceAction::Delete { .. }));
    if deletes && !roles::may(user.role, Action::Clear) {
        return Err(ApiError::Forbidden(roles::refusal(
            &user.username,
            user.role,
            Action::Clear,
        )));
    }
    let mut out = BulkResponse::default();
    for a in body.actions {
        match a {
            TaskInstanceAction::Create { .. } => {
                out.create
                    .get_or_insert_default()
                    .error(405, "Task instances bulk create is not supported");
            }
            TaskInstanceAction::Update {
                entities,
                update_mask,
                action_on_non_existence,
            } => {
                let res = out.update.get_or_insert_default();
                let mut work = Vec::new();
                for e in entities {
                    if let Some(k) = ti_key(&path, Some(&e), &e.task_id, res) {
                        work.push((k, e));
                    }
                }
                let keys: Vec<_> = work.iter().map(|(k, _)| k.clone()).collect();
                let missing = missing_tis(&s, &keys).await?;
                if !missing.is_empty() && action_on_non_existence == BulkActionNotOnExistence::Fail
                {
                    res.error(404, not_found_message(&missing));
                    continue;
                }
                for (k, e) in work.into_iter().filter(|(k, _)| !missing.contains(k)) {
                    let q = Query::new(
                        update_mask
                            .iter()
                            .flatten()
                            .map(|m| ("update_mask".to_string(), m.clone()))
                            .collect(),
                    );
                    let patch = PatchTaskInstanceBody {
                        new_state: e.new_state,
                        note: e.note,
                        include_upstream: e.include_upstream,
                        include_downstream: e.include_downstream,
                        include_future: e.include_future,
                        include_past: e.include_past,
                    };
                    let task = k.2.clone();
                    match patch_one(&s, &user.username, k, q, &patch).await {
                        Ok(_) => res.success.push(format!("{task}[-1]")),
                        Err(err) => res.fail(err)?,
                    }
                }
            }
            TaskInstanceAction::Delete {
                entities,
                action_on_non_existence,
            } => {
                let res = out.delete.get_or_insert_default();
                let mut work = Vec::new();
                for e in &entities {
                    let (entity, task_id) = match e {
                        TaskInstanceRef::Id(t) => (None, t.as_str()),
                        TaskInstanceRef::Entity(b) => (Some(b), b.task_id.as_str()),
                    };
                    if let Some(k) = ti_key(&path, entity, task_id, res) {
                        // Airflow's key: `task_id[map_index]` when the entity names an index.
                        let name = match entity.and_then(|b| b.map_index) {
                            Some(m) => format!("{task_id}[{m}]"),
                            None => task_id.to_string(),
                        };
                        if !work.iter().any(|(w, _)| *w == k) {
                            work.push((k, name));
                        }
                    }
                }
                let keys: Vec<_> = work.iter().map(|(k, _)| k.clone()).collect();
                let missing = missing_tis(&s, &keys).await?;
                if !missing.is_empty() && action_on_non_existence == BulkActionNotOnExistence::Fail
                {
                    res.error(404, not_found_message(&missing));
                    continue;
                }
                for ((d, r, t), name) in work.into_iter().filter(|(k, _)| !missing.contains(k)) {
                    match delete_one(&s, &d, &r, &t).await {
                        Ok(_) => res.success.push(name),
                        Err(err) => res.fail(err)?,
                    }
                }
            }
        }
    }
    Ok(Json(out))
}
