//! DAG runs: creation (idempotent by unique keys), starting queued runs within
//! `max_active_runs`, and settling a run after its task instances change.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection};

use crate::dag::Dag;
use crate::error::{EngineError, Result};
use crate::executor::rules;
use crate::state::{RunState, RunType, TaskState};
use crate::store::dags::VersionCache;

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
    let Some(run) = run else { return Ok(None) };
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
    let max_tries: Vec<i32> = dag
        .tasks
        .iter()
        .map(|t| t.retry.retries as i32 + 1)
        .collect();
    sqlx::query(
        "INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, max_tries)
         SELECT $1, $2, $3, t, m FROM UNNEST($4::text[], $5::int[]) AS u(t, m)",
    )
    .bind(run.id)
    .bind(&run.dag_id)
    .bind(&run.run_id)
    .bind(&ids)
    .bind(&max_tries)
    .execute(&mut *conn)
    .await?;
    Ok(Some(run))
}

pub async fn get(conn: &mut PgConnection, dag_id: &str, run_id: &str) -> Result<RunRow> {
    sqlx::query_as("SELECT * FROM dag_runs WHERE dag_id = $1 AND run_id = $2")
        .bind(dag_id)
        .bind(run_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("no run `{run_id}` of DAG `{dag_id}`")))
}

pub async fn get_by_pk(conn: &mut PgConnection, id: i64) -> Result<RunRow> {
    sqlx::query_as("SELECT * FROM dag_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("no run with id {id}")))
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

/// Moves queued runs of `dag_id` to running, oldest logical date first, while the DAG is not
/// paused and fewer than `max_active_runs` run. Their first tasks are scheduled at once.
/// Returns how many runs started.
pub async fn start_queued(
    conn: &mut PgConnection,
    cache: &VersionCache,
    dag_id: &str,
) -> Result<usize> {
    start_queued_locking(conn, cache, dag_id, false).await
}

/// [`start_queued`] for callers that already hold run row locks (finishing tries): they
/// must not wait for the DAG row, because the DAG row is always taken *before* run rows
/// (trigger, backfill, the scheduler), and waiting here would close a cycle. If another
/// transaction holds the DAG row, it or the scheduler's next pass (which the finisher's
/// wake-up triggers) starts the runs instead.
pub async fn start_queued_if_unlocked(
    conn: &mut PgConnection,
    cache: &VersionCache,
    dag_id: &str,
) -> Result<usize> {
    start_queued_locking(conn, cache, dag_id, true).await
}

async fn start_queued_locking(
    conn: &mut PgConnection,
    cache: &VersionCache,
    dag_id: &str,
    skip_locked: bool,
) -> Result<usize> {
    // The DAG row lock serialises starters, so two of them cannot both fill the last slot.
    let sql = if skip_locked {
        "SELECT is_paused, max_active_runs FROM dags WHERE dag_id = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT is_paused, max_active_runs FROM dags WHERE dag_id = $1 FOR UPDATE"
    };
    let row: Option<(bool, i32)> = sqlx::query_as(sql)
        .bind(dag_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((paused, max_active)) = row else {
        return Ok(0);
    };
    if paused {
        return Ok(0);
    }
    // Oldest first within the DAG's limit; runs of a backfill with a limit of its own also
    // stay within that (its n-th queued run may start while n <= limit - its running runs).
    let started: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE dag_runs SET state = 'running', start_date = now()
         WHERE id IN (
            SELECT q.id FROM (
                SELECT r.id, r.logical_date, b.max_active_runs AS cap,
                       row_number() OVER (PARTITION BY r.backfill_id ORDER BY r.logical_date) AS nth,
                       coalesce(c.busy, 0) AS busy
                FROM dag_runs r
                LEFT JOIN backfills b ON b.id = r.backfill_id
                LEFT JOIN (SELECT backfill_id, count(*) AS busy FROM dag_runs
                           WHERE dag_id = $1 AND state = 'running' AND backfill_id IS NOT NULL
                           GROUP BY backfill_id) c ON c.backfill_id = r.backfill_id
                WHERE r.dag_id = $1 AND r.state = 'queued') q
            WHERE q.cap IS NULL OR q.nth <= q.cap - q.busy
            ORDER BY q.logical_date
            LIMIT GREATEST(0, $2 - (SELECT count(*) FROM dag_runs
                                    WHERE dag_id = $1 AND state = 'running')))
         RETURNING id, dag_hash",
    )
    .bind(dag_id)
    .bind(max_active as i64)
    .fetch_all(&mut *conn)
    .await?;
    for (id, hash) in &started {
        let dag = cache.get(conn, dag_id, hash).await?;
        settle(conn, *id, &dag).await?;
    }
    Ok(started.len())
}

/// What settling a run changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Settled {
    /// Task instances that became runnable.
    pub scheduled: usize,
    /// Set when the run just reached its final state.
    pub finished: Option<RunState>,
}

/// Applies trigger rules to the run's waiting task instances and, when everything is done,
/// finishes the run. The caller holds the run's row lock (see `lock_runs`).
pub async fn settle(conn: &mut PgConnection, run_pk: i64, dag: &Dag) -> Result<Settled> {
    let rows: Vec<(String, Option<TaskState>)> =
        sqlx::query_as("SELECT task_id, state FROM task_instances WHERE run_pk = $1")
            .bind(run_pk)
            .fetch_all(&mut *conn)
            .await?;
    let mut states: HashMap<String, Option<TaskState>> = rows.into_iter().collect();
    let decisions = rules::evaluate(dag, &states);
    let mut out = Settled::default();
    if !decisions.is_empty() {
        let (ids, new_states): (Vec<&str>, Vec<TaskState>) =
            decisions.iter().map(|(id, s)| (id.as_str(), *s)).unzip();
        out.scheduled = new_states
            .iter()
            .filter(|s| **s == TaskState::Scheduled)
            .count();
        sqlx::query(
            "UPDATE task_instances ti SET state = u.state,
                queued_at = CASE WHEN u.state = 'scheduled' THEN now() ELSE ti.queued_at END,
                end_date = CASE WHEN u.state = 'scheduled' THEN NULL ELSE now() END
             FROM UNNEST($2::text[], $3::ti_state[]) AS u(task_id, state)
             WHERE ti.run_pk = $1 AND ti.task_id = u.task_id AND ti.state IS NULL",
        )
        .bind(run_pk)
        .bind(&ids)
        .bind(&new_states)
        .execute(&mut *conn)
        .await?;
        for (id, s) in decisions {
            states.insert(id, Some(s));
        }
    }
    if let Some(final_state) = rules::run_outcome(dag, &states) {
        let done = sqlx::query(
            "UPDATE dag_runs SET state = $2, end_date = now()
             WHERE id = $1 AND state = 'running'",
        )
        .bind(run_pk)
        .bind(final_state)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            out.finished = Some(final_state);
        }
    }
    Ok(out)
}

