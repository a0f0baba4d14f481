//! Backfills as first-class records: runs of type `backfill` for every interval whose logical
//! date lies in `[from, to]`, sharing the DAG's `max_active_runs`; intervals that already
//! succeeded are skipped unless asked. Asking again for the same backfill resumes it.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

use crate::dag::Dag;
use crate::error::{EngineError, Result};
use crate::state::{RunState, RunType};
use crate::store::dags::VersionCache;
use crate::store::runs::{self, NewRun};
use crate::store::{self, dags};

/// Most intervals one backfill may cover.
pub const MAX_INTERVALS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Request {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Re-run intervals whose run failed.
    pub rerun_failed: bool,
    /// Re-run every interval, successful ones included.
    pub reset: bool,
    pub created_by: String,
    /// At most this many of the backfill's runs at once (the DAG's `max_active_runs`
    /// holds as well); `None`: only the DAG's.
    pub max_active_runs: Option<u32>,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct BackfillRow {
    pub id: i64,
    pub dag_id: String,
    pub from_date: DateTime<Utc>,
    pub to_date: DateTime<Utc>,
    pub rerun_failed: bool,
    pub reset: bool,
    pub created_by: String,
    pub state: String,
    pub total: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub max_active_runs: Option<i32>,
}

/// How far a backfill has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub running: i64,
    pub queued: i64,
}

impl Progress {
    pub fn done(&self) -> i64 {
        self.success + self.failed
    }

    pub fn is_finished(&self) -> bool {
        self.done() >= self.total
    }
}

