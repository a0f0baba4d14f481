//! Run deadlines: the runs found unfinished past their `deadline_at`, and recording that
//! they missed it. SQL only; `crate::lifecycle::deadline` decides what follows.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::runs::RunRow;
use crate::error::Result;

/// Up to `limit` unfinished runs whose deadline passed at `now` and that are not yet recorded
/// as late, oldest deadline first, locked (`SKIP LOCKED`: another scheduler may be handling
/// some, and a run being finished right now is left for the next pass).
pub async fn lock_missed(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(
        "SELECT * FROM dag_runs
         WHERE deadline_at <= $1 AND deadline_missed_at IS NULL
           AND state IN ('queued', 'running')
         ORDER BY deadline_at, id
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Records that the (locked) run missed its deadline, noticed at `now`.
pub async fn set_missed(conn: &mut PgConnection, run_pk: i64, now: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE dag_runs SET deadline_missed_at = $2 WHERE id = $1")
        .bind(run_pk)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records, for a run that just finished (locked by the caller), that it finished after its
/// deadline if no scheduler had noticed yet; returns the run if this call recorded it.
pub async fn set_missed_if_finished_late(
    conn: &mut PgConnection,
    run_pk: i64,
) -> Result<Option<RunRow>> {
    Ok(sqlx::query_as(
        "UPDATE dag_runs SET deadline_missed_at = end_date
         WHERE id = $1 AND deadline_missed_at IS NULL AND end_date > deadline_at
         RETURNING *",
    )
    .bind(run_pk)
    .fetch_optional(&mut *conn)
    .await?)
}
