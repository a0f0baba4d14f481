//! What the scheduler reads and records: the DAGs due for a scheduling pass, a DAG's
//! scheduling cursor (`dags.next_dagrun`) and the lock that lets one scheduler at a time
//! advance it, and each scheduler's last loop (read by `/metrics` and the health endpoint).
//! SQL only; which intervals are due is `crate::timetable`'s.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::error::Result;

/// Takes the DAG's scheduling lock for this transaction, or says another scheduler has it.
pub async fn try_lock_dag(conn: &mut PgConnection, dag_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('upiflow.schedule'), hashtext($1))",
    )
    .bind(dag_id)
    .fetch_one(conn)
    .await?)
}

/// Locks the `dags` row and reads its cursor and when it was last unpaused.
pub async fn lock_cursor(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    // The DAG row first, then its runs: the order trigger and backfill use too, so
    // creating runs can never deadlock with them.
    Ok(
        sqlx::query_as("SELECT next_dagrun, unpaused_at FROM dags WHERE dag_id = $1 FOR UPDATE")
            .bind(dag_id)
            .fetch_one(conn)
            .await?,
    )
}

/// How many runs of `dag_id` outside any backfill are queued (a backfill's queue is its own
/// and never holds back the creation of scheduled runs).
pub async fn queued_runs(conn: &mut PgConnection, dag_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM dag_runs
         WHERE dag_id = $1 AND state = 'queued' AND backfill_id IS NULL",
    )
    .bind(dag_id)
    .fetch_one(conn)
    .await?)
}

/// Moves the cursor: the logical date of the next interval to create.
pub async fn set_cursor(conn: &mut PgConnection, dag_id: &str, next: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE dags SET next_dagrun = $2 WHERE dag_id = $1")
        .bind(dag_id)
        .bind(next)
        .execute(conn)
        .await?;
    Ok(())
}

/// `(dag_id, latest_hash)` of every active, unpaused DAG with a schedule and a version.
pub async fn scheduled_dags(pool: &PgPool) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT dag_id, latest_hash FROM dags
         WHERE is_active AND NOT is_paused AND latest_hash IS NOT NULL
           AND schedule IS NOT NULL AND lower(schedule) <> 'none'",
    )
    .fetch_all(pool)
    .await?)
}

/// Records that scheduler `scheduler_id` finished a loop just now, taking `seconds`.
pub async fn record_loop(pool: &PgPool, scheduler_id: &str, seconds: f64) -> Result<()> {
    sqlx::query(
        "INSERT INTO scheduler_loops (scheduler_id, last_loop_at, loop_seconds)
         VALUES ($1, now(), $2)
         ON CONFLICT (scheduler_id) DO UPDATE
         SET last_loop_at = EXCLUDED.last_loop_at, loop_seconds = EXCLUDED.loop_seconds",
    )
    .bind(scheduler_id)
    .bind(seconds)
    .execute(pool)
    .await?;
    Ok(())
}

/// The end of the newest scheduler loop (`scheduler_loops`, written by every scheduler on
/// every pass; `None` if none ever ran) and the database's clock, in one query.
pub async fn scheduler_beat(
    conn: &mut PgConnection,
) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    Ok(
        sqlx::query_as("SELECT (SELECT max(last_loop_at) FROM scheduler_loops), now()")
            .fetch_one(conn)
            .await?,
    )
}
