//! Backfills as first-class records: runs of type `backfill` for every interval whose logical
//! date lies in `[from, to]`, at most the backfill's own `max_active_runs` of them at once
//! (else the DAG's), never counted against the scheduled runs' limit; their tasks come after
//! other runs' unless the backfill does not yield. Intervals that already succeeded are
//! skipped unless asked. Asking again for the same backfill resumes it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::dag::Dag;
use crate::error::Result;
use crate::state::{RunState, RunType};
use crate::store::backfills::{self, NewBackfill};
use crate::store::dags::VersionCache;
use crate::store::runs::{self, NewRun};
use crate::store::{self, dags};

pub use crate::store::backfills::{BackfillRow, BackfillState};

/// Most intervals one backfill may cover. Every run of a backfill is created by the request
/// that asks for it, in one transaction (so a backfill is all there or not at all, and a
/// second identical request resumes it); the cap keeps that request to seconds. A longer
/// range is refused with the count, to be split into several backfills.
pub const MAX_INTERVALS: usize = 10_000;

/// How far past [`MAX_INTERVALS`] a refused range is counted for its message, so that
/// refusing a range of millions of intervals stays cheap too.
const COUNT_LIMIT: usize = 10 * MAX_INTERVALS;

#[derive(Debug, Clone)]
pub struct Request {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Re-run intervals whose run failed.
    pub rerun_failed: bool,
    /// Re-run every interval, successful ones included.
    pub reset: bool,
    pub created_by: String,
    /// At most this many of the backfill's runs at once; `None`: the DAG's
    /// `max_active_runs`. Either way its runs do not count against the scheduled runs'.
    pub max_active_runs: Option<u32>,
    /// Its tasks wait behind those of other runs (the default); `false`: they compete by
    /// priority weight alone.
    pub yield_to_scheduled: bool,
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
    /// `count` is exact up to ten times the cap, else `None` (more than that).
    #[error(
        "the range covers {} intervals, more than the {cap} one backfill may create; split it into several backfills",
        .count.map_or_else(|| format!("more than {COUNT_LIMIT}"), |n| n.to_string())
    )]
    TooManyIntervals { cap: usize, count: Option<usize> },
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
            // Count on (without keeping them) to tell how many, up to COUNT_LIMIT.
            let mut count = out.len();
            let mut t = end;
            while t <= to && count <= COUNT_LIMIT {
                let Some(end) = s.next_after(t, tz) else {
                    break;
                };
                count += 1;
                t = end;
            }
            return Err(BackfillError::TooManyIntervals {
                cap: MAX_INTERVALS,
                count: (count <= COUNT_LIMIT).then_some(count),
            }
            .into());
        }
        t = end;
    }
    Ok(out)
}

/// Creates the backfill (or finds the same one still running, to resume it), creates the
/// runs it needs and starts what may start. Runs that succeeded are left alone unless
/// `reset`; failed ones are re-run with `rerun_failed` or `reset`. The runs use the version of
/// the DAG the database holds (`dags.latest_hash`), as scheduled runs do; `dag` is recorded
/// only if the database does not know the DAG yet (see `dags::register`).
pub async fn start(
    pool: &PgPool,
    cache: &VersionCache,
    dag: &Dag,
    req: &Request,
) -> Result<BackfillRow> {
    // Usually the caller's definition is the database's current one: refuse a bad range
    // before touching the database (recomputed below if the database holds another version).
    let local = wanted(dag, req)?;
    crate::transient::retry("backfill", || start_once(pool, cache, dag, req, &local)).await
}

/// The intervals of `req`'s range, refusing an empty one.
fn wanted(dag: &Dag, req: &Request) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let wanted = intervals(dag, req.from, req.to)?;
    if wanted.is_empty() {
        return Err(BackfillError::NoIntervals {
            dag_id: dag.dag_id.clone(),
            from: req.from,
            to: req.to,
        }
        .into());
    }
    Ok(wanted)
}

