//! Task instances and their tries: claiming with `FOR UPDATE SKIP LOCKED`, recording
//! outcomes with durable retries, failing the tries of dead workers, clearing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool};

use crate::error::{EngineError, Result};
use crate::executor::retry;
use crate::state::{RunState, TaskState, TryOutcome};
use crate::store::dags::VersionCache;
use crate::store::runs::{self, Settled};

/// A task instance this worker now owns, with what its try needs to know.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub max_tries: i32,
    pub try_id: i64,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: Value,
    pub dag_hash: String,
}

/// Claims up to `limit` runnable task instances (scheduled, or up for retry and due) of
/// running runs of unpaused DAGs, and opens a try for each.
pub async fn claim(conn: &mut PgConnection, worker: &str, limit: i64) -> Result<Vec<Claimed>> {
    Ok(sqlx::query_as(
        "WITH picked AS (
            SELECT ti.id FROM task_instances ti
            JOIN dag_runs r ON r.id = ti.run_pk AND r.state = 'running'
            JOIN dags d ON d.dag_id = r.dag_id AND NOT d.is_paused
            WHERE ti.state = 'scheduled'
               OR (ti.state = 'up_for_retry' AND ti.next_retry_at <= now())
            ORDER BY ti.id
            LIMIT $2
            FOR UPDATE OF ti SKIP LOCKED
         ), claimed AS (
            UPDATE task_instances ti
            SET state = 'running', try_number = ti.try_number + 1, worker = $1,
                start_date = now(), end_date = NULL, next_retry_at = NULL
            FROM picked WHERE ti.id = picked.id
            RETURNING ti.id, ti.run_pk, ti.dag_id, ti.run_id, ti.task_id, ti.try_number, ti.max_tries
         ), tries AS (
            INSERT INTO task_tries (ti_id, try_number, worker)
            SELECT id, try_number, $1 FROM claimed
            RETURNING id AS try_id, ti_id
         )
         SELECT c.*, t.try_id, r.logical_date, r.data_interval_start, r.data_interval_end,
                r.conf, r.dag_hash
         FROM claimed c JOIN tries t ON t.ti_id = c.id JOIN dag_runs r ON r.id = c.run_pk
         ORDER BY c.id",
    )
    .bind(worker)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// How one try ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub ti_id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub dag_hash: String,
    pub task_id: String,
    pub try_id: i64,
    pub try_number: i32,
    pub max_tries: i32,
    /// The worker that ran it; the outcome is only recorded if it still owns the try.
    pub worker: String,
    pub outcome: TryOutcome,
    pub error: Option<String>,
    /// `false` for failures no retry can fix.
    pub retryable: bool,
}

/// What recording a batch of outcomes changed.
#[derive(Debug, Default, Clone)]
pub struct BatchResult {
    pub recorded: usize,
    /// Tries whose outcome was dropped: the try had been failed by someone else meanwhile.
    pub stale: usize,
    pub scheduled: usize,
    pub finished_runs: Vec<(i64, RunState)>,
}

