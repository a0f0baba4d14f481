//! Backfill records (`backfills`) and the run-row writes a backfill makes. SQL and row types
//! only: which intervals a backfill covers and which runs it re-runs is `crate::backfill`'s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection};

use crate::error::{EngineError, Result};
use crate::state::RunState;

/// State of a backfill (Postgres enum `backfill_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "backfill_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum BackfillState {
    Running,
    Success,
    Failed,
}

impl BackfillState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for BackfillState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the state's name, as the field compared when it was a string.
impl PartialEq<&str> for BackfillState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A row of `backfills`.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct BackfillRow {
    pub id: i64,
    pub dag_id: String,
    pub from_date: DateTime<Utc>,
    pub to_date: DateTime<Utc>,
    pub rerun_failed: bool,
    pub reset: bool,
    pub created_by: String,
    pub state: BackfillState,
    pub total: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub max_active_runs: Option<i32>,
    /// Its runs' tasks come after other runs' in the claim.
    pub yield_to_scheduled: bool,
    /// Paused: none of its queued runs starts until it is unpaused.
    pub is_paused: bool,
    /// When it was last paused, unpaused or cancelled (`None`: never).
    pub updated_at: Option<DateTime<Utc>>,
}

/// What identifies a backfill request, and the limits a new one is created with.
#[derive(Debug, Clone)]
pub struct NewBackfill<'a> {
    pub dag_id: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub rerun_failed: bool,
    pub reset: bool,
    pub created_by: &'a str,
    pub total: i32,
    pub max_active_runs: Option<i32>,
    pub yield_to_scheduled: bool,
}

/// Runs in a backfill's range, counted by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow)]
pub struct RunCounts {
    pub success: i64,
    pub failed: i64,
    pub running: i64,
    pub queued: i64,
}

const COLUMNS: &str = "id, dag_id, from_date, to_date, rerun_failed, reset, created_by, state,
                       total, created_at, completed_at, max_active_runs, yield_to_scheduled,
                       is_paused, updated_at";

/// Takes the per-DAG backfill lock for this transaction (one backfill writer per DAG).
pub async fn lock_dag(conn: &mut PgConnection, dag_id: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('upiflow.backfill'), hashtext($1))")
        .bind(dag_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The newest running backfill with exactly these dates and flags, if any.
pub async fn find_running(
    conn: &mut PgConnection,
    b: &NewBackfill<'_>,
) -> Result<Option<BackfillRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS}
         FROM backfills WHERE dag_id = $1 AND from_date = $2 AND to_date = $3
           AND rerun_failed = $4 AND reset = $5 AND state = 'running'
         ORDER BY id DESC LIMIT 1"
    ))
    .bind(b.dag_id)
    .bind(b.from)
    .bind(b.to)
    .bind(b.rerun_failed)
    .bind(b.reset)
    .fetch_optional(conn)
    .await?)
}

/// Inserts a running backfill.
pub async fn insert(conn: &mut PgConnection, b: &NewBackfill<'_>) -> Result<BackfillRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO backfills (dag_id, from_date, to_date, rerun_failed, reset, created_by, total,
                                max_active_runs, yield_to_scheduled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING {COLUMNS}"
    ))
    .bind(b.dag_id)
    .bind(b.from)
    .bind(b.to)
    .bind(b.rerun_failed)
    .bind(b.reset)
    .bind(b.created_by)
    .bind(b.total)
    .bind(b.max_active_runs)
    .bind(b.yield_to_scheduled)
    .fetch_one(conn)
    .await?)
}

