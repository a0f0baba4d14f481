//! A DAG's scheduling cursor (`dags.next_dagrun`) and the lock that lets one scheduler at a
//! time advance it. SQL only; which intervals are due is `crate::timetable`'s.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

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

/// How many runs of `dag_id` are queued.
pub async fn queued_runs(conn: &mut PgConnection, dag_id: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state = 'queued'")
            .bind(dag_id)
            .fetch_one(conn)
            .await?,
    )
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
