//! The statements of a task instance's lifecycle: claiming (inside the pool rows' critical
//! section), recording outcomes, finding lost tries, deciding waiting instances, resetting. SQL and row
//! types only: every decision (which state, which delay, what to clear) is made by
//! `crate::lifecycle`, which composes these into transactions.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool};

use crate::error::Result;
use crate::state::{TaskState, TryOutcome};

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

/// Opens the claim's transaction holding every pool row locked: the critical section (as
/// Airflow's scheduler locks its pool rows), so concurrent claims see each other's tries and
/// a pool is never oversubscribed. `BEGIN` and the lock go in one round trip. A claim
/// never waits for rows a transaction without the pool rows holds: it only updates runnable
/// task instances, which finishing, settling, starting runs, marking and clearing do not lock
/// while they wait for pool rows (only a finish that claims takes them, after its own rows:
/// [`lock_pools`]). So the pool rows cannot close a lock cycle.
pub async fn begin_claim(conn: &mut PgConnection) -> Result<sqlx::Transaction<'_, sqlx::Postgres>> {
    use sqlx::Connection;
    Ok(conn.begin_with(format!("BEGIN; {LOCK_POOLS}")).await?)
}

/// The claim's critical section: every pool row, locked in name order.
const LOCK_POOLS: &str = "SELECT 1 FROM pools ORDER BY name FOR UPDATE";

/// Takes the claim's critical section inside a transaction that is already open.
pub async fn lock_pools(conn: &mut PgConnection) -> Result<()> {
    sqlx::query(LOCK_POOLS).execute(conn).await?;
    Ok(())
}

/// Every pool's size, what running tries hold and the best `limit` candidates, read in one
/// statement (one snapshot, taken after the pool rows were locked).
#[derive(Debug, Clone, Default)]
pub struct ClaimView {
    pub pools: Vec<(String, i32)>,
    pub running: Vec<RunningUse>,
    pub candidates: Vec<Candidate>,
    /// Milliseconds until the earliest retry that is not due yet, if one is pending.
    pub next_retry_ms: Option<i64>,
}

#[derive(FromRow)]
struct ViewRow {
    kind: i32,
    rank: i64,
    id: i64,
    pool: String,
    slots: i64,
    run_pk: i64,
    dag_id: String,
    task_id: String,
    count: i64,
    cap: Option<i32>,
    max_active_tasks: i32,
}

/// The first look of a claim ([`ClaimView`]); later looks, past candidates that did not
/// fit, use [`candidates`].
pub async fn claim_view(conn: &mut PgConnection, limit: i64) -> Result<ClaimView> {
    let rows: Vec<ViewRow> = sqlx::query_as(&CLAIM_VIEW_SQL)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    let mut view = ClaimView::default();
    let mut ranked = Vec::new();
    for r in rows {
        match r.kind {
            0 => view.pools.push((r.pool, r.slots as i32)),
            3 => view.next_retry_ms = Some(r.rank),
            1 => view.running.push(RunningUse {
                pool: r.pool,
                run_pk: r.run_pk,
                dag_id: r.dag_id,
                task_id: r.task_id,
                slots: r.slots,
                count: r.count,
            }),
            _ => ranked.push((
                r.rank,
                Candidate {
                    id: r.id,
                    pool: r.pool,
                    pool_slots: r.slots as i32,
                    run_pk: r.run_pk,
                    dag_id: r.dag_id,
                    task_id: r.task_id,
                    max_active_tis_per_dag: r.cap,
                    max_active_tasks: r.max_active_tasks,
                },
            )),
        }
    }
    ranked.sort_by_key(|(rank, _)| *rank);
    view.candidates = ranked.into_iter().map(|(_, c)| c).collect();
    Ok(view)
}

/// What running task instances hold, grouped by pool, run and task.
#[derive(Debug, Clone, FromRow)]
pub struct RunningUse {
    pub pool: String,
    pub run_pk: i64,
    pub dag_id: String,
    pub task_id: String,
    /// Pool slots they take.
    pub slots: i64,
    pub count: i64,
}

/// The task instances a claim may take, with the limits that apply to each: runnable ones
/// (scheduled, or up for retry and due) of running runs of unpaused DAGs. Only a retry has a
/// due time (scheduled rows have none); written so, the planner estimates the runnable rows
/// well and walks the `task_instances_claim_order` index.
const CANDIDATE_COLUMNS_FROM: &str = "ti.id, ti.pool, ti.pool_slots, ti.run_pk, ti.dag_id,
        ti.task_id, ti.max_active_tis_per_dag, d.max_active_tasks
     FROM task_instances ti
     JOIN dag_runs r ON r.id = ti.run_pk AND r.state = 'running'
     JOIN dags d ON d.dag_id = r.dag_id AND NOT d.is_paused
     WHERE ti.state IN ('scheduled', 'up_for_retry')
       AND (ti.next_retry_at IS NULL OR ti.next_retry_at <= now())";

