//! The database a `sql` or `quality` task runs on: the orchestrator's (the default), or the
//! Postgres-protocol database of the connection named by `conn = "ID"`.
//!
//! One pool per connection per process, kept across tries and closed when idle (no
//! connection is held between runs). Pools are keyed by the connection's id and URL, so a
//! changed connection (a new password, another host) gets a new pool on its next try.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use upiflow_engine::error::{EngineError, ErrorKind};
use upiflow_engine::{TaskContext, TaskError};

/// Connections a connection's pool opens at most (tasks of one worker share it).
const MAX_CONNECTIONS: u32 = 8;
/// A connection unused this long is closed; a pool with none left holds nothing open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pools by connection id, with the URL each was opened for.
fn pools() -> &'static Mutex<HashMap<String, (String, PgPool)>> {
    static POOLS: OnceLock<Mutex<HashMap<String, (String, PgPool)>>> = OnceLock::new();
    POOLS.get_or_init(Mutex::default)
}

/// How a task's messages name its database.
pub(crate) fn shown(conn: Option<&str>) -> String {
    match conn {
        Some(id) => format!("connection `{id}`"),
        None => "the orchestrator's database".to_string(),
    }
}

/// The pool for `conn`, `None` being the orchestrator's database. The connection's secrets
/// are hidden in the try's log before anything can show them.
pub(crate) async fn pool(ctx: &TaskContext, conn: Option<&str>) -> Result<PgPool, TaskError> {
    let Some(conn_id) = conn else {
        return Ok(ctx.pool.clone());
    };
    let connection = ctx
        .secrets
        .connection(conn_id)
        .await
        .map_err(|e| lookup_error(format!("could not read connection `{conn_id}`: {e}"), &e))?
        .ok_or_else(|| {
            TaskError::Fatal(format!(
                "connection `{conn_id}` does not exist (`upiflow connections add {conn_id} --uri URI`, or UPIFLOW_CONN_{})",
                conn_id.to_uppercase()
            ))
        })?;
    for text in connection.secret_texts() {
        ctx.log.hide(&text);
    }
    let url = connection.postgres_url().map_err(|e| {
        TaskError::Fatal(format!(
            "connection `{conn_id}` cannot be used as a Postgres database: {e}"
        ))
    })?;
    cached(conn_id, &url)
}

/// A lookup's error: bad input (an invalid id, an undecryptable value) is not fixed by another
/// try; the database being away may be.
pub(crate) fn lookup_error(message: String, e: &EngineError) -> TaskError {
    match e.kind() {
        ErrorKind::Unavailable | ErrorKind::Internal => TaskError::Retryable(message),
        _ => TaskError::Fatal(message),
    }
}

fn cached(conn_id: &str, url: &str) -> Result<PgPool, TaskError> {
    let mut pools = pools().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((known, pool)) = pools.get(conn_id)
        && known == url
        && !pool.is_closed()
    {
        return Ok(pool.clone());
    }
    let options: PgConnectOptions = url.parse().map_err(|e| {
        TaskError::Fatal(format!(
            "connection `{conn_id}` does not give a usable Postgres URL: {e}"
        ))
    })?;
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .idle_timeout(IDLE_TIMEOUT)
        .acquire_timeout(Duration::from_secs(30))
        // A task's SQL taking long is its nature: no slow-statement warnings.
        .connect_lazy_with(options.disable_statement_logging());
    if let Some((_, old)) = pools.insert(conn_id.to_string(), (url.to_string(), pool.clone())) {
        // Tries still using the old pool finish with it; it closes once they return.
        tokio::spawn(async move { old.close().await });
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_changed_url_gets_a_new_pool_and_the_same_url_the_same_pool() {
        let a = cached("t_pool_cache", "postgres://u:p@127.0.0.1:1/a").expect("pool");
        let again = cached("t_pool_cache", "postgres://u:p@127.0.0.1:1/a").expect("pool");
        assert_eq!(again.connect_options().get_database(), Some("a"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!a.is_closed(), "the same URL keeps its pool");
        let b = cached("t_pool_cache", "postgres://u:p@127.0.0.1:1/b").expect("pool");
        assert_eq!(b.connect_options().get_database(), Some("b"));
        // The replaced pool is closed in the background.
        for _ in 0..50 {
            if a.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(a.is_closed(), "the old pool is closed");
        assert!(!b.is_closed());
    }

    #[test]
    fn a_url_that_is_not_postgres_is_a_fatal_error() {
        let e = cached("t_bad_url", "not a url").expect_err("rejected");
        assert!(
            matches!(e, TaskError::Fatal(ref m) if m.contains("t_bad_url")),
            "{e:?}"
        );
    }
}
