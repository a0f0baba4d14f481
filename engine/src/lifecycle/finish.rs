//! How a try ended, and what follows: the one place a retry is decided.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::dag::Dag;
use crate::error::Result;
use crate::lifecycle::claim::{self, Claim};
use crate::lifecycle::{retry, run};
use crate::notify;
use crate::state::{RunState, TaskState, TryOutcome};
use crate::store::dags::VersionCache;
use crate::store::tis::{self, NewTiState};
use crate::store::{self, runs};

/// How one try ended, as the executor or the reaper saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum TryEnd {
    Succeeded,
    /// The body (or what it needs) failed; `retryable` is `false` for failures no retry can
    /// fix (a task kind's fatal error, a task missing from its DAG version).
    Failed {
        error: String,
        retryable: bool,
    },
    /// The body ran past the task's `execution_timeout`.
    TimedOut(Duration),
    /// The body panicked.
    Panicked(String),
    /// The worker stopped the body: it is shutting down, or another process failed the try.
    Stopped,
    /// The worker that ran it is gone (or lost the claim): failed by the reaper.
    Lost(String),
}

impl TryEnd {
    /// The outcome stored on the try.
    pub fn outcome(&self) -> TryOutcome {
        match self {
            Self::Succeeded => TryOutcome::Success,
            Self::TimedOut(_) => TryOutcome::TimedOut,
            Self::Lost(_) => TryOutcome::Zombie,
            Self::Failed { .. } | Self::Panicked(_) | Self::Stopped => TryOutcome::Failed,
        }
    }

    /// The error stored on the try and shown in its log.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Succeeded => None,
            Self::Failed { error, .. } => Some(error.clone()),
            Self::TimedOut(after) => Some(format!(
                "timed out after {}",
                humantime::format_duration(*after)
            )),
            Self::Panicked(msg) => Some(format!("the task panicked: {msg}")),
            Self::Stopped => Some("stopped: the worker is shutting down or lost this try".into()),
            Self::Lost(why) => Some(why.clone()),
        }
    }

    /// Whether another try may fix it (if tries are left).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Failed { retryable, .. } => *retryable,
            _ => true,
        }
    }
}

/// One ended try, with what recording it needs.
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
    pub end: TryEnd,
}

/// What recording a batch of outcomes changed.
#[derive(Debug, Default, Clone)]
pub struct BatchResult {
    pub recorded: usize,
    /// Tries whose outcome was dropped: the try had been failed by someone else meanwhile.
    pub stale: usize,
    pub scheduled: usize,
    /// The task instances the outcomes made runnable (a finished task's downstream), by run.
    pub downstream: HashSet<(i64, String)>,
    pub finished_runs: Vec<(i64, RunState)>,
}

/// The state a task instance moves to after the try `f`, and for a retry the delay before
/// the next try (the task's retry policy, [`retry::delay`]).
pub fn next_state(dag: &Dag, f: &Finished) -> (TaskState, Duration) {
    if f.end == TryEnd::Succeeded {
        (TaskState::Success, Duration::ZERO)
    } else if f.end.retryable() && f.try_number < f.max_tries {
        let policy = dag
            .task(&f.task_id)
            .map(|t| t.retry.clone())
            .unwrap_or_default();
        (
            TaskState::UpForRetry,
            retry::delay(&policy, f.try_number.max(1) as u32),
        )
    } else {
        (TaskState::Failed, Duration::ZERO)
    }
}