/// Records outcomes in one transaction: each task instance moves to success, up_for_retry
/// (with its next try's time stored) or failed; then trigger rules run for every touched run.
pub async fn finish_batch(
    pool: &PgPool,
    cache: &VersionCache,
    batch: &[Finished],
) -> Result<BatchResult> {
    let mut out = BatchResult::default();
    if batch.is_empty() {
        return Ok(out);
    }
    let mut tx = pool.begin().await?;
    let mut run_ids: Vec<i64> = batch.iter().map(|f| f.run_pk).collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    runs::lock_runs(&mut tx, &run_ids).await?;

    let mut ids = Vec::with_capacity(batch.len());
    let mut tries = Vec::with_capacity(batch.len());
    let mut workers = Vec::with_capacity(batch.len());
    let mut states = Vec::with_capacity(batch.len());
    let mut delays = Vec::with_capacity(batch.len());
    for f in batch {
        let dag = cache.get(&mut tx, &f.dag_id, &f.dag_hash).await?;
        let (state, delay) = if f.outcome == TryOutcome::Success {
            (TaskState::Success, 0.0)
        } else if f.retryable && f.try_number < f.max_tries {
            let policy = dag
                .task(&f.task_id)
                .map(|t| t.retry.clone())
                .unwrap_or_default();
            let d = retry::delay(&policy, f.try_number.max(1) as u32);
            (TaskState::UpForRetry, d.as_secs_f64())
        } else {
            (TaskState::Failed, 0.0)
        };
        ids.push(f.ti_id);
        tries.push(f.try_number);
        workers.push(f.worker.as_str());
        states.push(state);
        delays.push(delay);
    }
    let updated: Vec<i64> = sqlx::query_scalar(
        "UPDATE task_instances ti SET state = u.state, end_date = now(),
            next_retry_at = CASE WHEN u.state = 'up_for_retry'
                                 THEN now() + u.delay * interval '1 second' END
         FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::ti_state[], $5::float8[])
              AS u(id, try_number, worker, state, delay)
         WHERE ti.id = u.id AND ti.state = 'running'
           AND ti.try_number = u.try_number AND ti.worker = u.worker
         RETURNING ti.id",
    )
    .bind(&ids)
    .bind(&tries)
    .bind(&workers)
    .bind(&states)
    .bind(&delays)
    .fetch_all(&mut *tx)
    .await?;
    out.recorded = updated.len();
    out.stale = batch.len() - updated.len();

    let recorded: Vec<&Finished> = batch
        .iter()
        .filter(|f| updated.contains(&f.ti_id))
        .collect();
    let try_ids: Vec<i64> = recorded.iter().map(|f| f.try_id).collect();
    let outcomes: Vec<TryOutcome> = recorded.iter().map(|f| f.outcome).collect();
    let errors: Vec<Option<&str>> = recorded.iter().map(|f| f.error.as_deref()).collect();
    sqlx::query(
        "UPDATE task_tries t SET ended_at = now(), outcome = u.outcome, error = u.error
         FROM UNNEST($1::bigint[], $2::try_outcome[], $3::text[]) AS u(id, outcome, error)
         WHERE t.id = u.id AND t.ended_at IS NULL",
    )
    .bind(&try_ids)
    .bind(&outcomes)
    .bind(&errors)
    .execute(&mut *tx)
    .await?;

    let mut touched: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
    for f in &recorded {
        touched.insert(f.run_pk, (&f.dag_id, &f.dag_hash));
    }
    settle_all(&mut tx, cache, &touched, &mut out).await?;
    tx.commit().await?;
    Ok(out)
}

async fn settle_all(
    tx: &mut PgConnection,
    cache: &VersionCache,
    touched: &BTreeMap<i64, (&str, &str)>,
    out: &mut BatchResult,
) -> Result<()> {
    let mut dags_with_free_slot = Vec::new();
    for (&run_pk, &(dag_id, hash)) in touched {
        let dag = cache.get(tx, dag_id, hash).await?;
        let Settled {
            scheduled,
            finished,
        } = runs::settle(tx, run_pk, &dag).await?;
        out.scheduled += scheduled;
        if let Some(state) = finished {
            out.finished_runs.push((run_pk, state));
            dags_with_free_slot.push(dag_id);
        }
    }
    dags_with_free_slot.sort_unstable();
    dags_with_free_slot.dedup();
    for dag_id in dags_with_free_slot {
        if runs::start_queued_if_unlocked(tx, cache, dag_id).await? > 0 {
            out.scheduled += 1;
        }
    }
    if out.scheduled > 0 || !out.finished_runs.is_empty() {
        crate::store::notify_wake(tx).await?;
    }
    Ok(())
}

/// The running tries (with what failing them needs) that a lost-try query filters.
const LOST_TRIES: &str = "SELECT ti.id AS ti_id, ti.run_pk, ti.try_number, ti.max_tries, ti.dag_id,
        r.dag_hash, ti.task_id, ti.worker, tr.id AS try_id
     FROM task_instances ti
     JOIN dag_runs r ON r.id = ti.run_pk
     JOIN task_tries tr ON tr.ti_id = ti.id AND tr.try_number = ti.try_number";

#[derive(FromRow)]
struct Zombie {
    ti_id: i64,
    run_pk: i64,
    try_number: i32,
    max_tries: i32,
    dag_id: String,
    dag_hash: String,
    task_id: String,
    worker: String,
    try_id: i64,
}

