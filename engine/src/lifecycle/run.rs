//! A run's lifecycle after it is created: starting queued runs within the limits, and
//! settling a run (trigger rules decide its waiting task instances; it finishes when every
//! instance is final).

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::dag::Dag;
use crate::error::Result;
use crate::lifecycle::rules;
use crate::state::{RunState, TaskState};
use crate::store::dags::VersionCache;
use crate::store::{runs, tis};

/// Moves queued runs of `dag_id` to running, oldest logical date first, while the DAG is not
/// paused and fewer than `max_active_runs` run (and a backfill's runs within its own limit).
/// Their first tasks are scheduled at once. Returns how many runs started.
pub async fn start_queued(
    conn: &mut PgConnection,
    cache: &VersionCache,
    dag_id: &str,
) -> Result<usize> {
    start_queued_locking(conn, cache, dag_id, false).await
}

/// [`start_queued`] for callers that already hold run row locks (finishing tries): they
/// must not wait for the DAG row, because the DAG row is always taken *before* run rows
/// (trigger, backfill, the scheduler), and waiting here would close a cycle. If another
/// transaction holds the DAG row, it or the scheduler's next pass (which the finisher's
/// wake-up triggers) starts the runs instead.
pub async fn start_queued_if_unlocked(
    conn: &mut PgConnection,
    cache: &VersionCache,
    dag_id: &str,
) -> Result<usize> {
    start_queued_locking(conn, cache, dag_id, true).await
}

async fn start_queued_locking(
    conn: &mut PgConnection,
    cache: &VersionCache,
    dag_id: &str,
    skip_locked: bool,
) -> Result<usize> {
    let Some((paused, max_active)) = runs::lock_dag_for_start(conn, dag_id, skip_locked).await?
    else {
        return Ok(0);
    };
    if paused {
        return Ok(0);
    }
    let started = runs::start_oldest_queued(conn, dag_id, max_active).await?;
    for (id, hash) in &started {
        let dag = cache.get(conn, dag_id, hash).await?;
        settle(conn, *id, &dag).await?;
    }
    Ok(started.len())
}

/// What settling a run changed.
#[derive(Debug, Default, Clone)]
pub struct Settled {
    /// Task instances that became runnable.
    pub scheduled: usize,
    /// Their task ids.
    pub scheduled_tasks: Vec<String>,
    /// Set when the run just reached its final state.
    pub finished: Option<RunState>,
}

/// Applies trigger rules to the run's waiting task instances and, when everything is done,
/// finishes the run. The caller holds the run's row lock (see `store::runs::lock_runs`).
pub async fn settle(conn: &mut PgConnection, run_pk: i64, dag: &Dag) -> Result<Settled> {
    let rows = tis::states_of_run(conn, run_pk).await?;
    let mut states: HashMap<String, Option<TaskState>> = rows.into_iter().collect();
    let decisions = rules::evaluate(dag, &states);
    let mut out = Settled::default();
    if !decisions.is_empty() {
        out.scheduled_tasks = decisions
            .iter()
            .filter(|(_, s)| *s == TaskState::Scheduled)
            .map(|(id, _)| id.clone())
            .collect();
        out.scheduled = out.scheduled_tasks.len();
        let pairs: Vec<(&str, TaskState)> =
            decisions.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        tis::decide_waiting(conn, run_pk, &pairs).await?;
        for (id, s) in decisions {
            states.insert(id, Some(s));
        }
    }
    if let Some(final_state) = rules::run_outcome(dag, &states)
        && runs::finish_if_running(conn, run_pk, final_state).await?
    {
        out.finished = Some(final_state);
        // The DAG's on_failure / on_success, in the transaction that finished the run.
        crate::notify::run_finished(conn, dag, run_pk, final_state).await?;
        // Finished after its deadline before any scheduler noticed: late all the same.
        super::deadline::finished_late(conn, dag, run_pk).await?;
    }
    Ok(out)
}

/// Deletes a run and everything recorded of it (Airflow's `delete_dag_run`), unless one of
/// its task instances is running: Airflow deletes the run and lets the running task die on
/// its next heartbeat, but upiflow never stops a running try, so that is a conflict here.
/// A queued run's slot frees up, so queued runs of the DAG may start.
pub async fn delete(
    pool: &sqlx::PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
) -> Result<()> {
    crate::transient::retry("delete run", || delete_once(pool, cache, dag_id, run_id)).await
}

async fn delete_once(
    pool: &sqlx::PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Lock order: the DAG row before run rows, as everywhere (start_queued takes it).
    runs::lock_dag_for_start(&mut tx, dag_id, false).await?;
    let run = runs::get(&mut tx, dag_id, run_id).await?;
    runs::lock_runs(&mut tx, &[run.id]).await?;
    let running = runs::running_tasks(&mut tx, run.id).await?;
    if !running.is_empty() {
        return Err(crate::error::EngineError::DeleteWhileRunning {
            dag_id: dag_id.into(),
            run_id: run_id.into(),
            running,
        });
    }
    runs::delete(&mut tx, run.id).await?;
    start_queued_locking(&mut tx, cache, dag_id, false).await?;
    crate::store::notify_wake(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}
