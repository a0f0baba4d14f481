//! Why a task instance is not running yet (Airflow's task-instance dependencies), from
//! what the scheduler and the claim look at: the run's state, the DAG's pause, the trigger
//! rule on the upstream states, the pool's open slots and the task's own concurrency limit.
//! As in Airflow, only a task instance with no state or `scheduled` has any: the others are
//! past the point where these hold it back.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::error::{EngineError, Result};
use crate::lifecycle::rules;
use crate::state::{RunState, TaskState};
use crate::store::dags::VersionCache;
use crate::store::{dag_list, pools, runs, tis};

/// One thing that keeps a task instance from running, named as Airflow names its dep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDep {
    pub name: &'static str,
    pub reason: String,
}

/// What keeps the task instance from running now; empty when nothing does (or when it is
/// already running or finished).
pub async fn failed_deps(
    conn: &mut PgConnection,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<Vec<FailedDep>> {
    let run = runs::get(conn, dag_id, run_id).await?;
    let dag = cache.get(conn, dag_id, &run.dag_hash).await?;
    let task = dag.task(task_id).ok_or_else(|| EngineError::TaskNotFound {
        dag_id: dag_id.into(),
        task_id: task_id.into(),
    })?;
    let states: HashMap<String, Option<TaskState>> = tis::states_of_run(conn, run.id)
        .await?
        .into_iter()
        .collect();
    let state = states.get(task_id).copied().flatten();
    if !matches!(state, None | Some(TaskState::Scheduled)) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    if run.state != RunState::Running {
        out.push(FailedDep {
            name: "Dagrun Running",
            reason: format!(
                "Task instance's dagrun was not in the 'running' state but in the state '{}'.",
                run.state
            ),
        });
    }
    if let Some((true, _)) = dag_list::pause_and_limit(conn, dag_id).await? {
        out.push(FailedDep {
            name: "Dag Not Paused",
            reason: format!("Task's DAG '{dag_id}' is paused."),
        });
    }
    if state.is_none() {
        let ups: Vec<Option<TaskState>> = task
            .upstream
            .iter()
            .map(|u| states.get(u).copied().flatten())
            .collect();
        if rules::decide(task.trigger_rule, &ups).is_none() {
            let listed: Vec<String> = task
                .upstream
                .iter()
                .zip(&ups)
                .map(|(u, s)| format!("{u}: {}", s.map_or("none", |s| s.as_str())))
                .collect();
            out.push(FailedDep {
                name: "Trigger Rule",
                reason: format!(
                    "Task's trigger rule '{}' is not yet satisfied by its upstream tasks' \
                     states ({}).",
                    task.trigger_rule.as_str(),
                    listed.join(", ")
                ),
            });
        }
    }
    match pools::get(conn, &task.pool).await? {
        None => out.push(FailedDep {
            name: "Pool Slots Available",
            reason: format!(
                "Tasks using non-existent pool '{}' will not be scheduled",
                task.pool
            ),
        }),
        Some(p) if p.open() < i64::from(task.pool_slots) => out.push(FailedDep {
            name: "Pool Slots Available",
            reason: format!(
                "Not scheduling since there are {} open slots in pool {} and require {} pool \
                 slots",
                p.open().max(0),
                task.pool,
                task.pool_slots
            ),
        }),
        Some(_) => {}
    }
    if let Some(limit) = task.max_active_tis_per_dag {
        let running = tis::running_of_task(conn, dag_id, task_id).await?;
        if running >= i64::from(limit) {
            out.push(FailedDep {
                name: "Task Concurrency",
                reason: format!(
                    "The max task concurrency has been reached: {running} of at most {limit} \
                     instances of the task are running."
                ),
            });
        }
    }
    Ok(out)
}
