//! The Postgres store. Functions take a `&mut PgConnection` so callers compose them into
//! one transaction; the unique keys in `migrations/` make duplicates impossible, not unlikely.

pub mod cluster;
pub mod dags;
pub mod runs;
pub mod tis;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::error::Result;

/// Channel on which "something became runnable" is announced to every worker.
pub const WAKE_CHANNEL: &str = "upiflow_wake";

/// Opens a pool; retries for a while so a database that is still starting is not fatal.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await?;
    Ok(pool)
}

/// Applies `migrations/` (idempotent; concurrent callers serialise on sqlx's advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("../migrations").run(pool).await?;
    Ok(())
}

/// Wakes every listening worker after the current transaction commits.
pub async fn notify_wake(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}