/// Sets a backfill's own limit of active runs and whether it yields to scheduled runs.
pub async fn set_limits(
    conn: &mut PgConnection,
    id: i64,
    max_active_runs: Option<i32>,
    yield_to_scheduled: bool,
) -> Result<()> {
    sqlx::query("UPDATE backfills SET max_active_runs = $2, yield_to_scheduled = $3 WHERE id = $1")
        .bind(id)
        .bind(max_active_runs)
        .bind(yield_to_scheduled)
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs of `dag_id` at these logical dates: (run pk, logical date, state, backfill id).
pub async fn runs_at(
    conn: &mut PgConnection,
    dag_id: &str,
    logical_dates: &[DateTime<Utc>],
) -> Result<Vec<(i64, DateTime<Utc>, RunState, Option<i64>)>> {
    Ok(sqlx::query_as(
        "SELECT id, logical_date, state, backfill_id FROM dag_runs
         WHERE dag_id = $1 AND logical_date = ANY($2)",
    )
    .bind(dag_id)
    .bind(logical_dates)
    .fetch_all(conn)
    .await?)
}

/// Marks a run as created by the backfill `backfill_id`.
pub async fn attach_run(conn: &mut PgConnection, run_pk: i64, backfill_id: i64) -> Result<()> {
    sqlx::query("UPDATE dag_runs SET backfill_id = $2 WHERE id = $1")
        .bind(run_pk)
        .bind(backfill_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives the task instances of the backfill's runs its `yield_to_scheduled` (kept on each
/// task instance, `task_instances.yields`, so the claim orders by an index).
pub async fn mark_yielding(conn: &mut PgConnection, backfill_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE task_instances ti SET yields = b.yield_to_scheduled
         FROM dag_runs r JOIN backfills b ON b.id = r.backfill_id
         WHERE r.backfill_id = $1 AND ti.run_pk = r.id
           AND ti.yields IS DISTINCT FROM b.yield_to_scheduled",
    )
    .bind(backfill_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts a (locked) run back in the queue as a run of the backfill `backfill_id`.
pub async fn requeue_run(conn: &mut PgConnection, run_pk: i64, backfill_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE dag_runs SET state = 'queued', start_date = NULL, end_date = NULL, backfill_id = $2
         WHERE id = $1",
    )
    .bind(run_pk)
    .bind(backfill_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The backfill `id` (`NotFound` when there is none).
pub async fn get(conn: &mut PgConnection, id: i64) -> Result<BackfillRow> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM backfills WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(EngineError::BackfillNotFound(id))
}

/// Counts the runs of `dag_id` whose logical date lies in `[from, to]`, by state.
pub async fn count_runs(
    conn: &mut PgConnection,
    dag_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<RunCounts> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'success') AS success,
                count(*) FILTER (WHERE state = 'failed') AS failed,
                count(*) FILTER (WHERE state = 'running') AS running,
                count(*) FILTER (WHERE state = 'queued') AS queued
         FROM dag_runs WHERE dag_id = $1 AND logical_date BETWEEN $2 AND $3",
    )
    .bind(dag_id)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await?)
}

/// Marks running backfills whose runs have all finished as `success` or `failed`.
pub async fn close_finished(conn: &mut PgConnection) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE backfills b SET completed_at = now(),
            state = CASE WHEN p.failed > 0 THEN 'failed'::backfill_state ELSE 'success' END
         FROM (SELECT b2.id,
                      count(r.id) FILTER (WHERE r.state = 'failed') AS failed,
                      count(r.id) FILTER (WHERE r.state IN ('success', 'failed')) AS done
               FROM backfills b2
               LEFT JOIN dag_runs r ON r.dag_id = b2.dag_id
                                   AND r.logical_date BETWEEN b2.from_date AND b2.to_date
               WHERE b2.state = 'running'
               GROUP BY b2.id) p
         WHERE b.id = p.id AND p.done >= b.total",
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Locks the backfill `id` for this transaction (`NotFound` when there is none).
pub async fn lock(conn: &mut PgConnection, id: i64) -> Result<BackfillRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backfills WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(EngineError::BackfillNotFound(id))
}

/// Sets whether the backfill `id` is paused.
pub async fn set_paused(conn: &mut PgConnection, id: i64, paused: bool) -> Result<BackfillRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE backfills SET is_paused = $2, updated_at = now() WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(paused)
    .fetch_one(conn)
    .await?)
}

/// Fails the queued runs the backfill `id` created or re-ran (their task instances are
/// left as they are: a failed run is never claimed from); answers how many.
pub async fn fail_queued_runs(conn: &mut PgConnection, id: i64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE dag_runs SET state = 'failed', end_date = now()
         WHERE backfill_id = $1 AND state = 'queued'",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Completes the backfill `id` as cancelled: paused, `failed`, completed now.
pub async fn complete_cancelled(conn: &mut PgConnection, id: i64) -> Result<BackfillRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE backfills SET is_paused = true, state = 'failed', completed_at = now(),
                updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_one(conn)
    .await?)
}