/// The claim's order, the `task_instances_claim_order` index's: runs of a backfill that
/// yields to scheduled runs after all others, then higher effective `priority_weight`, then
/// older logical date (Airflow's order), then creation order.
const CLAIM_ORDER: &str = "ORDER BY ti.yields, ti.priority_weight DESC, ti.logical_date, ti.id";

/// [`claim_view`]'s statement: pool sizes (kind 0), running use (kind 1), the first `$1`
/// candidates in claim order (kind 2, ranked) and, as its rank, the milliseconds until the
/// earliest retry that is not due yet (kind 3, if any), in one row shape.
static CLAIM_VIEW_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT 0 AS kind, 0::int8 AS rank, 0::int8 AS id, name AS pool, slots::int8 AS slots,
                0::int8 AS run_pk, '' AS dag_id, '' AS task_id, 0::int8 AS count,
                NULL::int4 AS cap, 0 AS max_active_tasks
         FROM pools
         UNION ALL
         SELECT 1, 0, 0, pool, sum(pool_slots)::int8, run_pk, dag_id, task_id, count(*), NULL, 0
         FROM task_instances WHERE state = 'running'
         GROUP BY pool, run_pk, dag_id, task_id
         UNION ALL
         SELECT 2, row_number() OVER (), c.id, c.pool, c.pool_slots::int8, c.run_pk, c.dag_id,
                c.task_id, 0, c.max_active_tis_per_dag, c.max_active_tasks
         FROM (SELECT {CANDIDATE_COLUMNS_FROM} {CLAIM_ORDER} LIMIT $1) c
         UNION ALL
         SELECT 3, ceil(EXTRACT(EPOCH FROM min(next_retry_at) - now()) * 1000)::int8, 0, '', 0,
                0, '', '', 0, NULL, 0
         FROM task_instances WHERE state = 'up_for_retry' AND next_retry_at > now()
         HAVING min(next_retry_at) IS NOT NULL"
    )
});

/// [`candidates`]' statement: candidates past starved pools, runs and tasks and those seen.
static CANDIDATES_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {CANDIDATE_COLUMNS_FROM}
           AND ti.pool <> ALL($1) AND ti.run_pk <> ALL($2) AND ti.id <> ALL($5)
           AND NOT EXISTS (SELECT 1 FROM UNNEST($3::text[], $4::text[]) AS x(dag_id, task_id)
                           WHERE x.dag_id = ti.dag_id AND x.task_id = ti.task_id)
         {CLAIM_ORDER}
         LIMIT $6"
    )
});

/// A runnable task instance the claim may take, with the limits that apply to it.
#[derive(Debug, Clone, FromRow)]
pub struct Candidate {
    pub id: i64,
    pub pool: String,
    pub pool_slots: i32,
    pub run_pk: i64,
    pub dag_id: String,
    pub task_id: String,
    pub max_active_tis_per_dag: Option<i32>,
    /// The DAG's per-run limit.
    pub max_active_tasks: i32,
}

/// What the candidate query leaves out: full pools, runs at their `max_active_tasks`,
/// `(dag_id, task_id)`s at their `max_active_tis_per_dag`, and ids already looked at.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    pub pools: Vec<String>,
    pub runs: Vec<i64>,
    pub task_dags: Vec<String>,
    pub task_ids: Vec<String>,
    pub seen: Vec<i64>,
}

