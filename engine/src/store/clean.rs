//! The statements of `upiflow db clean`: per table, how many rows are older than a cutoff
//! (with the rows that go with them) and the deletion of one batch of them. SQL only: which
//! tables, which rows may go (finished runs, the run kept per DAG) are `crate::clean`'s rules,
//! passed in as parameters.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Result;
use crate::state::{RunState, RunType};

/// Which runs may go: older than the cutoff by their recency (`COALESCE(start_date,
/// queued_at)`), in one of `states`, and neither the newest run of its DAG nor the newest
/// among those whose type is not in `keep_last_excludes`, nor in the range of a running backfill (which counts its
/// finished runs to know when it is done).
#[derive(Debug, Clone)]
pub struct RunRule {
    pub cutoff: DateTime<Utc>,
    pub states: Vec<RunState>,
    pub keep_last_excludes: Vec<RunType>,
}

/// The runs that may go. `$1` cutoff, `$2` states, `$3` run types the keep-last ignores.
/// The kept runs of each DAG are found through `dags` (one index probe per DAG, newest first).
const OLD_RUNS: &str = "SELECT r.id FROM dag_runs r
    WHERE COALESCE(r.start_date, r.queued_at) < $1
      AND r.state = ANY($2)
      AND NOT EXISTS (
          SELECT 1 FROM backfills b
          WHERE b.state = 'running' AND b.dag_id = r.dag_id
            AND r.logical_date BETWEEN b.from_date AND b.to_date)
      AND r.id NOT IN (
          SELECT k.id FROM dags d, LATERAL (
              (SELECT l.id FROM dag_runs l
               WHERE l.dag_id = d.dag_id AND l.run_type <> ALL($3)
               ORDER BY COALESCE(l.start_date, l.queued_at) DESC, l.id DESC
               LIMIT 1)
              UNION ALL
              (SELECT l.id FROM dag_runs l
               WHERE l.dag_id = d.dag_id
               ORDER BY COALESCE(l.start_date, l.queued_at) DESC, l.id DESC
               LIMIT 1)) k)";

/// Rows of runs and of what goes with them (their task instances, tries and log lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunRows {
    pub runs: u64,
    pub task_instances: u64,
    pub task_tries: u64,
    pub task_logs: u64,
}

/// How many runs (and rows under them) `rule` would delete.
pub async fn count_runs(conn: &mut PgConnection, rule: &RunRule) -> Result<RunRows> {
    let (runs, tis, tries, logs): (i64, i64, i64, i64) = sqlx::query_as(&format!(
        "WITH doomed AS MATERIALIZED ({OLD_RUNS}),
              ti AS MATERIALIZED (SELECT id FROM task_instances WHERE run_pk IN (SELECT id FROM doomed)),
              tr AS MATERIALIZED (SELECT id FROM task_tries WHERE ti_id IN (SELECT id FROM ti))
         SELECT (SELECT count(*) FROM doomed), (SELECT count(*) FROM ti),
                (SELECT count(*) FROM tr),
                (SELECT count(*) FROM task_logs WHERE try_id IN (SELECT id FROM tr))"
    ))
    .bind(rule.cutoff)
    .bind(&rule.states)
    .bind(&rule.keep_last_excludes)
    .fetch_one(conn)
    .await?;
    Ok(RunRows {
        runs: runs as u64,
        task_instances: tis as u64,
        task_tries: tries as u64,
        task_logs: logs as u64,
    })
}