/// Fails (and so retries) the running tries of workers whose heartbeat is older than
/// `threshold`, or that said they stopped. Safe to call from many processes at once.
pub async fn reap_zombies(
    pool: &PgPool,
    cache: &VersionCache,
    threshold: Duration,
) -> Result<usize> {
    let candidates: Vec<Zombie> = sqlx::query_as(&format!(
        "{LOST_TRIES}
             LEFT JOIN workers w ON w.worker_id = ti.worker
             WHERE ti.state = 'running'
               AND (w.worker_id IS NULL OR w.stopped_at IS NOT NULL
                    OR w.heartbeat_at < now() - $1 * interval '1 second')"
    ))
    .bind(threshold.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let n = fail_lost(pool, cache, candidates, |w| {
        format!("worker {w} stopped heart-beating while running this try")
    })
    .await?;
    if n > 0 {
        tracing::warn!(
            tries = n,
            "failed the tries of workers that stopped heart-beating"
        );
    }
    Ok(n)
}

/// Fails (and so retries) the tries that the database says `worker` runs, started more than
/// `threshold` ago, which the worker itself does not run (not in `local`): their claim
/// committed but its answer never reached the worker.
pub async fn reap_orphans(
    pool: &PgPool,
    cache: &VersionCache,
    worker: &str,
    local: &[i64],
    threshold: Duration,
) -> Result<usize> {
    let candidates: Vec<Zombie> = sqlx::query_as(&format!(
        "{LOST_TRIES}
             WHERE ti.state = 'running' AND ti.worker = $1 AND ti.id <> ALL($2)
               AND ti.start_date < now() - $3 * interval '1 second'"
    ))
    .bind(worker)
    .bind(local)
    .bind(threshold.as_secs_f64())
    .fetch_all(pool)
    .await?;
    fail_lost(pool, cache, candidates, |w| {
        format!("worker {w} lost this try (its claim was recorded but never reached it)")
    })
    .await
}

async fn fail_lost(
    pool: &PgPool,
    cache: &VersionCache,
    candidates: Vec<Zombie>,
    why: impl Fn(&str) -> String,
) -> Result<usize> {
    if candidates.is_empty() {
        return Ok(0);
    }
    let batch: Vec<Finished> = candidates
        .into_iter()
        .map(|z| Finished {
            error: Some(why(&z.worker)),
            ti_id: z.ti_id,
            run_pk: z.run_pk,
            dag_id: z.dag_id,
            dag_hash: z.dag_hash,
            task_id: z.task_id,
            try_id: z.try_id,
            try_number: z.try_number,
            max_tries: z.max_tries,
            worker: z.worker,
            outcome: TryOutcome::Zombie,
            retryable: true,
        })
        .collect();
    let res =
        crate::transient::retry("fail lost tries", || finish_batch(pool, cache, &batch)).await?;
    Ok(res.recorded)
}

/// A task instance as listed for a run.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TiRow {
    pub id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub state: Option<TaskState>,
    pub try_number: i32,
    pub max_tries: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

pub async fn for_run(conn: &mut PgConnection, run_pk: i64) -> Result<Vec<TiRow>> {
    Ok(sqlx::query_as(
        "SELECT id, run_pk, dag_id, run_id, task_id, state, try_number, max_tries, next_retry_at,
                worker, queued_at, start_date, end_date
         FROM task_instances WHERE run_pk = $1 ORDER BY id",
    )
    .bind(run_pk)
    .fetch_all(conn)
    .await?)
}

/// One try, as shown by `upiflow history`.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TryRow {
    pub id: i64,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<TryOutcome>,
    pub error: Option<String>,
}

