//! Deleting one task instance (Airflow 3.2's `delete_task_instance`).

use sqlx::PgPool;

use crate::error::{EngineError, Result};
use crate::state::{RunState, TaskState};
use crate::store::dags::VersionCache;
use crate::store::{self, runs};

/// What deleting a task instance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiDeleted {
    /// The run was finished: the instance and its tries are gone, the run's state stays.
    Deleted,
    /// The run was queued or running: as Airflow's scheduler recreates the missing task
    /// instances of an active run (its `verify_integrity`), the instance is recreated with
    /// no state and no tries, and trigger rules schedule it again.
    Recreated,
}

/// Deletes the task instance `task_id` of a run with its tries and their records, unless
/// it is running: Airflow would let the running task die on its next heartbeat, but upiflow
/// never stops a running try, so that is a conflict here.
pub async fn delete_task_instance(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<TiDeleted> {
    crate::transient::retry("delete task instance", || {
        delete_once(pool, cache, dag_id, run_id, task_id)
    })
    .await
}

async fn delete_once(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<TiDeleted> {
    let mut tx = pool.begin().await?;
    let run = runs::get(&mut tx, dag_id, run_id).await?;
    let locked = runs::lock_runs(&mut tx, &[run.id]).await?;
    let state = locked.first().map_or(run.state, |l| l.1);
    let not_found = || EngineError::TiNotFound {
        dag_id: dag_id.into(),
        run_id: run_id.into(),
        task_id: task_id.into(),
    };
    let before = runs::delete_task_instance(&mut tx, run.id, task_id)
        .await?
        .ok_or_else(not_found)?;
    if before == Some(TaskState::Running) {
        return Err(EngineError::TiDeleteWhileRunning {
            dag_id: dag_id.into(),
            run_id: run_id.into(),
            task_id: task_id.into(),
        });
    }
    let out = if matches!(state, RunState::Queued | RunState::Running) {
        let dag = cache.get(&mut tx, dag_id, &run.dag_hash).await?;
        runs::insert_task_instances(&mut tx, &run, &dag, &[task_id]).await?;
        if state == RunState::Running {
            super::run::settle(&mut tx, run.id, &dag).await?;
        }
        store::notify_wake(&mut tx).await?;
        TiDeleted::Recreated
    } else {
        TiDeleted::Deleted
    };
    tx.commit().await?;
    Ok(out)
}