/// Deletes up to `limit` runs that `rule` allows, with their task instances, tries and log
/// lines (bottom up, so each count is exact; the foreign keys cascade the same way). Rows
/// another transaction holds are skipped, and a run is checked again once locked, so a run
/// cleared or marked meanwhile stays. Call inside a transaction.
pub async fn delete_runs(conn: &mut PgConnection, rule: &RunRule, limit: i64) -> Result<RunRows> {
    let ids: Vec<i64> = sqlx::query_scalar(&format!(
        "{OLD_RUNS} ORDER BY r.id LIMIT $4 FOR UPDATE OF r SKIP LOCKED"
    ))
    .bind(rule.cutoff)
    .bind(&rule.states)
    .bind(&rule.keep_last_excludes)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(RunRows::default());
    }
    let logs = sqlx::query(
        "DELETE FROM task_logs l USING task_tries tr, task_instances ti
         WHERE l.try_id = tr.id AND tr.ti_id = ti.id AND ti.run_pk = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let tries = sqlx::query(
        "DELETE FROM task_tries tr USING task_instances ti
         WHERE tr.ti_id = ti.id AND ti.run_pk = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let tis = sqlx::query("DELETE FROM task_instances WHERE run_pk = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let runs = sqlx::query("DELETE FROM dag_runs WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(RunRows {
        runs,
        task_instances: tis,
        task_tries: tries,
        task_logs: logs,
    })
}

/// A table cleaned by one recency column alone (plus a fixed condition), and what goes with
/// its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simple {
    /// `event_log` by `dttm`.
    EventLog,
    /// `notifications` by `created_at`, only delivered or given-up ones; with their
    /// `notification_attempts`.
    Notifications,
    /// `missed_intervals` by `recorded_at`.
    MissedIntervals,
    /// `backfills` by `completed_at`, only finished ones no run refers to any more.
    Backfills,
    /// `scheduler_loops` by `last_loop_at`.
    SchedulerLoops,
    /// `workers` by `heartbeat_at`.
    Workers,
}

impl Simple {
    /// `SELECT <key> FROM <table> WHERE <old>`, `$1` the cutoff; and the key's column.
    fn select_old(self) -> (&'static str, &'static str) {
        match self {
            Simple::EventLog => ("SELECT id FROM event_log WHERE dttm < $1", "id"),
            Simple::Notifications => (
                "SELECT id FROM notifications WHERE created_at < $1
                   AND (delivered_at IS NOT NULL OR gave_up_at IS NOT NULL)",
                "id",
            ),
            Simple::MissedIntervals => (
                "SELECT dag_id, logical_date FROM missed_intervals WHERE recorded_at < $1",
                "(dag_id, logical_date)",
            ),
            Simple::Backfills => (
                "SELECT b.id FROM backfills b WHERE b.state <> 'running' AND b.completed_at < $1
                   AND NOT EXISTS (SELECT 1 FROM dag_runs r WHERE r.backfill_id = b.id)",
                "id",
            ),
            Simple::SchedulerLoops => (
                "SELECT scheduler_id FROM scheduler_loops WHERE last_loop_at < $1",
                "scheduler_id",
            ),
            Simple::Workers => (
                "SELECT worker_id FROM workers WHERE heartbeat_at < $1",
                "worker_id",
            ),
        }
    }

    fn table(self) -> &'static str {
        match self {
            Simple::EventLog => "event_log",
            Simple::Notifications => "notifications",
            Simple::MissedIntervals => "missed_intervals",
            Simple::Backfills => "backfills",
            Simple::SchedulerLoops => "scheduler_loops",
            Simple::Workers => "workers",
        }
    }
}

/// Rows of a simple table and of the rows that go with them (notification attempts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimpleRows {
    pub rows: u64,
    pub dependents: u64,
}

/// How many rows of `t` are older than `cutoff` (and may go).
pub async fn count_simple(
    conn: &mut PgConnection,
    t: Simple,
    cutoff: DateTime<Utc>,
) -> Result<SimpleRows> {
    let (old, _) = t.select_old();
    let (rows, dependents): (i64, i64) = match t {
        Simple::Notifications => {
            sqlx::query_as(&format!(
                "WITH doomed AS MATERIALIZED ({old})
                 SELECT (SELECT count(*) FROM doomed),
                        (SELECT count(*) FROM notification_attempts
                         WHERE notification_id IN (SELECT id FROM doomed))"
            ))
            .bind(cutoff)
            .fetch_one(conn)
            .await?
        }
        _ => {
            sqlx::query_as(&format!("SELECT count(*), 0::bigint FROM ({old}) d"))
                .bind(cutoff)
                .fetch_one(conn)
                .await?
        }
    };
    Ok(SimpleRows {
        rows: rows as u64,
        dependents: dependents as u64,
    })
}

/// Deletes up to `limit` rows of `t` older than `cutoff` (and the rows that go with them),
/// skipping rows another transaction holds. Call inside a transaction.
pub async fn delete_simple(
    conn: &mut PgConnection,
    t: Simple,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<SimpleRows> {
    let (old, key) = t.select_old();
    let table = t.table();
    let lock = match t {
        // The `b` alias names the locked table in the backfills query.
        Simple::Backfills => "FOR UPDATE OF b SKIP LOCKED",
        _ => "FOR UPDATE SKIP LOCKED",
    };
    if t == Simple::Notifications {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(&format!("{old} LIMIT $2 {lock}"))
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        if ids.is_empty() {
            return Ok(SimpleRows::default());
        }
        let dependents =
            sqlx::query("DELETE FROM notification_attempts WHERE notification_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        let rows = sqlx::query("DELETE FROM notifications WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        return Ok(SimpleRows { rows, dependents });
    }
    let rows = sqlx::query(&format!(
        "DELETE FROM {table} WHERE {key} IN ({old} LIMIT $2 {lock})"
    ))
    .bind(cutoff)
    .bind(limit)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(SimpleRows {
        rows,
        dependents: 0,
    })
}

/// `VACUUM (ANALYZE)` of `tables` after a clean: the space of the deleted rows becomes
/// reusable and indexes stop leading to dead rows at once, not whenever autovacuum comes by
/// (until then, reads of the newest runs walk past the deleted ones). Not in a transaction.
pub async fn vacuum(pool: &sqlx::PgPool, tables: &[&str]) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!("VACUUM (ANALYZE) {}", tables.join(", ")))
        .execute(pool)
        .await?;
    Ok(())
}