/// Every try of a task across runs, newest first.
pub async fn history(
    conn: &mut PgConnection,
    dag_id: &str,
    task_id: &str,
    limit: i64,
) -> Result<Vec<TryRow>> {
    Ok(sqlx::query_as(
        "SELECT tr.id, ti.run_id, ti.task_id, tr.try_number, tr.worker, tr.started_at,
                tr.ended_at, tr.outcome, tr.error
         FROM task_tries tr JOIN task_instances ti ON ti.id = tr.ti_id
         WHERE ti.dag_id = $1 AND ti.task_id = $2
         ORDER BY tr.started_at DESC, tr.id DESC LIMIT $3",
    )
    .bind(dag_id)
    .bind(task_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Resets a task instance (and, on request, everything downstream of it) so it runs again,
/// with a fresh allowance of retries. Returns the cleared task ids.
pub async fn clear(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    downstream: bool,
) -> Result<Vec<String>> {
    crate::transient::retry("clear", || {
        clear_once(pool, cache, dag_id, run_id, task_id, downstream)
    })
    .await
}

async fn clear_once(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    downstream: bool,
) -> Result<Vec<String>> {
    let mut tx = pool.begin().await?;
    let run = runs::get(&mut tx, dag_id, run_id).await?;
    runs::lock_runs(&mut tx, &[run.id]).await?;
    let dag = cache.get(&mut tx, dag_id, &run.dag_hash).await?;
    if dag.task(task_id).is_none() {
        return Err(EngineError::NotFound(format!(
            "DAG `{dag_id}` has no task `{task_id}`"
        )));
    }
    let mut targets = vec![task_id.to_string()];
    if downstream {
        targets.extend(
            dag.all_downstream(task_id)
                .into_iter()
                .map(|t| t.id.clone()),
        );
    }
    reset_locked(&mut tx, cache, &[(run.id, targets.clone())]).await?;
    tx.commit().await?;
    Ok(targets)
}

/// Clears task instances of several runs in one transaction (all or nothing): each
/// `(run_pk, task_ids)` is reset as [`clear`] does, and each run goes back to running.
/// Refuses with a conflict if any of them is running.
pub async fn clear_many(
    pool: &PgPool,
    cache: &VersionCache,
    targets: &[(i64, Vec<String>)],
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    crate::transient::retry("clear", || clear_many_once(pool, cache, targets)).await
}

async fn clear_many_once(
    pool: &PgPool,
    cache: &VersionCache,
    targets: &[(i64, Vec<String>)],
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = targets.iter().map(|(pk, _)| *pk).collect();
    let locked = runs::lock_runs(&mut tx, &ids).await?;
    if let Some(missing) = ids.iter().find(|id| !locked.iter().any(|l| l.0 == **id)) {
        return Err(EngineError::NotFound(format!("no run with id {missing}")));
    }
    reset_locked(&mut tx, cache, targets).await?;
    tx.commit().await?;
    Ok(())
}

/// The shared part of clearing, on runs already locked by the caller's transaction.
async fn reset_locked(
    tx: &mut PgConnection,
    cache: &VersionCache,
    targets: &[(i64, Vec<String>)],
) -> Result<()> {
    let (pks, tasks): (Vec<i64>, Vec<&str>) = targets
        .iter()
        .flat_map(|(pk, ts)| ts.iter().map(move |t| (*pk, t.as_str())))
        .unzip();
    let running: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT ti.task_id FROM task_instances ti
         JOIN UNNEST($1::bigint[], $2::text[]) AS u(run_pk, task_id)
           ON ti.run_pk = u.run_pk AND ti.task_id = u.task_id
         WHERE ti.state = 'running' ORDER BY 1",
    )
    .bind(&pks)
    .bind(&tasks)
    .fetch_all(&mut *tx)
    .await?;
    if !running.is_empty() {
        return Err(EngineError::Conflict(format!(
            "cannot clear while running: {} (wait for the try to end)",
            running.join(", ")
        )));
    }
    let mut touched_owned: Vec<(i64, String, String)> = Vec::new();
    for (run_pk, task_ids) in targets {
        let (dag_id, hash): (String, String) =
            sqlx::query_as("SELECT dag_id, dag_hash FROM dag_runs WHERE id = $1")
                .bind(run_pk)
                .fetch_one(&mut *tx)
                .await?;
        let dag = cache.get(tx, &dag_id, &hash).await?;
        reset(tx, *run_pk, &dag, task_ids).await?;
        sqlx::query("UPDATE dag_runs SET state = 'running', end_date = NULL WHERE id = $1")
            .bind(run_pk)
            .execute(&mut *tx)
            .await?;
        touched_owned.push((*run_pk, dag_id, hash));
    }
    let touched: BTreeMap<i64, (&str, &str)> = touched_owned
        .iter()
        .map(|(pk, d, h)| (*pk, (d.as_str(), h.as_str())))
        .collect();
    let mut out = BatchResult::default();
    settle_all(tx, cache, &touched, &mut out).await?;
    crate::store::notify_wake(tx).await?;
    Ok(())
}

/// Puts task instances of a run back to "no status" with a fresh allowance of retries (the
/// try count goes on, as in Airflow), so trigger rules schedule them again.
pub async fn reset(
    conn: &mut PgConnection,
    run_pk: i64,
    dag: &crate::dag::Dag,
    task_ids: &[String],
) -> Result<()> {
    let retries: Vec<i32> = task_ids
        .iter()
        .map(|t| dag.task(t).map_or(0, |d| d.retry.retries as i32))
        .collect();
    sqlx::query(
        "UPDATE task_instances ti SET state = NULL, max_tries = ti.try_number + u.retries + 1,
            next_retry_at = NULL, worker = NULL, queued_at = NULL, start_date = NULL, end_date = NULL
         FROM UNNEST($2::text[], $3::int[]) AS u(task_id, retries)
         WHERE ti.run_pk = $1 AND ti.task_id = u.task_id",
    )
    .bind(run_pk)
    .bind(task_ids)
    .bind(&retries)
    .execute(conn)
    .await?;
    Ok(())
}

/// A task instance with its run's dates, the worker it ran on and its DAG version: what the
/// JSON API shows of it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TiDetail {
    pub id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub state: Option<TaskState>,
    pub try_number: i32,
    pub max_tries: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
    /// Host and process id of the worker, while it is known.
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub logical_date: DateTime<Utc>,
    /// When the run could start: the end of its data interval.
    pub run_after: DateTime<Utc>,
    pub dag_hash: String,
}

/// Which task instances to list. Every filter is optional; all are bound parameters.
#[derive(Debug, Clone, Default)]
pub struct TiFilter {
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    /// Runs by primary key (for clearing across runs).
    pub run_pks: Option<Vec<i64>>,
    pub task_ids: Option<Vec<String>>,
    /// States to keep; `None` in the list keeps instances with no state yet.
    pub states: Option<Vec<Option<TaskState>>>,
    /// Bounds on the run's or the instance's dates.
    pub dates: Vec<(TiDate, Cmp, DateTime<Utc>)>,
}

/// A date a task instance can be filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiDate {
    LogicalDate,
    RunAfter,
    StartDate,
    EndDate,
}