/// Up to `limit` candidates (`CANDIDATE_COLUMNS_FROM`) in claim order (`CLAIM_ORDER`), past
/// what `exclude` leaves out; the scan walks the claim-order index and stops at `limit`.
pub async fn candidates(
    conn: &mut PgConnection,
    exclude: &Exclude,
    limit: i64,
) -> Result<Vec<Candidate>> {
    Ok(sqlx::query_as(&CANDIDATES_SQL)
        .bind(&exclude.pools)
        .bind(&exclude.runs)
        .bind(&exclude.task_dags)
        .bind(&exclude.task_ids)
        .bind(&exclude.seen)
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Takes the task instances `ids` for `worker` where they are still runnable, and opens a
/// try for each. Start times are the statement's (not the transaction's) so a try never
/// appears to start before the pool slot it took was given back.
pub async fn claim_ids(conn: &mut PgConnection, worker: &str, ids: &[i64]) -> Result<Vec<Claimed>> {
    Ok(sqlx::query_as(
        "WITH claimed AS (
            UPDATE task_instances ti
            SET state = 'running', try_number = ti.try_number + 1, worker = $1,
                start_date = statement_timestamp(), end_date = NULL, next_retry_at = NULL
            WHERE ti.id = ANY($2)
              AND (ti.state = 'scheduled'
                   OR (ti.state = 'up_for_retry' AND ti.next_retry_at <= now()))
            RETURNING ti.id, ti.run_pk, ti.dag_id, ti.run_id, ti.task_id, ti.try_number, ti.max_tries
         ), tries AS (
            INSERT INTO task_tries (ti_id, try_number, worker, started_at)
            SELECT id, try_number, $1, statement_timestamp() FROM claimed
            RETURNING id AS try_id, ti_id
         )
         SELECT c.*, t.try_id, r.logical_date, r.data_interval_start, r.data_interval_end,
                r.conf, r.dag_hash
         FROM claimed c JOIN tries t ON t.ti_id = c.id JOIN dag_runs r ON r.id = c.run_pk
         ORDER BY c.id",
    )
    .bind(worker)
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

/// The state a running try's task instance moves to, as decided by the lifecycle.
#[derive(Debug, Clone)]
pub struct NewTiState<'a> {
    pub ti_id: i64,
    pub try_number: i32,
    /// Only the worker that still owns the try may record its outcome.
    pub worker: &'a str,
    pub state: TaskState,
    /// For `up_for_retry`: seconds until the next try may start.
    pub retry_in: f64,
}

/// Moves running task instances to their decided state (and due time for a retry), only
/// where the try is still the one that worker runs. Returns the ids that moved.
pub async fn record_outcomes(conn: &mut PgConnection, rows: &[NewTiState<'_>]) -> Result<Vec<i64>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.ti_id).collect();
    let tries: Vec<i32> = rows.iter().map(|r| r.try_number).collect();
    let workers: Vec<&str> = rows.iter().map(|r| r.worker).collect();
    let states: Vec<TaskState> = rows.iter().map(|r| r.state).collect();
    let delays: Vec<f64> = rows.iter().map(|r| r.retry_in).collect();
    Ok(sqlx::query_scalar(
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
    .fetch_all(conn)
    .await?)
}

/// Closes open tries with their outcome and error text.
pub async fn close_tries(
    conn: &mut PgConnection,
    tries: &[(i64, TryOutcome, Option<&str>)],
) -> Result<()> {
    let ids: Vec<i64> = tries.iter().map(|t| t.0).collect();
    let outcomes: Vec<TryOutcome> = tries.iter().map(|t| t.1).collect();
    let errors: Vec<Option<&str>> = tries.iter().map(|t| t.2).collect();
    sqlx::query(
        "UPDATE task_tries t SET ended_at = now(), outcome = u.outcome, error = u.error
         FROM UNNEST($1::bigint[], $2::try_outcome[], $3::text[]) AS u(id, outcome, error)
         WHERE t.id = u.id AND t.ended_at IS NULL",
    )
    .bind(&ids)
    .bind(&outcomes)
    .bind(&errors)
    .execute(conn)
    .await?;
    Ok(())
}

/// The running tries (with what failing them needs) that a lost-try query filters.
const LOST_TRIES: &str = "SELECT ti.id AS ti_id, ti.run_pk, ti.try_number, ti.max_tries, ti.dag_id,
        r.dag_hash, ti.task_id, ti.worker, tr.id AS try_id
     FROM task_instances ti
     JOIN dag_runs r ON r.id = ti.run_pk
     JOIN task_tries tr ON tr.ti_id = ti.id AND tr.try_number = ti.try_number";

/// A running try whose worker no longer runs it.
#[derive(Debug, Clone, FromRow)]
pub struct LostTry {
    pub ti_id: i64,
    pub run_pk: i64,
    pub try_number: i32,
    pub max_tries: i32,
    pub dag_id: String,
    pub dag_hash: String,
    pub task_id: String,
    pub worker: String,
    pub try_id: i64,
}

/// Running tries of workers whose heartbeat is older than `threshold`, or that said they
/// stopped, or that never registered.
pub async fn tries_of_dead_workers(pool: &PgPool, threshold: Duration) -> Result<Vec<LostTry>> {
    Ok(sqlx::query_as(&format!(
        "{LOST_TRIES}
             LEFT JOIN workers w ON w.worker_id = ti.worker
             WHERE ti.state = 'running'
               AND (w.worker_id IS NULL OR w.stopped_at IS NOT NULL
                    OR w.heartbeat_at < now() - $1 * interval '1 second')"
    ))
    .bind(threshold.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Running tries the database gives to `worker`, started more than `threshold` ago, that are
/// not among `local` (the ones the worker says it runs).
pub async fn orphaned_tries(
    pool: &PgPool,
    worker: &str,
    local: &[i64],
    threshold: Duration,
) -> Result<Vec<LostTry>> {
    Ok(sqlx::query_as(&format!(
        "{LOST_TRIES}
             WHERE ti.state = 'running' AND ti.worker = $1 AND ti.id <> ALL($2)
               AND ti.start_date < now() - $3 * interval '1 second'"
    ))
    .bind(worker)
    .bind(local)
    .bind(threshold.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Which of `ids` are still running on `worker`.
pub async fn still_running_on(pool: &PgPool, ids: &[i64], worker: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM task_instances WHERE id = ANY($1) AND worker = $2 AND state = 'running'",
    )
    .bind(ids)
    .bind(worker)
    .fetch_all(pool)
    .await?)
}

/// Every task instance of a run with its state.
pub async fn states_of_run(
    conn: &mut PgConnection,
    run_pk: i64,
) -> Result<Vec<(String, Option<TaskState>)>> {
    Ok(
        sqlx::query_as("SELECT task_id, state FROM task_instances WHERE run_pk = $1")
            .bind(run_pk)
            .fetch_all(conn)
            .await?,
    )
}

/// Gives waiting (stateless) task instances of a run their decided state: `scheduled` ones
/// are stamped queued now, the others (skipped, upstream_failed) end now.
pub async fn decide_waiting(
    conn: &mut PgConnection,
    run_pk: i64,
    decisions: &[(&str, TaskState)],
) -> Result<()> {
    let (ids, states): (Vec<&str>, Vec<TaskState>) = decisions.iter().copied().unzip();
    sqlx::query(
        "UPDATE task_instances ti SET state = u.state,
            queued_at = CASE WHEN u.state = 'scheduled' THEN now() ELSE ti.queued_at END,
            end_date = CASE WHEN u.state = 'scheduled' THEN NULL ELSE now() END
         FROM UNNEST($2::text[], $3::ti_state[]) AS u(task_id, state)
         WHERE ti.run_pk = $1 AND ti.task_id = u.task_id AND ti.state IS NULL",
    )
    .bind(run_pk)
    .bind(&ids)
    .bind(&states)
    .execute(conn)
    .await?;
    Ok(())
}

/// Which of the given (run, task) pairs are running, by task id.
pub async fn running_among(
    conn: &mut PgConnection,
    run_pks: &[i64],
    task_ids: &[&str],
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT ti.task_id FROM task_instances ti
         JOIN UNNEST($1::bigint[], $2::text[]) AS u(run_pk, task_id)
           ON ti.run_pk = u.run_pk AND ti.task_id = u.task_id
         WHERE ti.state = 'running' ORDER BY 1",
    )
    .bind(run_pks)
    .bind(task_ids)
    .fetch_all(conn)
    .await?)
}

/// Puts task instances of a run back to "no status", each with `retries` more tries allowed
/// after the ones it has had (the try count goes on, as in Airflow).
pub async fn reset(
    conn: &mut PgConnection,
    run_pk: i64,
    task_ids: &[String],
    retries: &[i32],
) -> Result<()> {
    sqlx::query(
        "UPDATE task_instances ti SET state = NULL, max_tries = ti.try_number + u.retries + 1,
            next_retry_at = NULL, worker = NULL, queued_at = NULL, start_date = NULL, end_date = NULL
         FROM UNNEST($2::text[], $3::int[]) AS u(task_id, retries)
         WHERE ti.run_pk = $1 AND ti.task_id = u.task_id",
    )
    .bind(run_pk)
    .bind(task_ids)
    .bind(retries)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many instances of one task of a DAG are running, across its runs.
pub async fn running_of_task(conn: &mut PgConnection, dag_id: &str, task_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk
         WHERE r.dag_id = $1 AND ti.task_id = $2 AND ti.state = 'running'",
    )
    .bind(dag_id)
    .bind(task_id)
    .fetch_one(conn)
    .await?)
}
