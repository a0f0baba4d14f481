//! The Postgres store: every SQL statement against the orchestrator's tables, and the row
//! types they read. Nothing else in upiflow writes SQL against these tables.
//!
//! It holds SQL and row types only and decides nothing: which state a task instance moves to,
//! when a run starts or finishes, what a clear resets are decided by `crate::lifecycle` (and
//! `crate::timetable`, `crate::backfill`), which compose these functions into transactions.
//! It imports nothing of the engine above it (only `crate::state`, `crate::dag`'s model and
//! `crate::error`). Functions take a `&mut PgConnection` so callers compose them into one
//! transaction (those on a `&PgPool` are one statement); the unique keys in `migrations/` make
//! duplicates impossible, not unlikely.

pub mod api_keys;
pub mod backfill_list;
pub mod backfills;
pub mod clean;
pub mod clear_targets;
pub mod dag_files;
pub mod dag_list;
pub mod dag_meta;
pub mod dag_overview;
pub mod dag_versions;
pub mod dags;
pub mod deadlines;
pub mod event_log;
pub mod favorites;
pub mod filters;
pub mod grid;
pub mod logs;
pub mod mark;
pub mod metrics;
pub mod missed;
pub mod notifications;
pub mod pools;
pub mod runs;
pub mod scheduling;
pub mod secrets;
pub mod sign_in;
pub mod task_views;
pub mod tis;
pub mod users;
pub mod workers;

use std::time::Duration;

use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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

/// Relays `NOTIFY upiflow_wake` from any process to `wake` until `stop`; reconnects after
/// errors (callers also poll, so a lost connection only slows them down).
pub async fn relay_wakeups(pool: PgPool, wake: Arc<Notify>, stop: CancellationToken) {
    relay(pool, WAKE_CHANNEL, wake, stop).await
}

/// Relays `NOTIFY channel` from any process to `wake` until `stop` (as [`relay_wakeups`]).
pub async fn relay(
    pool: PgPool,
    channel: &'static str,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let connect = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = stop.cancelled() => return,
            l = connect => match l {
                Ok(l) => l,
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for wake-ups; polling meanwhile");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                    }
                }
            },
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = listener.recv() => match msg {
                    Ok(_) => wake.notify_one(),
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                        wake.notify_one();
                        break;
                    }
                }
            }
        }
    }
}

/// Creates a new, empty database named `PREFIX_<random>` on the server of `admin_url` (a
/// role allowed to create databases) and returns its name and URL. For tests and benchmarks
/// that each want a database of their own.
pub async fn create_scratch_database(admin_url: &str, prefix: &str) -> Result<(String, String)> {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(admin_url, 1).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    Ok((name.clone(), format!("{base}/{name}")))
}