/// A comparison of a date filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gte,
    Gt,
    Lte,
    Lt,
}

impl Cmp {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Gte => ">=",
            Self::Gt => ">",
            Self::Lte => "<=",
            Self::Lt => "<",
        }
    }
}

/// A sort key of [`search`] (a closed set, so no client text reaches the SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiOrder {
    Id,
    DagId,
    RunId,
    TaskId,
    State,
    TryNumber,
    StartDate,
    EndDate,
    LogicalDate,
    RunAfter,
}

impl TiOrder {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "ti.id",
            Self::DagId => "ti.dag_id",
            Self::RunId => "ti.run_id",
            Self::TaskId => "ti.task_id",
            Self::State => "ti.state",
            Self::TryNumber => "ti.try_number",
            Self::StartDate => "ti.start_date",
            Self::EndDate => "ti.end_date",
            Self::LogicalDate => "r.logical_date",
            Self::RunAfter => "r.data_interval_end",
        }
    }
}

fn push_ti_filter(q: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, f: &TiFilter) {
    q.push(" WHERE true");
    if let Some(v) = &f.dag_id {
        q.push(" AND ti.dag_id = ").push_bind(v.clone());
    }
    if let Some(v) = &f.run_id {
        q.push(" AND ti.run_id = ").push_bind(v.clone());
    }
    if let Some(v) = &f.run_pks {
        q.push(" AND ti.run_pk = ANY(")
            .push_bind(v.clone())
            .push(")");
    }
    if let Some(v) = &f.task_ids {
        q.push(" AND ti.task_id = ANY(")
            .push_bind(v.clone())
            .push(")");
    }
    if let Some(states) = &f.states {
        let named: Vec<TaskState> = states.iter().flatten().copied().collect();
        let none = states.iter().any(Option::is_none);
        q.push(" AND (ti.state = ANY(")
            .push_bind(named)
            .push(") OR (")
            .push_bind(none)
            .push(" AND ti.state IS NULL))");
    }
    for (date, cmp, v) in &f.dates {
        let col = match date {
            TiDate::LogicalDate => "r.logical_date",
            TiDate::RunAfter => "r.data_interval_end",
            TiDate::StartDate => "ti.start_date",
            TiDate::EndDate => "ti.end_date",
        };
        q.push(format_args!(" AND {col} {} ", cmp.sql()))
            .push_bind(*v);
    }
}