async fn start_once(
    pool: &PgPool,
    cache: &VersionCache,
    dag: &Dag,
    req: &Request,
    local: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<BackfillRow> {
    // Lock order: the DAG row (taken by `register`) before any run row, as everywhere.
    let mut tx = pool.begin().await?;
    let version = dags::register(&mut tx, dag).await?;
    let hash = version.latest_hash;
    let current: Arc<Dag>;
    let recomputed;
    let (dag, wanted) = if hash == version.hash {
        (dag, local)
    } else {
        current = cache.get(&mut tx, &dag.dag_id, &hash).await?;
        recomputed = wanted(&current, req)?;
        (&*current, &recomputed[..])
    };
    // One writer per DAG at a time, so two identical requests resume one backfill.
    backfills::lock_dag(&mut tx, &dag.dag_id).await?;
    let key = NewBackfill {
        dag_id: &dag.dag_id,
        from: req.from,
        to: req.to,
        rerun_failed: req.rerun_failed,
        reset: req.reset,
        created_by: &req.created_by,
        total: wanted.len() as i32,
        max_active_runs: req.max_active_runs.map(|n| n as i32),
        yield_to_scheduled: req.yield_to_scheduled,
    };
    let existing = backfills::find_running(&mut tx, &key).await?;
    let resuming = existing.is_some();
    let backfill = match existing {
        Some(b) => b,
        None => backfills::insert(&mut tx, &key).await?,
    };
    // Asking again with other limits changes the running backfill's.
    let backfill = if resuming
        && (backfill.max_active_runs != key.max_active_runs
            || backfill.yield_to_scheduled != key.yield_to_scheduled)
    {
        backfills::set_limits(
            &mut tx,
            backfill.id,
            key.max_active_runs,
            key.yield_to_scheduled,
        )
        .await?;
        BackfillRow {
            max_active_runs: key.max_active_runs,
            yield_to_scheduled: key.yield_to_scheduled,
            ..backfill
        }
    } else {
        backfill
    };
    let starts: Vec<DateTime<Utc>> = wanted.iter().map(|(s, _)| *s).collect();
    let have = backfills::runs_at(&mut tx, &dag.dag_id, &starts).await?;
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
                    backfills::attach_run(&mut tx, run.id, backfill.id).await?;
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
    backfills::mark_yielding(&mut tx, backfill.id).await?;
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
    backfills::requeue_run(conn, run_pk, backfill_id).await
}

/// The backfill `id` (`NotFound` when there is none).
pub async fn get(pool: &PgPool, id: i64) -> Result<BackfillRow> {
    crate::transient::retry("read backfill", || async move {
        let mut conn = pool.acquire().await?;
        backfills::get(&mut conn, id).await
    })
    .await
}

/// Counts the runs in the backfill's range by state (runs created by it and runs it found).
pub async fn progress(pool: &PgPool, b: &BackfillRow) -> Result<Progress> {
    let c = crate::transient::retry("backfill progress", || async move {
        let mut conn = pool.acquire().await?;
        backfills::count_runs(&mut conn, &b.dag_id, b.from_date, b.to_date).await
    })
    .await?;
    Ok(Progress {
        total: b.total as i64,
        success: c.success,
        failed: c.failed,
        running: c.running,
        queued: c.queued,
    })
}

/// Marks running backfills whose runs have all finished as `success` or `failed`.
pub async fn close_finished(pool: &PgPool) -> Result<u64> {
    let mut conn = pool.acquire().await?;
    backfills::close_finished(&mut conn).await
}

/// The logical dates a backfill of `req` would run, oldest first, without creating anything
/// (Airflow's `create_backfill_dry_run`): every interval of the range that has no run yet,
/// and those whose run failed (`rerun_failed` or `reset`) or succeeded (`reset`). Running and
/// queued runs are left alone, as [`start`] leaves them.
pub async fn dry_run(pool: &PgPool, dag: &Dag, req: &Request) -> Result<Vec<DateTime<Utc>>> {
    let wanted = wanted(dag, req)?;
    let starts: Vec<DateTime<Utc>> = wanted.iter().map(|(s, _)| *s).collect();
    let mut conn = pool.acquire().await?;
    let have: std::collections::HashMap<DateTime<Utc>, RunState> =
        backfills::runs_at(&mut conn, &dag.dag_id, &starts)
            .await?
            .into_iter()
            .map(|(_, ld, st, _)| (ld, st))
            .collect();
    Ok(starts
        .into_iter()
        .filter(|s| match have.get(s) {
            None => true,
            Some(RunState::Failed) => req.rerun_failed || req.reset,
            Some(RunState::Success) => req.reset,
            Some(_) => false,
        })
        .collect())
}

/// Pauses (or with `paused == false` unpauses) the backfill `id`, as Airflow 3's
/// `pause_backfill` / `unpause_backfill`: a paused backfill starts none of its queued runs
/// (running ones go on); unpausing lets them start again at once. `BackfillCompleted` once
/// it is completed (Airflow's 409), `BackfillNotFound` when there is none.
pub async fn set_paused(
    pool: &PgPool,
    cache: &VersionCache,
    id: i64,
    paused: bool,
) -> Result<BackfillRow> {
    crate::transient::retry("pause backfill", || async move {
        let mut tx = pool.begin().await?;
        let b = backfills::get(&mut tx, id).await?;
        // Lock order: the DAG row before the backfill's (and any run row), as `start` takes
        // them; `start_queued` below takes the DAG row.
        runs::lock_dag_for_start(&mut tx, &b.dag_id, false).await?;
        let mut b = backfills::lock(&mut tx, id).await?;
        if b.completed_at.is_some() {
            return Err(crate::error::EngineError::BackfillCompleted(id));
        }
        if b.is_paused != paused {
            b = backfills::set_paused(&mut tx, id, paused).await?;
        }
        if !paused {
            crate::lifecycle::run::start_queued(&mut tx, cache, &b.dag_id).await?;
            store::notify_wake(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(b)
    })
    .await
}

/// Cancels the backfill `id`, as Airflow 3's `cancel_backfill`: pauses it so it starts no
/// more runs, fails its queued runs so they never run, leaves its running runs to finish,
/// and completes it (`completed_at` now; upiflow's state `failed`). `BackfillCompleted`
/// once it is completed (Airflow's 409), `BackfillNotFound` when there is none.
pub async fn cancel(pool: &PgPool, id: i64) -> Result<BackfillRow> {
    crate::transient::retry("cancel backfill", || async move {
        let mut tx = pool.begin().await?;
        let b = backfills::get(&mut tx, id).await?;
        runs::lock_dag_for_start(&mut tx, &b.dag_id, false).await?;
        let b = backfills::lock(&mut tx, id).await?;
        if b.completed_at.is_some() {
            return Err(crate::error::EngineError::BackfillCompleted(id));
        }
        let failed = backfills::fail_queued_runs(&mut tx, id).await?;
        let b = backfills::complete_cancelled(&mut tx, id).await?;
        tx.commit().await?;
        tracing::info!(backfill = id, dag_id = %b.dag_id, queued_runs_failed = failed, "backfill cancelled");
        Ok(b)
    })
    .await
}
