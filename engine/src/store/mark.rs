//! The statements of marking (a user setting task instances or a run to a state by hand):
//! reading and locking what a mark may change, writing the new states, closing the tries it
//! stopped, notes, and the `upiflow_stop` channel that tells workers to stop those tries at
//! once. SQL and row types only: what is marked, and what follows, is decided by
//! `crate::lifecycle::mark`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::state::{RunState, TaskState, TryOutcome};

/// Channel on which the running tries that must stop are announced to every worker, as
/// comma-separated `TI_ID:TRY_NUMBER` pairs.
pub const STOP_CHANNEL: &str = "upiflow_stop";

/// Largest NOTIFY payload we send (Postgres allows just under 8000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// Primary keys of the runs of `dag_id` whose logical date lies in `[from, to]` (an open end
/// when `None`), in id order.
pub async fn runs_between(
    conn: &mut PgConnection,
    dag_id: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM dag_runs WHERE dag_id = $1
           AND ($2::timestamptz IS NULL OR logical_date >= $2)
           AND ($3::timestamptz IS NULL OR logical_date <= $3)
         ORDER BY id",
    )
    .bind(dag_id)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?)
}

/// A task instance a mark may change, as it is before the mark.
#[derive(Debug, Clone, FromRow)]
pub struct MarkCandidate {
    pub id: i64,
    pub run_pk: i64,
    pub run_id: String,
    pub task_id: String,
    pub state: Option<TaskState>,
    pub try_number: i32,
    pub logical_date: DateTime<Utc>,
}

/// Locks and reads the task instances of the runs `run_pks` (the caller holds their run
/// locks), only those of `task_ids` when given, by logical date then task id.
pub async fn lock_candidates(
    conn: &mut PgConnection,
    run_pks: &[i64],
    task_ids: Option<&[String]>,
) -> Result<Vec<MarkCandidate>> {
    Ok(sqlx::query_as(
        "SELECT ti.id, ti.run_pk, ti.run_id, ti.task_id, ti.state, ti.try_number, r.logical_date
         FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk
         WHERE ti.run_pk = ANY($1) AND ($2::text[] IS NULL OR ti.task_id = ANY($2))
         ORDER BY r.logical_date, ti.run_pk, ti.task_id
         FOR UPDATE OF ti",
    )
    .bind(run_pks)
    .bind(task_ids)
    .fetch_all(conn)
    .await?)
}

/// Gives task instances the states a mark decided: a final state ends now (unless it had
/// ended), a task instance that never started counts as started now, no retry is pending.
pub async fn set_states(conn: &mut PgConnection, changes: &[(i64, TaskState)]) -> Result<()> {
    let (ids, states): (Vec<i64>, Vec<TaskState>) = changes.iter().copied().unzip();
    sqlx::query(
        "UPDATE task_instances ti SET state = u.state, next_retry_at = NULL,
            start_date = coalesce(ti.start_date, now()),
            end_date = coalesce(ti.end_date, now())
         FROM UNNEST($1::bigint[], $2::ti_state[]) AS u(id, state)
         WHERE ti.id = u.id",
    )
    .bind(&ids)
    .bind(&states)
    .execute(conn)
    .await?;
    Ok(())
}

/// Closes the open try `try_number` of each task instance with the outcome `marked` and the
/// given error text, and writes that text as a last system line of the try's log. Returns
/// the ids of the tries closed.
pub async fn close_marked_tries(
    conn: &mut PgConnection,
    tries: &[(i64, i32, String)],
) -> Result<Vec<i64>> {
    let ids: Vec<i64> = tries.iter().map(|t| t.0).collect();
    let numbers: Vec<i32> = tries.iter().map(|t| t.1).collect();
    let errors: Vec<&str> = tries.iter().map(|t| t.2.as_str()).collect();
    let closed: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE task_tries t SET ended_at = now(), outcome = $4, error = u.error
         FROM UNNEST($1::bigint[], $2::int[], $3::text[]) AS u(ti_id, try_number, error)
         WHERE t.ti_id = u.ti_id AND t.try_number = u.try_number AND t.ended_at IS NULL
         RETURNING t.id, u.error",
    )
    .bind(&ids)
    .bind(&numbers)
    .bind(&errors)
    .bind(TryOutcome::Marked)
    .fetch_all(&mut *conn)
    .await?;
    let (try_ids, lines): (Vec<i64>, Vec<String>) = closed.into_iter().unzip();
    sqlx::query(
        "INSERT INTO task_logs (try_id, at, stream, line)
         SELECT id, clock_timestamp(), 'system', line FROM UNNEST($1::bigint[], $2::text[]) AS u(id, line)",
    )
    .bind(&try_ids)
    .bind(&lines)
    .execute(conn)
    .await?;
    Ok(try_ids)
}

