//! Workers: registration, heartbeats and saying a worker stopped (what the reaper reads).

use sqlx::PgPool;

use crate::error::Result;

/// Registers (or re-registers) a worker as alive.
pub async fn register(pool: &PgPool, worker_id: &str, hostname: &str, pid: i32) -> Result<()> {
    sqlx::query(
        "INSERT INTO workers (worker_id, hostname, pid) VALUES ($1, $2, $3)
         ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL",
    )
    .bind(worker_id)
    .bind(hostname)
    .bind(pid)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a heartbeat of a worker.
pub async fn beat(pool: &PgPool, worker_id: &str) -> Result<()> {
    sqlx::query("UPDATE workers SET heartbeat_at = now() WHERE worker_id = $1")
        .bind(worker_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records that a worker stopped (its running tries may be retried at once).
pub async fn stopped(pool: &PgPool, worker_id: &str) -> Result<()> {
    sqlx::query("UPDATE workers SET stopped_at = now() WHERE worker_id = $1")
        .bind(worker_id)
        .execute(pool)
        .await?;
    Ok(())
}
