//! Clearing: task instances go back to "no status" with a fresh allowance of retries (the
//! try count goes on, as in Airflow), their runs back to running, and trigger rules schedule
//! them again.

use std::collections::BTreeMap;

use sqlx::{PgConnection, PgPool};

use crate::dag::Dag;
use crate::error::{EngineError, Result};
use crate::lifecycle::finish::{BatchResult, settle_all};
use crate::store::dags::VersionCache;
use crate::store::{self, runs, tis};

/// Resets a task instance (and, on request, everything downstream of it) so it runs again.
/// Returns the cleared task ids.
pub async fn clear(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    downstream: bool,
) -> Result<Vec<String>> {
    crate::transient::retry("clear", || {
        clear_once(pool, cache, dag_id, run_id, task_id, downstream)
    })
    .await
}

async fn clear_once(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    downstream: bool,
) -> Result<Vec<String>> {
    let mut tx = pool.begin().await?;
    let run = runs::get(&mut tx, dag_id, run_id).await?;
    let locked = runs::lock_runs(&mut tx, &[run.id]).await?;
    let dag = cache.get(&mut tx, dag_id, &run.dag_hash).await?;
    if dag.task(task_id).is_none() {
        return Err(EngineError::TaskNotFound {
            dag_id: dag_id.into(),
            task_id: task_id.into(),
        });
    }
    let mut targets = vec![task_id.to_string()];
    if downstream {
        targets.extend(
            dag.all_downstream(task_id)
                .into_iter()
                .map(|t| t.id.clone()),
        );
    }
    reset_locked(&mut tx, cache, &locked, &[(run.id, targets.clone())]).await?;
    tx.commit().await?;
    Ok(targets)
}

/// Clears task instances of several runs in one transaction (all or nothing): each
/// `(run_pk, task_ids)` is reset as [`clear`] does, and each run goes back to running.
/// Refuses with a conflict if any of them is running.
pub async fn clear_many(
    pool: &PgPool,
    cache: &VersionCache,
    targets: &[(i64, Vec<String>)],
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    crate::transient::retry("clear", || clear_many_once(pool, cache, targets)).await
}

async fn clear_many_once(
    pool: &PgPool,
    cache: &VersionCache,
    targets: &[(i64, Vec<String>)],
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = targets.iter().map(|(pk, _)| *pk).collect();
    let locked = runs::lock_runs(&mut tx, &ids).await?;
    if let Some(missing) = ids.iter().find(|id| !locked.iter().any(|l| l.0 == **id)) {
        return Err(EngineError::RunPkNotFound(*missing));
    }
    reset_locked(&mut tx, cache, &locked, targets).await?;
    tx.commit().await?;
    Ok(())
}

/// The shared part of clearing, on runs already locked by the caller's transaction (`locked`,
/// as `runs::lock_runs` answered, holds every run of `targets`).
async fn reset_locked(
    tx: &mut PgConnection,
    cache: &VersionCache,
    locked: &[runs::LockedRun],
    targets: &[(i64, Vec<String>)],
) -> Result<()> {
    let (pks, tasks): (Vec<i64>, Vec<&str>) = targets
        .iter()
        .flat_map(|(pk, ts)| ts.iter().map(move |t| (*pk, t.as_str())))
        .unzip();
    let running = tis::running_among(tx, &pks, &tasks).await?;
    if !running.is_empty() {
        return Err(EngineError::ClearWhileRunning(running));
    }
    let mut touched: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
    for (run_pk, task_ids) in targets {
        let (_, _, dag_id, hash) = locked
            .iter()
            .find(|l| l.0 == *run_pk)
            .ok_or(EngineError::RunPkNotFound(*run_pk))?;
        let dag = cache.get(tx, dag_id, hash).await?;
        reset_tasks(tx, *run_pk, &dag, task_ids).await?;
        runs::reopen(tx, *run_pk).await?;
        // A run that runs again gets back the task instances deleted from it (#14 runs2), as
        // Airflow's scheduler recreates them (`verify_integrity`); else their downstream
        // would wait for ever.
        let run = runs::get_by_pk(tx, *run_pk).await?;
        let all: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
        runs::insert_task_instances(tx, &run, &dag, &all).await?;
        touched.insert(*run_pk, (dag_id.as_str(), hash.as_str()));
    }
    let mut out = BatchResult::default();
    settle_all(tx, cache, &touched, &mut out).await?;
    store::notify_wake(tx).await?;
    Ok(())
}

/// Puts task instances of a run back to "no status", each allowed its task's retries anew.
pub async fn reset_tasks(
    conn: &mut PgConnection,
    run_pk: i64,
    dag: &Dag,
    task_ids: &[String],
) -> Result<()> {
    let retries: Vec<i32> = task_ids
        .iter()
        .map(|t| dag.task(t).map_or(0, |d| d.retry.retries as i32))
        .collect();
    tis::reset(conn, run_pk, task_ids, &retries).await
}
