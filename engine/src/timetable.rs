//! Creating scheduled runs: every interval `[start, end)` whose end has passed gets one run
//! (logical date = start), oldest first; with catch-up off, skipped intervals go to the
//! missed-interval ledger instead of vanishing.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::dag::Dag;
use crate::error::Result;
use crate::state::RunType;
use crate::store::runs::{self, NewRun};

/// How far ahead of the workers run creation may go: queued runs per DAG.
pub const QUEUE_AHEAD: i64 = 256;
/// Most intervals recorded in the ledger in one pass.
const LEDGER_CAP: usize = 10_000;

/// What one pass created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Created {
    pub runs: usize,
    pub missed: usize,
}

/// The first interval of a DAG that has never been scheduled.
fn first_start(dag: &Dag, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let s = dag.schedule();
    let tz = dag.tz();
    match dag.start_date {
        // The first tick at or after start_date.
        Some(start) if dag.catchup => s
            .prev_at_or_before(start, tz)
            .filter(|t| *t == start)
            .or_else(|| s.next_after(start, tz)),
        // Without catch-up only the latest complete interval runs (if it starts after start_date).
        Some(start) => {
            let (latest, _) = s.latest_complete_interval(now, tz)?;
            Some(if latest >= start {
                latest
            } else {
                s.prev_at_or_before(start, tz)
                    .filter(|t| *t == start)
                    .or_else(|| s.next_after(start, tz))?
            })
        }
        None => s.latest_complete_interval(now, tz).map(|(start, _)| start),
    }
}

/// Creates the due scheduled runs of `dag` (version `hash`) as of `now`. The caller holds the
/// DAG's scheduling lock (see `try_lock_dag`), so only one scheduler advances its cursor.
pub async fn create_due_runs(
    conn: &mut PgConnection,
    dag: &Dag,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Created> {
    let mut out = Created::default();
    let schedule = dag.schedule();
    if schedule.is_none() {
        return Ok(out);
    }
    let tz = dag.tz();
    let (cursor, unpaused_at): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        // The DAG row first, then its runs: the order trigger and backfill use too, so
        // creating runs here can never deadlock with them.
        sqlx::query_as("SELECT next_dagrun, unpaused_at FROM dags WHERE dag_id = $1 FOR UPDATE")
            .bind(&dag.dag_id)
            .fetch_one(&mut *conn)
            .await?;
    let mut cursor = match cursor.or_else(|| first_start(dag, now)) {
        Some(c) => c,
        None => return Ok(out),
    };
    if !dag.catchup
        && let Some((latest, _)) = schedule.latest_complete_interval(now, tz)
        && cursor < latest
    {
        // Record what is skipped, then jump to the latest complete interval.
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut reasons = Vec::new();
        let mut t = cursor;
        while t < latest && starts.len() < LEDGER_CAP {
            let Some(end) = schedule.next_after(t, tz) else {
                break;
            };
            starts.push(t);
            ends.push(end);
            reasons.push(if unpaused_at.is_some_and(|u| end <= u) {
                "paused"
            } else {
                "catchup_disabled"
            });
            t = end;
        }
        if t < latest {
            tracing::warn!(dag_id = %dag.dag_id, "more than {LEDGER_CAP} skipped intervals; the ledger keeps the oldest");
        }
        let done = sqlx::query(
            "INSERT INTO missed_intervals (dag_id, logical_date, data_interval_start, data_interval_end, reason)
             SELECT $1, s, s, e, r::missed_reason
             FROM UNNEST($2::timestamptz[], $3::timestamptz[], $4::text[]) AS u(s, e, r)
             ON CONFLICT DO NOTHING",
        )
        .bind(&dag.dag_id)
        .bind(&starts)
        .bind(&ends)
        .bind(&reasons)
        .execute(&mut *conn)
        .await?;
        out.missed = done.rows_affected() as usize;
        cursor = latest;
    }
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state = 'queued'")
            .bind(&dag.dag_id)
            .fetch_one(&mut *conn)
            .await?;
    let mut room = (QUEUE_AHEAD - queued).max(0);
    while room > 0 {
        if dag.end_date.is_some_and(|end| cursor >= end) {
            break;
        }
        let Some(end) = schedule.next_after(cursor, tz) else {
            break;
        };
        if end > now {
            break;
        }
        let new = NewRun {
            run_id: runs::make_run_id(RunType::Scheduled, cursor),
            logical_date: cursor,
            data_interval: (cursor, end),
            run_type: RunType::Scheduled,
            conf: serde_json::json!({}),
        };
        // A run that exists already (say, a manual one for this date) is left alone.
        if runs::create(conn, dag, hash, &new).await?.is_some() {
            out.runs += 1;
            room -= 1;
        }
        cursor = end;
    }
    sqlx::query("UPDATE dags SET next_dagrun = $2 WHERE dag_id = $1")
        .bind(&dag.dag_id)
        .bind(cursor)
        .execute(&mut *conn)
        .await?;
    Ok(out)
}

/// Takes the DAG's scheduling lock for this transaction, or says another scheduler has it.
pub async fn try_lock_dag(conn: &mut PgConnection, dag_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('upiflow.schedule'), hashtext($1))",
    )
    .bind(dag_id)
    .fetch_one(conn)
    .await?)
}

/// An interval in the missed-interval ledger.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Missed {
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
}

/// Ledger entries of `dag_id` that still have no run, oldest first.
pub async fn open_missed(conn: &mut PgConnection, dag_id: &str) -> Result<Vec<Missed>> {
    Ok(sqlx::query_as(
        "SELECT m.data_interval_start, m.data_interval_end, m.reason::text AS reason, m.recorded_at
         FROM missed_intervals m
         WHERE m.dag_id = $1 AND NOT EXISTS (
             SELECT 1 FROM dag_runs r WHERE r.dag_id = m.dag_id AND r.logical_date = m.logical_date)
         ORDER BY m.logical_date",
    )
    .bind(dag_id)
    .fetch_all(conn)
    .await?)
}

/// The first and last logical dates of `dag_id`'s open ledger entries: the range a backfill
/// of the missed intervals covers (`None` when nothing is missed).
pub async fn missed_span(
    conn: &mut PgConnection,
    dag_id: &str,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let open = open_missed(conn, dag_id).await?;
    Ok(open
        .first()
        .zip(open.last())
        .map(|(f, l)| (f.data_interval_start, l.data_interval_start)))
}