/// Puts `upstream_failed` task instances of a run among `task_ids` back to "no status", so
/// the trigger rules decide them again. Returns how many.
pub async fn reset_upstream_failed(
    conn: &mut PgConnection,
    run_pk: i64,
    task_ids: &[String],
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE task_instances SET state = NULL, queued_at = NULL, start_date = NULL,
            end_date = NULL
         WHERE run_pk = $1 AND task_id = ANY($2) AND state = 'upstream_failed'",
    )
    .bind(run_pk)
    .bind(task_ids)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Sets a run's state by hand: a final state ends it now (and it counts as started if it
/// never was); `queued` puts it back in the queue, queued now, neither started nor ended.
pub async fn set_run_state(conn: &mut PgConnection, run_pk: i64, state: RunState) -> Result<()> {
    sqlx::query(
        "UPDATE dag_runs SET state = $2,
            queued_at = CASE WHEN $2 = 'queued' THEN now() ELSE queued_at END,
            start_date = CASE WHEN $2 = 'queued' THEN NULL ELSE coalesce(start_date, now()) END,
            end_date = CASE WHEN $2 IN ('success', 'failed') THEN now() END
         WHERE id = $1",
    )
    .bind(run_pk)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets (or with `None` removes) a run's note, recording who wrote it.
pub async fn set_run_note(
    conn: &mut PgConnection,
    run_pk: i64,
    note: Option<&str>,
    user: &str,
) -> Result<()> {
    sqlx::query("UPDATE dag_runs SET note = $2, note_user = $3 WHERE id = $1")
        .bind(run_pk)
        .bind(note)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets (or with `None` removes) a task instance's note, recording who wrote it.
pub async fn set_ti_note(
    conn: &mut PgConnection,
    ti_id: i64,
    note: Option<&str>,
    user: &str,
) -> Result<()> {
    sqlx::query("UPDATE task_instances SET note = $2, note_user = $3 WHERE id = $1")
        .bind(ti_id)
        .bind(note)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Tells every worker, once the current transaction commits, to stop these running tries,
/// `(task instance id, try number)`.
pub async fn notify_stop(conn: &mut PgConnection, tries: &[(i64, i32)]) -> Result<()> {
    for payload in stop_payloads(tries) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(STOP_CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Comma-separated `id:try` pairs, split so that no payload passes [`MAX_PAYLOAD`] bytes.
fn stop_payloads(tries: &[(i64, i32)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for (id, n) in tries {
        let s = format!("{id}:{n}");
        if !cur.is_empty() && cur.len() + 1 + s.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&s);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The tries of a stop payload (malformed parts are ignored: nothing but upiflow sends here).
fn parse_stop(payload: &str) -> Vec<(i64, i32)> {
    payload
        .split(',')
        .filter_map(|p| {
            let (id, n) = p.trim().split_once(':')?;
            Some((id.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

/// What a worker does with the tries `(task instance id, try number)` it is told to stop.
pub type OnStop = Arc<dyn Fn(Vec<(i64, i32)>) + Send + Sync>;

/// Relays `NOTIFY upiflow_stop` to `on_stop` (with the tries to stop) until `stop`;
/// reconnects after errors (workers also check their tries at every heartbeat, so a lost
/// connection only delays a stop).
pub async fn relay_stops(pool: PgPool, on_stop: OnStop, stop: CancellationToken) {
    loop {
        let connect = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(STOP_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = stop.cancelled() => return,
            l = connect => match l {
                Ok(l) => l,
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for stops; relying on heartbeats meanwhile");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                    }
                }
            },
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = listener.recv() => match msg {
                    Ok(n) => on_stop(parse_stop(n.payload())),
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection for stops lost; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_payloads_split_below_the_notify_limit_and_parse_back() {
        let tries: Vec<(i64, i32)> = (1_000_000_000..1_000_002_000).map(|i| (i, 7)).collect();
        let payloads = stop_payloads(&tries);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let back: Vec<(i64, i32)> = payloads.iter().flat_map(|p| parse_stop(p)).collect();
        assert_eq!(back, tries);
        assert_eq!(parse_stop("5:1,junk,6:x,7:2"), [(5, 1), (7, 2)]);
        assert!(stop_payloads(&[]).is_empty());
    }
}
