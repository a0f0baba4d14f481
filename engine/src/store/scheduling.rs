//! What the scheduler loop reads and records about itself: the DAGs due for a scheduling
//! pass, and each scheduler's last loop (read by `/metrics` and the health endpoint).

use sqlx::PgPool;

use crate::error::Result;

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
