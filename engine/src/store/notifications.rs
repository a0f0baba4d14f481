//! The notification outbox (`notifications`) and its delivery record
//! (`notification_attempts`). SQL and row types only: which notifications a state change
//! causes, and when a failed delivery is tried again, are decided by `crate::notify`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::error::Result;

/// Channel on which "a notification was enqueued" is announced to delivering schedulers.
pub const NOTIFY_CHANNEL: &str = "upiflow_notifications";

/// One outbox row to insert.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: Uuid,
    /// Equal for the same cause: inserting it again is a no-op.
    pub dedupe_key: String,
    /// A `notification_event` value (`on_failure`, ...).
    pub event: &'static str,
    pub notifier: String,
    pub spec: Value,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: Option<String>,
    pub try_number: Option<i32>,
    pub payload: Value,
}

/// Inserts outbox rows in the caller's transaction, skipping those whose `dedupe_key` exists;
/// wakes delivering schedulers (after commit) when any was new. Returns how many were new.
pub async fn enqueue(conn: &mut PgConnection, rows: &[NewNotification]) -> Result<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut inserted = 0;
    for r in rows {
        let done = sqlx::query(
            "INSERT INTO notifications (id, dedupe_key, event, notifier, spec, dag_id, run_id,
                                        task_id, try_number, payload)
             VALUES ($1, $2, $3::notification_event, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(r.id)
        .bind(&r.dedupe_key)
        .bind(r.event)
        .bind(&r.notifier)
        .bind(&r.spec)
        .bind(&r.dag_id)
        .bind(&r.run_id)
        .bind(&r.task_id)
        .bind(r.try_number)
        .bind(&r.payload)
        .execute(&mut *conn)
        .await?;
        inserted += done.rows_affected() as usize;
    }
    if inserted > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut *conn)
            .await?;
    }
    Ok(inserted)
}

/// A claimed notification, to deliver.
#[derive(Debug, Clone, FromRow)]
pub struct Due {
    pub id: Uuid,
    pub notifier: String,
    pub spec: Value,
    pub payload: Value,
    /// The number of this attempt (1 for the first).
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due notifications (skipping rows another scheduler holds) by moving
/// their next attempt `lease_secs` plus the notifier's own timeout ahead and counting the
/// attempt: one short statement, so no transaction stays open while delivering. A claimer
/// that dies mid-delivery leaves the row due again when the lease ends.
pub async fn claim_due(pool: &PgPool, limit: i64, lease_secs: f64) -> Result<Vec<Due>> {
    Ok(sqlx::query_as(
        "UPDATE notifications n
            SET attempts = n.attempts + 1,
                next_attempt_at = now() + make_interval(
                    secs => $2 + coalesce((n.spec->'timeout'->>'secs')::float8, 30))
         WHERE n.id IN (
            SELECT id FROM notifications
            WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= now()
            ORDER BY next_attempt_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED)
         RETURNING n.id, n.notifier, n.spec, n.payload, n.attempts, n.created_at",
    )
    .bind(limit)
    .bind(lease_secs)
    .fetch_all(pool)
    .await?)
}

/// How one attempt ended, and what follows.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered,
    /// Failed; try again in `retry_in_secs`.
    Retry {
        retry_in_secs: f64,
    },
    /// Failed, and no attempt is left.
    GaveUp,
}

/// Records attempt `attempt` of notification `id` and its consequence, unless the row was
/// claimed again meanwhile (its lease ran out): then that claimer records instead. Returns
/// whether it was recorded.
pub async fn record_attempt(
    pool: &PgPool,
    id: Uuid,
    attempt: i32,
    ok: bool,
    detail: &str,
    outcome: &Outcome,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let (delivered, gave_up, retry_in): (bool, bool, f64) = match outcome {
        Outcome::Delivered => (true, false, 0.0),
        Outcome::Retry { retry_in_secs } => (false, false, *retry_in_secs),
        Outcome::GaveUp => (false, true, 0.0),
    };
    let updated = sqlx::query(
        "UPDATE notifications SET
            delivered_at = CASE WHEN $3 THEN now() END,
            gave_up_at = CASE WHEN $4 THEN now() END,
            next_attempt_at = CASE WHEN $3 OR $4 THEN next_attempt_at
                                   ELSE now() + make_interval(secs => $5) END,
            last_error = CASE WHEN $3 THEN last_error ELSE $6 END
         WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL AND gave_up_at IS NULL",
    )
    .bind(id)
    .bind(attempt)
    .bind(delivered)
    .bind(gave_up)
    .bind(retry_in)
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO notification_attempts (notification_id, attempt, ok, detail)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(attempt)
    .bind(ok)
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(updated.rows_affected() == 1)
}

/// Seconds until the next undelivered notification is due (`None` when none waits).
pub async fn next_due_in(pool: &PgPool) -> Result<Option<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT greatest(extract(epoch FROM min(next_attempt_at) - now()), 0)::float8
         FROM notifications WHERE delivered_at IS NULL AND gave_up_at IS NULL",
    )
    .fetch_one(pool)
    .await?)
}

/// A notification as stored, for tests and views.
#[derive(Debug, Clone, FromRow)]
pub struct NotificationRow {
    pub id: Uuid,
    pub dedupe_key: String,
    pub event: String,
    pub notifier: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: Option<String>,
    pub try_number: Option<i32>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub delivered_at: Option<DateTime<Utc>>,
    pub gave_up_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The notifications of a run, oldest first.
pub async fn of_run(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
) -> Result<Vec<NotificationRow>> {
    Ok(sqlx::query_as(
        "SELECT id, dedupe_key, event::text AS event, notifier, dag_id, run_id, task_id,
                try_number, payload, created_at, attempts, delivered_at, gave_up_at, last_error
         FROM notifications WHERE dag_id = $1 AND run_id = $2 ORDER BY created_at, dedupe_key",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_all(conn)
    .await?)
}
