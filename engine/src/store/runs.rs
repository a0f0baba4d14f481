//! DAG runs: creation (idempotent by unique keys), reading, the statements that start
//! queued runs within `max_active_runs` and finish or reopen a run. SQL and row types only;
//! when a run starts or ends is decided by `crate::lifecycle`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection};

use crate::dag::Dag;
use crate::error::{EngineError, Result};
use crate::state::{RunState, RunType};

/// A row of `dag_runs`.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub run_type: RunType,
    pub state: RunState,
    pub conf: Value,
    pub dag_hash: String,
    pub queued_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub backfill_id: Option<i64>,
    /// When the run must be finished by (the DAG's `deadline`, fixed at creation).
    pub deadline_at: Option<DateTime<Utc>>,
    /// When a scheduler found the run unfinished past its deadline (set once).
    pub deadline_missed_at: Option<DateTime<Utc>>,
    /// Who triggered it (a manual run through the API); `None` for scheduled and backfill
    /// runs.
    pub triggering_user_name: Option<String>,
    /// A user's note on the run (Airflow 3's run note).
    pub note: Option<String>,
}

impl RunRow {
    /// Whether the run missed its deadline: noticed unfinished past it, or finished after it.
    pub fn is_late(&self) -> bool {
        is_late(self.deadline_at, self.deadline_missed_at, self.end_date)
    }
}

/// Whether a run missed its deadline: noticed unfinished past it, or finished after it (the
/// one definition, for every reader of runs).
pub fn is_late(
    deadline_at: Option<DateTime<Utc>>,
    deadline_missed_at: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
) -> bool {
    deadline_missed_at.is_some() || matches!((deadline_at, end_date), (Some(d), Some(e)) if e > d)
}

/// What a new run covers.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval: (DateTime<Utc>, DateTime<Utc>),
    pub run_type: RunType,
    pub conf: Value,
}

/// Inserts a queued run and its task instances. Returns `None` when a run with the same
/// run_id or logical date already exists (a no-op, by the unique keys).
pub async fn create(
    conn: &mut PgConnection,
    dag: &Dag,
    hash: &str,
    new: &NewRun,
) -> Result<Option<RunRow>> {
    let run: Option<RunRow> = sqlx::query_as(
        "INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start,
                               data_interval_end, run_type, conf, dag_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT DO NOTHING
         RETURNING *",
    )
    .bind(&dag.dag_id)
    .bind(&new.run_id)
    .bind(new.logical_date)
    .bind(new.data_interval.0)
    .bind(new.data_interval.1)
    .bind(new.run_type)
    .bind(&new.conf)
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(mut run) = run else { return Ok(None) };
    if let Some(at) = dag.deadline_at(run.logical_date, run.data_interval_end, run.queued_at) {
        sqlx::query("UPDATE dag_runs SET deadline_at = $2 WHERE id = $1")
            .bind(run.id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        run.deadline_at = Some(at);
    }
    let all: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
    insert_task_instances(conn, &run, dag, &all).await?;
    Ok(Some(run))
}

/// Inserts the run's task instances of the tasks `task_ids` of `dag` (the run's DAG
/// version), with no state yet: at the run's creation, or again after one was deleted (an
/// instance the run has is left as it is).
pub async fn insert_task_instances(
    conn: &mut PgConnection,
    run: &RunRow,
    dag: &Dag,
    task_ids: &[&str],
) -> Result<()> {
    let tasks: Vec<_> = dag
        .tasks
        .iter()
        .filter(|t| task_ids.contains(&t.id.as_str()))
        .collect();
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let max_tries: Vec<i32> = tasks.iter().map(|t| t.retry.retries as i32 + 1).collect();
    let pools: Vec<&str> = tasks.iter().map(|t| t.pool.as_str()).collect();
    let slots: Vec<i32> = tasks.iter().map(|t| t.pool_slots as i32).collect();
    let weights: Vec<i32> = tasks.iter().map(|t| dag.priority_weight(&t.id)).collect();
    let caps: Vec<Option<i32>> = tasks
        .iter()
        .map(|t| t.max_active_tis_per_dag.map(|n| n as i32))
        .collect();
    sqlx::query(
        "INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, max_tries, pool,
                                     pool_slots, priority_weight, max_active_tis_per_dag,
                                     logical_date)
         SELECT $1, $2, $3, t, m, p, s, w, c, $10
         FROM UNNEST($4::text[], $5::int[], $6::text[], $7::int[], $8::int[], $9::int[])
              AS u(t, m, p, s, w, c)
         ON CONFLICT (run_pk, task_id) DO NOTHING",
    )
    .bind(run.id)
    .bind(&run.dag_id)
    .bind(&run.run_id)
    .bind(&ids)
    .bind(&max_tries)
    .bind(&pools)
    .bind(&slots)
    .bind(&weights)
    .bind(&caps)
    .bind(run.logical_date)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the task instance `task_id` of the run `run_pk`; its tries and their records go
/// with it (`ON DELETE CASCADE`). Answers its state before, or `None` if it had no
/// instance (`Some(None)`: it had no state yet).
pub async fn delete_task_instance(
    conn: &mut PgConnection,
    run_pk: i64,
    task_id: &str,
) -> Result<Option<Option<crate::state::TaskState>>> {
    Ok(sqlx::query_scalar(
        "DELETE FROM task_instances WHERE run_pk = $1 AND task_id = $2 RETURNING state",
    )
    .bind(run_pk)
    .bind(task_id)
    .fetch_optional(conn)
    .await?)
}

/// Records who triggered the run `run_pk` (its `triggering_user_name`).
pub async fn set_triggering_user(conn: &mut PgConnection, run_pk: i64, user: &str) -> Result<()> {
    sqlx::query("UPDATE dag_runs SET triggering_user_name = $2 WHERE id = $1")
        .bind(run_pk)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether `dag_id` has a run with the id `run_id`.
pub async fn exists(conn: &mut PgConnection, dag_id: &str, run_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dag_runs WHERE dag_id = $1 AND run_id = $2)",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_one(conn)
    .await?)
}