/// Records outcomes in one transaction: each task instance moves to success, up_for_retry
/// (with its next try's time stored) or failed; then trigger rules run for every touched run.
pub async fn finish_batch(
    pool: &PgPool,
    cache: &VersionCache,
    batch: &[Finished],
) -> Result<BatchResult> {
    if batch.is_empty() {
        return Ok(BatchResult::default());
    }
    let mut tx = pool.begin().await?;
    let out = record(&mut tx, cache, batch).await?;
    if out.scheduled > 0 || !out.finished_runs.is_empty() {
        store::notify_wake(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// [`finish_batch`], and in the same transaction a claim for `worker` (up to `limit`) of
/// what the outcomes made runnable: a chain's next task starts without a wake-up and a
/// claim of its own. This is Airflow's "mini scheduler" (`schedule_after_task_execution`),
/// which schedules a finished task's downstream in the finishing session; here it also takes
/// them, within every pool and limit and only while each is the best runnable candidate, so
/// priority holds. Other runnable work is left to the usual claim, which every woken worker
/// races for ([`Claim::left`] says whether any fitted). Only a finish with downstream to
/// take enters the claim's critical section (the pool rows, [`tis::lock_pools`]), after
/// recording: finishes of independent tasks never wait for one another there.
pub async fn finish_and_claim(
    pool: &PgPool,
    cache: &VersionCache,
    batch: &[Finished],
    worker: &str,
    limit: usize,
) -> Result<(BatchResult, Claim)> {
    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let out = record(&mut tx, cache, batch).await?;
    let taken = if out.downstream.is_empty() || limit == 0 {
        claim::Taken::nothing()
    } else {
        tis::lock_pools(&mut tx).await?;
        claim::claim_locked(&mut tx, worker, limit, Some(&out.downstream)).await?
    };
    // Others are woken for a finished run and for downstream this claim did not take.
    if !out.finished_runs.is_empty() || out.scheduled > taken.claimed.len() {
        store::notify_wake(&mut tx).await?;
    }
    tx.commit().await?;
    Ok((out, taken.with_versions(&mut conn, cache).await))
}

/// The recording itself, in the caller's transaction (which wakes others if needed).
async fn record(
    tx: &mut PgConnection,
    cache: &VersionCache,
    batch: &[Finished],
) -> Result<BatchResult> {
    let mut out = BatchResult::default();
    if batch.is_empty() {
        return Ok(out);
    }
    let mut run_ids: Vec<i64> = batch.iter().map(|f| f.run_pk).collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    runs::lock_runs(tx, &run_ids).await?;

    let mut rows = Vec::with_capacity(batch.len());
    let mut decided = HashMap::with_capacity(batch.len());
    for f in batch {
        let dag = cache.get(tx, &f.dag_id, &f.dag_hash).await?;
        let (state, delay) = next_state(&dag, f);
        decided.insert(f.ti_id, state);
        rows.push(NewTiState {
            ti_id: f.ti_id,
            try_number: f.try_number,
            worker: &f.worker,
            state,
            retry_in: delay.as_secs_f64(),
        });
    }
    let updated = tis::record_outcomes(tx, &rows).await?;
    out.recorded = updated.len();
    out.stale = batch.len() - updated.len();

    let updated: HashSet<i64> = updated.into_iter().collect();
    let recorded: Vec<&Finished> = batch
        .iter()
        .filter(|f| updated.contains(&f.ti_id))
        .collect();
    let errors: Vec<Option<String>> = recorded.iter().map(|f| f.end.error()).collect();
    let closed: Vec<(i64, TryOutcome, Option<&str>)> = recorded
        .iter()
        .zip(&errors)
        .map(|(f, e)| (f.try_id, f.end.outcome(), e.as_deref()))
        .collect();
    tis::close_tries(tx, &closed).await?;
    enqueue_notifications(tx, cache, &recorded, &errors, &decided).await?;

    let mut touched: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
    for f in &recorded {
        touched.insert(f.run_pk, (&f.dag_id, &f.dag_hash));
    }
    settle_runs(tx, cache, &touched, &mut out).await?;
    Ok(out)
}

/// The task-level notifications (on_success / on_retry / on_failure) of the recorded tries,
/// in the recording transaction. Runs are read only for tasks that name notifiers.
async fn enqueue_notifications(
    tx: &mut PgConnection,
    cache: &VersionCache,
    recorded: &[&Finished],
    errors: &[Option<String>],
    decided: &HashMap<i64, TaskState>,
) -> Result<()> {
    let mut by_run: BTreeMap<i64, Vec<(&Finished, &Option<String>)>> = BTreeMap::new();
    for (f, e) in recorded.iter().zip(errors) {
        by_run.entry(f.run_pk).or_default().push((f, e));
    }
    for (run_pk, tries) in by_run {
        let (first, _) = tries[0];
        let dag = cache.get(tx, &first.dag_id, &first.dag_hash).await?;
        let outcomes: Vec<notify::TaskOutcome<'_>> = tries
            .iter()
            .filter_map(|(f, e)| {
                Some(notify::TaskOutcome {
                    ti_id: f.ti_id,
                    task_id: &f.task_id,
                    try_number: f.try_number,
                    state: *decided.get(&f.ti_id)?,
                    error: e.as_deref(),
                })
            })
            .collect();
        if !notify::task_events_wanted(&dag, &outcomes) {
            continue;
        }
        let run = runs::get_by_pk(tx, run_pk).await?;
        notify::enqueue_task_events(tx, &dag, &run, &outcomes).await?;
    }
    Ok(())
}

/// Settles every touched run (locked by the caller), starts queued runs of DAGs where a run
/// just finished (without waiting for their DAG rows: see [`run::start_queued_if_unlocked`])
/// and wakes workers and schedulers if anything became runnable or finished.
pub(crate) async fn settle_all(
    tx: &mut PgConnection,
    cache: &VersionCache,
    touched: &BTreeMap<i64, (&str, &str)>,
    out: &mut BatchResult,
) -> Result<()> {
    settle_runs(tx, cache, touched, out).await?;
    if out.scheduled > 0 || !out.finished_runs.is_empty() {
        store::notify_wake(tx).await?;
    }
    Ok(())
}

/// [`settle_all`] without the wake-up.
async fn settle_runs(
    tx: &mut PgConnection,
    cache: &VersionCache,
    touched: &BTreeMap<i64, (&str, &str)>,
    out: &mut BatchResult,
) -> Result<()> {
    let mut dags_with_free_slot = Vec::new();
    for (&run_pk, &(dag_id, hash)) in touched {
        let dag = cache.get(tx, dag_id, hash).await?;
        let run::Settled {
            scheduled,
            scheduled_tasks,
            finished,
        } = run::settle(tx, run_pk, &dag).await?;
        out.scheduled += scheduled;
        out.downstream
            .extend(scheduled_tasks.into_iter().map(|t| (run_pk, t)));
        if let Some(state) = finished {
            out.finished_runs.push((run_pk, state));
            dags_with_free_slot.push(dag_id);
        }
    }
    dags_with_free_slot.sort_unstable();
    dags_with_free_slot.dedup();
    for dag_id in dags_with_free_slot {
        if run::start_queued_if_unlocked(tx, cache, dag_id).await? > 0 {
            out.scheduled += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_has_its_outcome_text_and_retry_rule() {
        let cases = [
            (TryEnd::Succeeded, TryOutcome::Success, None, true),
            (
                TryEnd::Failed {
                    error: "exit 3".into(),
                    retryable: false,
                },
                TryOutcome::Failed,
                Some("exit 3"),
                false,
            ),
            (
                TryEnd::TimedOut(Duration::from_secs(90)),
                TryOutcome::TimedOut,
                Some("timed out after 1m 30s"),
                true,
            ),
            (
                TryEnd::Panicked("boom".into()),
                TryOutcome::Failed,
                Some("the task panicked: boom"),
                true,
            ),
            (
                TryEnd::Stopped,
                TryOutcome::Failed,
                Some("stopped: the worker is shutting down or lost this try"),
                true,
            ),
            (
                TryEnd::Lost("worker w gone".into()),
                TryOutcome::Zombie,
                Some("worker w gone"),
                true,
            ),
        ];
        for (end, outcome, error, retryable) in cases {
            assert_eq!(end.outcome(), outcome, "{end:?}");
            assert_eq!(end.error().as_deref(), error, "{end:?}");
            assert_eq!(end.retryable(), retryable, "{end:?}");
        }
    }
}
