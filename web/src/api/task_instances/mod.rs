//! Task instances of runs, their tries and logs, and clearing, as in Airflow 3:
//! `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances[/{task_id}]` ([`list`]),
//! `.../{task_id}/tries` ([`tries`]), `.../{task_id}/logs/{n}` ([`logs`], its continuation
//! token in [`log_token`]), `POST /api/v2/dags/{dag_id}/clearTaskInstances` ([`clear`]) and
//! `PATCH .../taskInstances/{task_id}[/dry_run]` ([`mark`]).
//! This module holds what they share: the response shapes and the lookups.

mod batch;
mod bulk;
mod clear;
mod deps;
mod list;
mod log_token;
mod logs;
mod mapped;
mod mark;
mod tries;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use upiflow_engine::Dag;
use upiflow_engine::store::task_views::{self, TiDetail};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::models::{self, DagVersionResponse, TaskInstanceState};
use crate::AppState;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list::list, bulk::bulk))
        .routes(routes!(list::one, mark::patch, bulk::delete))
        .routes(routes!(tries::tries))
        .routes(routes!(logs::logs))
        .routes(routes!(clear::clear))
        .routes(routes!(mark::patch_dry_run))
        .routes(routes!(tries::try_detail))
        .routes(routes!(mapped::one, mark::patch_mapped))
        .routes(routes!(mark::patch_mapped_dry_run))
        .routes(routes!(mapped::tries))
        .routes(routes!(mapped::try_detail))
        .routes(routes!(mapped::list_mapped))
        .routes(routes!(deps::dependencies))
        .routes(routes!(deps::dependencies_by_map_index))
        .routes(routes!(batch::list_batch))
}

/// Airflow's `TaskInstanceResponse`. upiflow has no queues, mapped tasks, executors or
/// triggers: those fields hold Airflow's defaults or `null`.
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
    pub(in crate::api) task_instances: Vec<TaskInstanceResponse>,
    pub(in crate::api) total_entries: i64,
}

/// The DAG definitions a set of task instances refer to, loaded once each.
struct Context {
    dags: HashMap<(String, String), Arc<Dag>>,
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
        Ok(Self { dags })
    }

    fn kind(&self, dag_id: &str, hash: &str, task_id: &str) -> Option<String> {
        self.dags
            .get(&(dag_id.to_string(), hash.to_string()))
            .and_then(|d| d.task(task_id))
            .map(|t| t.kind.clone())
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
        pool: t.pool.clone(),
        pool_slots: t.pool_slots,
        queue: Some("default".into()),
        priority_weight: Some(t.priority_weight),
        operator: kind.clone(),
        operator_name: kind,
        queued_when: t.queued_at,
        scheduled_when: None,
        pid: t.pid,
        executor: None,
        executor_config: "{}".into(),
        note: t.note.clone(),
        rendered_map_index: None,
        rendered_fields: json!({}),
        trigger: None,
        triggerer_job: None,
        dag_version: models::listed_version(&t.dag_id, &t.dag_hash, &t.version),
    }
}

pub(in crate::api) async fn ti_responses(
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

/// The task instance, or a 404 naming the run or the task that is missing.
async fn find_ti(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<TiDetail, ApiError> {
    crate::api::runs::find_run(conn, dag_id, run_id).await?;
    task_views::detail(conn, dag_id, run_id, task_id)
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
