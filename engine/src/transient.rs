//! Transient database failures and the one retry policy for them.
//!
//! A deadlock (`40P01`), a serialization failure (`40001`), a dropped connection or a
//! Postgres restart says nothing about the request itself: running the same transaction
//! again is the right answer. Every engine operation a user or a loop depends on goes
//! through [`retry`], so none of them fails on one; only errors that would repeat reach
//! the caller.

use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};

/// How long an operation keeps retrying before the transient error is returned. Long
/// enough to ride out a Postgres restart (`pg_ctl restart -m fast` takes a few seconds).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
const FIRST_WAIT: Duration = Duration::from_millis(20);
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Whether `e` is a failure that running the same transaction again can cure.
pub fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_transient_code(&c)),
        // A connection that broke mid-statement (the server restarted or was killed), or
        // no connection to be had while it is down.
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        // A server that went away mid-message leaves the protocol half-read.
        sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// SQLSTATEs that mean "try again": serialization failure, deadlock, every connection
/// exception (class 08), the server shutting down or starting (57P01-57P03), too many
/// connections (53300).
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"
    ) || code.starts_with("08")
}

impl EngineError {
    /// Whether the operation that failed with this error may simply be run again.
    pub fn is_transient(&self) -> bool {
        self.db_error().is_some_and(is_transient_sqlx)
    }
}

/// Runs `op` until it succeeds, fails with an error that is not transient, or has kept
/// failing transiently for [`GIVE_UP_AFTER`]. `op` must be one whole transaction (or
/// idempotent), since a failed attempt is run again from the start.
pub async fn retry<T, F, Fut>(what: &str, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_for(what, GIVE_UP_AFTER, op).await
}

/// [`retry`] with its own time budget.
pub async fn retry_for<T, F, Fut>(what: &str, budget: Duration, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut wait = FIRST_WAIT;
    let mut attempt = 1u32;
    loop {
        match op().await {
            Err(e) if e.is_transient() && started.elapsed() < budget => {
                let jittered = wait.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                let cause = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                if attempt >= 3 {
                    tracing::warn!(operation = what, attempt, error = %e, %cause, wait = ?jittered, "transient database error; retrying");
                } else {
                    tracing::debug!(operation = what, attempt, error = %e, %cause, wait = ?jittered, "transient database error; retrying");
                }
                tokio::time::sleep(jittered).await;
                wait = (wait * 2).min(LONGEST_WAIT);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlocks_serialization_failures_and_lost_connections_are_transient() {
        for code in [
            "40P01", "40001", "57P01", "57P03", "08006", "08003", "53300",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "22P02", "57014"] {
            assert!(!is_transient_code(code), "{code}");
        }
        assert!(is_transient_sqlx(&sqlx::Error::PoolTimedOut));
        assert!(is_transient_sqlx(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!is_transient_sqlx(&sqlx::Error::RowNotFound));
        assert!(!EngineError::DagNotFound("x".into()).is_transient());
    }

    #[tokio::test]
    async fn retry_runs_again_after_a_transient_error_and_stops_on_a_lasting_one() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let got = retry("test", || async {
            let calls = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if calls < 3 {
                Err(EngineError::Db(sqlx::Error::PoolTimedOut))
            } else {
                Ok(calls)
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);

        let mut calls = 0;
        let err = retry("test", || {
            calls += 1;
            async { Err::<(), _>(EngineError::DagNotFound("bad".into())) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, EngineError::DagNotFound(_)));
        assert_eq!(calls, 1, "a lasting error is not retried");

        let mut calls = 0;
        let err = retry_for("test", Duration::from_millis(100), || {
            calls += 1;
            async { Err::<(), _>(EngineError::Db(sqlx::Error::PoolTimedOut)) }
        })
        .await
        .unwrap_err();
        assert!(err.is_transient());
        assert!(calls >= 2, "retried within its budget, then gave up");
    }
}