/// Locks runs in id order (the one order every writer uses, so writers never deadlock).
/// Lock order across tables: a `dags` row before any of its `dag_runs` rows.
pub async fn lock_runs(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<Vec<(i64, RunState, String, String)>> {
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

/// Checks a trigger's conf against the DAG's params: only declared params, each with the
/// type of its default (integers are accepted where a float is declared).
pub fn check_conf(dag: &Dag, conf: &Value) -> Result<()> {
    let Value::Object(conf) = conf else {
        return Err(EngineError::Invalid("conf must be a JSON object".into()));
    };
    for (key, value) in conf {
        let Some(default) = dag.params.get(key) else {
            let declared = if dag.params.is_empty() {
                "it declares no params".to_string()
            } else {
                format!(
                    "it declares: {}",
                    dag.params.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(EngineError::Invalid(format!(
                "conf has unknown param `{key}` for DAG `{}` ({declared})",
                dag.dag_id
            )));
        };
        let ok = match default {
            Value::Null => true,
            Value::Bool(_) => value.is_boolean(),
            Value::Number(n) if n.is_f64() => value.is_number(),
            Value::Number(_) => value.is_i64() || value.is_u64(),
            Value::String(_) => value.is_string(),
            Value::Array(_) => value.is_array(),
            Value::Object(_) => value.is_object(),
        };
        if !ok {
            return Err(EngineError::Invalid(format!(
                "conf param `{key}` must be {} like its default {default}, not {value}",
                json_type(default)
            )));
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