/// Why a backfill request is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "DAG `{0}` has no schedule, so it has no intervals to backfill; trigger it with --logical-date instead"
    )]
    NoSchedule(String),
    #[error("--from must not be after --to")]
    FromAfterTo,
    #[error("the range covers more than {0} intervals; split it")]
    TooManyIntervals(usize),
    #[error("no interval of `{dag_id}` starts between {} and {}", .from.to_rfc3339(), .to.to_rfc3339())]
    NoIntervals {
        dag_id: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// The intervals `(start, end)` whose start lies in `[from, to]`.
pub fn intervals(
    dag: &Dag,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let s = dag.schedule();
    if s.is_none() {
        return Err(BackfillError::NoSchedule(dag.dag_id.clone()).into());
    }
    if from > to {
        return Err(BackfillError::FromAfterTo.into());
    }
    let tz = dag.tz();
    let mut out = Vec::new();
    let mut t = match s.prev_at_or_before(from, tz) {
        Some(p) if p == from => p,
        _ => match s.next_after(from, tz) {
            Some(n) => n,
            None => return Ok(out),
        },
    };
    while t <= to {
        let Some(end) = s.next_after(t, tz) else {
            break;
        };
        out.push((t, end));
        if out.len() > MAX_INTERVALS {
            return Err(BackfillError::TooManyIntervals(MAX_INTERVALS).into());
        }
        t = end;
    }
    Ok(out)
}

/// Creates the backfill (or finds the same one still running, to resume it), creates the
/// runs it needs and starts what may start. Runs that succeeded are left alone unless
/// `reset`; failed ones are re-run with `rerun_failed` or `reset`.
pub async fn start(
    pool: &PgPool,
    cache: &VersionCache,
    dag: &Dag,
    req: &Request,
) -> Result<BackfillRow> {
    let wanted = intervals(dag, req.from, req.to)?;
    if wanted.is_empty() {
        return Err(BackfillError::NoIntervals {
            dag_id: dag.dag_id.clone(),
            from: req.from,
            to: req.to,
        }
        .into());
    }
    crate::transient::retry("backfill", || start_once(pool, cache, dag, req, &wanted)).await
}

async fn start_once(
    pool: &PgPool,
    cache: &VersionCache,
    dag: &Dag,
    req: &Request,
    wanted: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<BackfillRow> {
    // Lock order: the DAG row (taken by `sync`) before any run row, as everywhere.
    let mut tx = pool.begin().await?;
    let hash = dags::sync(&mut tx, dag).await?;
    // One writer per DAG at a time, so two identical requests resume one backfill.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('upiflow.backfill'), hashtext($1))")
        .bind(&dag.dag_id)
        .execute(&mut *tx)
        .await?;
    let existing: Option<BackfillRow> = sqlx::query_as(
        "SELECT id, dag_id, from_date, to_date, rerun_failed, reset, created_by, state::text AS state,
                total, created_at, completed_at, max_active_runs
         FROM backfills WHERE dag_id = $1 AND from_date = $2 AND to_date = $3
           AND rerun_failed = $4 AND reset = $5 AND state = 'running'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(&dag.dag_id)
    .bind(req.from)
    .bind(req.to)
    .bind(req.rerun_failed)
    .bind(req.reset)
    .fetch_optional(&mut *tx)
    .await?;
    let resuming = existing.is_some();
    let backfill = match existing {
        Some(b) => b,
        None => {
            sqlx::query_as(
                "INSERT INTO backfills (dag_id, from_date, to_date, rerun_failed, reset, created_by, total,
                                        max_active_runs)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING id, dag_id, from_date, to_date, rerun_failed, reset, created_by,
                           state::text AS state, total, created_at, completed_at, max_active_runs",
            )
            .bind(&dag.dag_id)
            .bind(req.from)
            .bind(req.to)
            .bind(req.rerun_failed)
            .bind(req.reset)
            .bind(&req.created_by)
            .bind(wanted.len() as i32)
            .bind(req.max_active_runs.map(|n| n as i32))
            .fetch_one(&mut *tx)
            .await?
        }
    };
    // Asking again with another limit changes the running backfill's limit.
    let backfill = if resuming && backfill.max_active_runs != req.max_active_runs.map(|n| n as i32)
    {
        sqlx::query("UPDATE backfills SET max_active_runs = $2 WHERE id = $1")
            .bind(backfill.id)
            .bind(req.max_active_runs.map(|n| n as i32))
            .execute(&mut *tx)
            .await?;
        BackfillRow {
            max_active_runs: req.max_active_runs.map(|n| n as i32),
            ..backfill
        }
    } else {
        backfill
    };
    let starts: Vec<DateTime<Utc>> = wanted.iter().map(|(s, _)| *s).collect();
    let have: Vec<(i64, DateTime<Utc>, RunState, Option<i64>)> = sqlx::query_as(
        "SELECT id, logical_date, state, backfill_id FROM dag_runs
         WHERE dag_id = $1 AND logical_date = ANY($2)",
    )
    .bind(&dag.dag_id)
    .bind(&starts)
    .fetch_all(&mut *tx)
    .await?;
    let have: std::collections::HashMap<DateTime<Utc>, (i64, RunState, Option<i64>)> = have
        .into_iter()
        .map(|(id, ld, st, b)| (ld, (id, st, b)))
        .collect();
    let mut to_reset = Vec::new();
    for (start, end) in wanted {
        match have.get(start) {
            None => {
                let new = NewRun {
                    run_id: runs::make_run_id(RunType::Backfill, *start),
                    logical_date: *start,
                    data_interval: (*start, *end),
                    run_type: RunType::Backfill,
                    conf: serde_json::json!({}),
                };
                if let Some(run) = runs::create(&mut tx, dag, &hash, &new).await? {
                    sqlx::query("UPDATE dag_runs SET backfill_id = $2 WHERE id = $1")
                        .bind(run.id)
                        .bind(backfill.id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            // Resuming must not re-run what this backfill itself already re-ran.
            Some((_, _, Some(b))) if resuming && *b == backfill.id => {}
            Some((id, RunState::Failed, _)) if req.rerun_failed || req.reset => to_reset.push(*id),
            Some((id, RunState::Success, _)) if req.reset => to_reset.push(*id),
            Some(_) => {}
        }
    }
    for run_pk in to_reset {
        reset_run(&mut tx, cache, run_pk, backfill.id).await?;
    }
    crate::lifecycle::run::start_queued(&mut tx, cache, &dag.dag_id).await?;
    store::notify_wake(&mut tx).await?;
    tx.commit().await?;
    Ok(backfill)
}

/// Puts a finished run back in the queue with every task instance cleared.
async fn reset_run(
    conn: &mut sqlx::PgConnection,
    cache: &VersionCache,
    run_pk: i64,
    backfill_id: i64,
) -> Result<()> {
    let locked = runs::lock_runs(conn, &[run_pk]).await?;
    let Some((_, _, dag_id, hash)) = locked.into_iter().next() else {
        return Ok(());
    };
    let dag = cache.get(conn, &dag_id, &hash).await?;
    let ids: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
    crate::lifecycle::clear::reset_tasks(conn, run_pk, &dag, &ids).await?;
    sqlx::query(
        "UPDATE dag_runs SET state = 'queued', start_date = NULL, end_date = NULL, backfill_id = $2
         WHERE id = $1",
    )
    .bind(run_pk)
    .bind(backfill_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: i64) -> Result<BackfillRow> {
    crate::transient::retry("read backfill", || get_once(pool, id)).await
}

async fn get_once(pool: &PgPool, id: i64) -> Result<BackfillRow> {
    sqlx::query_as(
        "SELECT id, dag_id, from_date, to_date, rerun_failed, reset, created_by, state::text AS state,
                total, created_at, completed_at, max_active_runs FROM backfills WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(EngineError::BackfillNotFound(id))
}

/// Counts the runs in the backfill's range by state (runs created by it and runs it found).
pub async fn progress(pool: &PgPool, b: &BackfillRow) -> Result<Progress> {
    crate::transient::retry("backfill progress", || progress_once(pool, b)).await
}

async fn progress_once(pool: &PgPool, b: &BackfillRow) -> Result<Progress> {
    let (success, failed, running, queued): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'success'), count(*) FILTER (WHERE state = 'failed'),
                count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'queued')
         FROM dag_runs WHERE dag_id = $1 AND logical_date BETWEEN $2 AND $3",
    )
    .bind(&b.dag_id)
    .bind(b.from_date)
    .bind(b.to_date)
    .fetch_one(pool)
    .await?;
    Ok(Progress {
        total: b.total as i64,
        success,
        failed,
        running,
        queued,
    })
}

/// Marks running backfills whose runs have all finished as `success` or `failed`.
pub async fn close_finished(pool: &PgPool) -> Result<u64> {
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
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
