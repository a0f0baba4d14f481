//! Creating scheduled runs: every interval `[start, end)` whose end has passed gets one run
//! (logical date = start), oldest first; with catch-up off, skipped intervals go to the
//! missed-interval ledger instead of vanishing.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::dag::Dag;
use crate::error::Result;
use crate::state::RunType;
use crate::store::missed::{self, MissedReason, Skipped};
use crate::store::runs::{self, NewRun};
use crate::store::scheduling;

pub use crate::store::missed::Missed;
pub use crate::store::scheduling::try_lock_dag;

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
    // The DAG row before its runs (ARCHITECTURE.md, lock order).
    let (cursor, unpaused_at) = scheduling::lock_cursor(conn, &dag.dag_id).await?;
    let mut cursor = match cursor.or_else(|| first_start(dag, now)) {
        Some(c) => c,
        None => return Ok(out),
    };
    if !dag.catchup
        && let Some((latest, _)) = schedule.latest_complete_interval(now, tz)
        && cursor < latest
    {
        // Record what is skipped, then jump to the latest complete interval.
        let mut skipped = Vec::new();
        let mut t = cursor;
        while t < latest && skipped.len() < LEDGER_CAP {
            let Some(end) = schedule.next_after(t, tz) else {
                break;
            };
            let reason = if unpaused_at.is_some_and(|u| end <= u) {
                MissedReason::Paused
            } else {
                MissedReason::CatchupDisabled
            };
            skipped.push(Skipped {
                start: t,
                end,
                reason,
            });
            t = end;
        }
        if t < latest {
            tracing::warn!(dag_id = %dag.dag_id, "more than {LEDGER_CAP} skipped intervals; the ledger keeps the oldest");
        }
        out.missed = missed::record(conn, &dag.dag_id, &skipped).await? as usize;
        cursor = latest;
    }
    let queued = scheduling::queued_runs(conn, &dag.dag_id).await?;
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
    scheduling::set_cursor(conn, &dag.dag_id, cursor).await?;
    Ok(out)
}

/// Ledger entries of `dag_id` that still have no run, oldest first.
pub async fn open_missed(conn: &mut PgConnection, dag_id: &str) -> Result<Vec<Missed>> {
    missed::open(conn, dag_id).await
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