const TI_FROM: &str = " FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk
    LEFT JOIN workers w ON w.worker_id = ti.worker";

/// One page of the task instances that match, and how many match in all.
pub async fn search(
    conn: &mut PgConnection,
    f: &TiFilter,
    order: &[(TiOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<TiDetail>, i64)> {
    let mut count = sqlx::QueryBuilder::new("SELECT count(*)");
    count.push(TI_FROM);
    push_ti_filter(&mut count, f);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;

    let mut q = sqlx::QueryBuilder::new(
        "SELECT ti.id, ti.run_pk, ti.dag_id, ti.run_id, ti.task_id, ti.state, ti.try_number,
                ti.max_tries, ti.next_retry_at, ti.worker, w.hostname, w.pid, ti.queued_at,
                ti.start_date, ti.end_date, r.logical_date, r.data_interval_end AS run_after,
                r.dag_hash",
    );
    q.push(TI_FROM);
    push_ti_filter(&mut q, f);
    crate::store::filters::push_page(
        &mut q,
        order.iter().map(|(k, desc)| (k.column(), *desc)),
        "ti.id",
        limit,
        offset,
    );
    let rows = q.build_query_as().fetch_all(&mut *conn).await?;
    Ok((rows, total))
}

/// One task instance of a run, if there is one.
pub async fn detail(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<Option<TiDetail>> {
    let f = TiFilter {
        dag_id: Some(dag_id.into()),
        run_id: Some(run_id.into()),
        task_ids: Some(vec![task_id.into()]),
        ..TiFilter::default()
    };
    Ok(search(conn, &f, &[], 1, 0).await?.0.into_iter().next())
}

/// One try of a task instance, with the host of the worker that ran it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TryDetail {
    pub id: i64,
    pub try_number: i32,
    pub worker: String,
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<TryOutcome>,
    pub error: Option<String>,
}

const TRY_SELECT: &str = "SELECT tr.id, tr.try_number, tr.worker, w.hostname, w.pid, tr.started_at,
        tr.ended_at, tr.outcome, tr.error
    FROM task_tries tr LEFT JOIN workers w ON w.worker_id = tr.worker WHERE tr.ti_id = $1";

/// Every try of one task instance, first try first.
pub async fn tries(conn: &mut PgConnection, ti_id: i64) -> Result<Vec<TryDetail>> {
    Ok(
        sqlx::query_as(&format!("{TRY_SELECT} ORDER BY tr.try_number"))
            .bind(ti_id)
            .fetch_all(conn)
            .await?,
    )
}

/// Try number `try_number` of one task instance, if it happened.
pub async fn find_try(
    conn: &mut PgConnection,
    ti_id: i64,
    try_number: i32,
) -> Result<Option<TryDetail>> {
    Ok(
        sqlx::query_as(&format!("{TRY_SELECT} AND tr.try_number = $2"))
            .bind(ti_id)
            .bind(try_number)
            .fetch_optional(conn)
            .await?,
    )
}

/// A stored log line with its position (for reading a log in pages).
#[derive(Debug, Clone, FromRow)]
pub struct LogLine {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub stream: crate::logs::LogStream,
    pub line: String,
}

/// Up to `limit` log lines of a try that come after position `after` (0: from the start).
pub async fn log_page(
    conn: &mut PgConnection,
    try_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<LogLine>> {
    Ok(sqlx::query_as(
        "SELECT id, at, stream, line FROM task_logs WHERE try_id = $1 AND id > $2
         ORDER BY id LIMIT $3",
    )
    .bind(try_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