/// The run `run_id` of `dag_id` (not found is an error).
pub async fn get(conn: &mut PgConnection, dag_id: &str, run_id: &str) -> Result<RunRow> {
    sqlx::query_as("SELECT * FROM dag_runs WHERE dag_id = $1 AND run_id = $2")
        .bind(dag_id)
        .bind(run_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| EngineError::RunNotFound {
            dag_id: dag_id.into(),
            run_id: run_id.into(),
        })
}

/// The run with primary key `id` (not found is an error).
pub async fn get_by_pk(conn: &mut PgConnection, id: i64) -> Result<RunRow> {
    sqlx::query_as("SELECT * FROM dag_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(EngineError::RunPkNotFound(id))
}

/// Runs of a DAG, newest logical date first.
pub async fn list(
    conn: &mut PgConnection,
    dag_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(
        "SELECT * FROM dag_runs WHERE dag_id = $1
         ORDER BY logical_date DESC LIMIT $2 OFFSET $3",
    )
    .bind(dag_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await?)
}

/// Locks the DAG row for starting its queued runs and returns `(is_paused, max_active_runs)`;
/// `None` if there is no such DAG or (with `skip_locked`) another transaction holds the row.
/// The lock serialises starters, so two of them cannot both fill the last slot.
pub async fn lock_dag_for_start(
    conn: &mut PgConnection,
    dag_id: &str,
    skip_locked: bool,
) -> Result<Option<(bool, i32)>> {
    let sql = if skip_locked {
        "SELECT is_paused, max_active_runs FROM dags WHERE dag_id = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT is_paused, max_active_runs FROM dags WHERE dag_id = $1 FOR UPDATE"
    };
    Ok(sqlx::query_as(sql)
        .bind(dag_id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Moves queued runs of `dag_id` to running, oldest logical date first, as Airflow 3 counts
/// them: runs outside any backfill (scheduled and manual) while fewer than `max_active` of
/// them run; each backfill's runs while fewer than its own `max_active_runs` (else
/// `max_active`) of its runs run. The two never count against each other, so a backfill
/// cannot hold back the scheduled runs. A paused backfill's runs wait (Airflow 3's scheduler
/// skips the queued runs of a paused backfill). Returns `(id, dag_hash)` of each run started.
pub async fn start_oldest_queued(
    conn: &mut PgConnection,
    dag_id: &str,
    max_active: i32,
) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "UPDATE dag_runs SET state = 'running', start_date = now()
         WHERE id IN (
            SELECT q.id FROM (
                SELECT r.id, coalesce(b.max_active_runs, $2) AS cap,
                       row_number() OVER (PARTITION BY r.backfill_id ORDER BY r.logical_date) AS nth,
                       coalesce(c.busy, 0) AS busy
                FROM dag_runs r
                LEFT JOIN backfills b ON b.id = r.backfill_id
                LEFT JOIN (SELECT backfill_id, count(*) AS busy FROM dag_runs
                           WHERE dag_id = $1 AND state = 'running'
                           GROUP BY backfill_id) c
                       ON c.backfill_id IS NOT DISTINCT FROM r.backfill_id
                WHERE r.dag_id = $1 AND r.state = 'queued'
                  AND b.is_paused IS NOT TRUE) q
            WHERE q.nth <= q.cap - q.busy)
         RETURNING id, dag_hash",
    )
    .bind(dag_id)
    .bind(max_active)
    .fetch_all(&mut *conn)
    .await?)
}

/// The DAGs that have queued runs.
pub async fn dags_with_queued_runs(pool: &sqlx::PgPool) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT dag_id FROM dag_runs WHERE state = 'queued'")
            .fetch_all(pool)
            .await?,
    )
}

