//! Deadlines (Airflow 3.1's deadline alerts): a run still unfinished at its `deadline_at`
//! (computed from the DAG's `deadline` when the run was created) is marked late once and its
//! DAG's `on_deadline_miss` notifiers are enqueued in the same transaction, so a scheduler
//! restart or a second scheduler never fires it twice, and no miss is lost. A run that
//! finishes after its deadline before any scheduler noticed is recorded late by the
//! transaction that finishes it ([`finished_late`]); a run that finishes in time is never
//! late (as Airflow prunes a finished run's pending deadlines and keeps passed ones).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::dag::Dag;

use crate::error::Result;
use crate::notify::{self, NotifyEvent};
use crate::store::dags::VersionCache;
use crate::store::deadlines;

/// Runs handled per transaction; a pass loops until none are left.
const BATCH: i64 = 100;

/// Marks every run whose deadline passed at `now` late and enqueues its `on_deadline_miss`
/// notifications. Returns how many runs it marked.
pub async fn fire_missed(pool: &PgPool, cache: &VersionCache, now: DateTime<Utc>) -> Result<usize> {
    let mut total = 0;
    loop {
        let marked = crate::transient::retry("fire missed deadlines", || async {
            let mut tx = pool.begin().await?;
            let runs = deadlines::lock_missed(&mut tx, now, BATCH).await?;
            for run in &runs {
                let dag = cache.get(&mut tx, &run.dag_id, &run.dag_hash).await?;
                notify::enqueue_run_event(&mut tx, &dag, run, NotifyEvent::OnDeadlineMiss).await?;
                deadlines::set_missed(&mut tx, run.id, now).await?;
                tracing::warn!(
                    dag_id = %run.dag_id,
                    run_id = %run.run_id,
                    deadline = %run.deadline_at.map(|d| d.to_rfc3339()).unwrap_or_default(),
                    "run missed its deadline"
                );
            }
            tx.commit().await?;
            Ok(runs.len())
        })
        .await?;
        total += marked;
        if (marked as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// For a run the caller just finished (its row locked): if it ended after its deadline and no
/// scheduler had noticed, records it late and enqueues `on_deadline_miss` in the same
/// transaction. Costs nothing for DAGs without a deadline.
pub async fn finished_late(conn: &mut PgConnection, dag: &Dag, run_pk: i64) -> Result<bool> {
    if dag.deadline.is_none() {
        return Ok(false);
    }
    let Some(run) = deadlines::set_missed_if_finished_late(conn, run_pk).await? else {
        return Ok(false);
    };
    notify::enqueue_run_event(conn, dag, &run, NotifyEvent::OnDeadlineMiss).await?;
    tracing::warn!(dag_id = %run.dag_id, run_id = %run.run_id, "run finished after its deadline");
    Ok(true)
}