/// Gives a running run its final state; `false` if it was not running (someone else
/// finished it first).
pub async fn finish_if_running(
    conn: &mut PgConnection,
    run_pk: i64,
    state: RunState,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE dag_runs SET state = $2, end_date = now()
         WHERE id = $1 AND state = 'running'",
    )
    .bind(run_pk)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts a run back to running (it has task instances to run again).
pub async fn reopen(conn: &mut PgConnection, run_pk: i64) -> Result<()> {
    sqlx::query("UPDATE dag_runs SET state = 'running', end_date = NULL WHERE id = $1")
        .bind(run_pk)
        .execute(conn)
        .await?;
    Ok(())
}

/// A locked run: `(id, state, dag_id, dag_hash)`.
pub type LockedRun = (i64, RunState, String, String);

/// Locks runs in id order (the one order every writer uses, so writers never deadlock).
/// Lock order across tables: a `dags` row before any of its `dag_runs` rows.
pub async fn lock_runs(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<LockedRun>> {
    Ok(sqlx::query_as(
        "SELECT id, state, dag_id, dag_hash FROM dag_runs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

/// Run id Airflow would give: `manual__2024-01-05T00:00:00+00:00`.
pub fn make_run_id(run_type: RunType, logical_date: DateTime<Utc>) -> String {
    format!(
        "{}__{}",
        run_type.as_str(),
        logical_date.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
    )
}

/// The run_id of `dag_id`'s run at `logical_date` or named `run_id`, if there is one.
pub async fn run_id_at(
    conn: &mut PgConnection,
    dag_id: &str,
    logical_date: DateTime<Utc>,
    run_id: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT run_id FROM dag_runs WHERE dag_id = $1 AND (logical_date = $2 OR run_id = $3)",
    )
    .bind(dag_id)
    .bind(logical_date)
    .bind(run_id)
    .fetch_optional(conn)
    .await?)
}

/// The state of the run with primary key `run_pk`.
pub async fn run_state(conn: &mut PgConnection, run_pk: i64) -> Result<RunState> {
    Ok(
        sqlx::query_scalar("SELECT state FROM dag_runs WHERE id = $1")
            .bind(run_pk)
            .fetch_one(conn)
            .await?,
    )
}

/// The task ids of a run's instances that are running now.
pub async fn running_tasks(conn: &mut PgConnection, run_pk: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT task_id FROM task_instances WHERE run_pk = $1 AND state = 'running'
         ORDER BY task_id",
    )
    .bind(run_pk)
    .fetch_all(conn)
    .await?)
}

/// Deletes a run; its task instances, tries and their records go with it (`ON DELETE
/// CASCADE`).
pub async fn delete(conn: &mut PgConnection, run_pk: i64) -> Result<()> {
    sqlx::query("DELETE FROM dag_runs WHERE id = $1")
        .bind(run_pk)
        .execute(conn)
        .await?;
    Ok(())
}
