//! Marking: a user sets task instances or a run to a state by hand, as Airflow's "mark"
//! (`set_state`, `set_dag_run_state_to_success|failed|queued`).
//!
//! A marked task instance that was running has its try stopped: the try is closed here
//! (outcome `marked`, error "marked STATE by USER"), and announced (task instance id and try
//! number) on `upiflow_stop`, so the worker running it drops the body (killing its processes)
//! at once,
//! and the worker's own report of that try is dropped as stale (it no longer owns a running
//! try). Then the trigger rules settle every touched run: task instances that were
//! `upstream_failed` downstream of a marked one are decided again (so marking a failed task
//! success lets its downstream run), and a finished run reopens when it has work again or
//! finishes with the state its task instances now give.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::PgPool;

use crate::error::{EngineError, Result};
use crate::lifecycle::finish::{BatchResult, settle_all};
use crate::lifecycle::run;
use crate::state::{RunState, TaskState};
use crate::store::dags::VersionCache;
use crate::store::mark::{self, MarkCandidate};
use crate::store::{self, dags, runs};

/// The most characters a note may have (Airflow's limit).
pub const MAX_NOTE: usize = 1000;

/// A state a task instance may be marked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiMark {
    Success,
    Failed,
    Skipped,
}

impl TiMark {
    /// The task instance state it stands for.
    pub fn state(self) -> TaskState {
        match self {
            Self::Success => TaskState::Success,
            Self::Failed => TaskState::Failed,
            Self::Skipped => TaskState::Skipped,
        }
    }

    /// `success`, `failed` or `skipped` (any case), else `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            "skipped" => Some(Self::Skipped),
            _ => None,
        }
    }
}

/// A state a run may be marked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMark {
    Success,
    Failed,
    Queued,
}

impl RunMark {
    /// The run state it stands for.
    pub fn state(self) -> RunState {
        match self {
            Self::Success => RunState::Success,
            Self::Failed => RunState::Failed,
            Self::Queued => RunState::Queued,
        }
    }

    /// `success`, `failed` or `queued` (any case), else `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            "queued" => Some(Self::Queued),
            _ => None,
        }
    }
}

/// What to mark: a task instance of a run and, on request, its relatives.
#[derive(Debug, Clone)]
pub struct MarkTasks<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub state: TiMark,
    /// Also every task upstream of it (transitively), in the same runs.
    pub upstream: bool,
    /// Also every task downstream of it (transitively), in the same runs.
    pub downstream: bool,
    /// Also the same tasks in the DAG's runs with earlier logical dates.
    pub past: bool,
    /// Also the same tasks in the DAG's runs with later logical dates.
    pub future: bool,
    /// Only say what would change.
    pub dry_run: bool,
    /// Who marks (recorded on stopped tries).
    pub by: &'a str,
}

/// A task instance a mark changed (or, in a dry run, would change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub ti_id: i64,
    pub run_pk: i64,
    pub run_id: String,
    pub task_id: String,
    pub from: Option<TaskState>,
    pub to: TaskState,
    /// Its current try.
    pub try_number: i32,
    /// It was running: its try was stopped.
    pub stopped: bool,
}

/// Refuses a note longer than [`MAX_NOTE`] characters.
pub fn check_note(note: &str) -> Result<()> {
    let len = note.chars().count();
    if len > MAX_NOTE {
        return Err(EngineError::NoteTooLong { len, max: MAX_NOTE });
    }
    Ok(())
}

/// Marks the task instances `m` selects with `m.state`: those not in it already, in
/// logical-date order. Refuses with a conflict if none would change (Airflow's 409); a dry
/// run then answers an empty list.
pub async fn mark_tasks(
    pool: &PgPool,
    cache: &VersionCache,
    m: &MarkTasks<'_>,
) -> Result<Vec<Marked>> {
    crate::transient::retry("mark", || mark_tasks_once(pool, cache, m)).await
}

async fn mark_tasks_once(
    pool: &PgPool,
    cache: &VersionCache,
    m: &MarkTasks<'_>,
) -> Result<Vec<Marked>> {
    let mut tx = pool.begin().await?;
    if dags::get(&mut tx, m.dag_id).await?.is_none() {
        return Err(EngineError::DagNotFound(m.dag_id.into()));
    }
    let run = runs::get(&mut tx, m.dag_id, m.run_id).await?;
    let dag = cache.get(&mut tx, m.dag_id, &run.dag_hash).await?;
    if dag.task(m.task_id).is_none() {
        return Err(EngineError::TaskNotFound {
            dag_id: m.dag_id.into(),
            task_id: m.task_id.into(),
        });
    }
    let mut task_ids: BTreeSet<String> = BTreeSet::from([m.task_id.to_string()]);
    if m.downstream {
        task_ids.extend(dag.all_downstream(m.task_id).iter().map(|t| t.id.clone()));
    }
    if m.upstream {
        task_ids.extend(dag.all_upstream(m.task_id).iter().map(|t| t.id.clone()));
    }
    let run_pks = if m.past || m.future {
        let from = (!m.past).then_some(run.logical_date);
        let to = (!m.future).then_some(run.logical_date);
        mark::runs_between(&mut tx, m.dag_id, from, to).await?
    } else {
        vec![run.id]
    };
    let locked = runs::lock_runs(&mut tx, &run_pks).await?;
    let run_pks: Vec<i64> = locked.iter().map(|l| l.0).collect();
    let task_ids: Vec<String> = task_ids.into_iter().collect();
    let candidates = mark::lock_candidates(&mut tx, &run_pks, Some(&task_ids)).await?;
    let target = m.state.state();
    let changes: Vec<Marked> = candidates
        .iter()
        .filter(|c| c.state != Some(target))
        .map(|c| marked(c, target))
        .collect();
    if changes.is_empty() && !m.dry_run {
        return Err(EngineError::MarkUnchanged {
            task_id: m.task_id.into(),
            state: target.to_string(),
        });
    }
    if m.dry_run {
        tx.rollback().await?;
        return Ok(changes);
    }
    apply(&mut tx, &changes, m.by).await?;

    // Task instances that could not run because of a failure upstream are decided again
    // now that the failure may be gone.
    let mut touched: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
    let mut by_run: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for c in &changes {
        by_run.entry(c.run_pk).or_default().push(&c.task_id);
    }
    for (run_pk, marked_ids) in &by_run {
        let Some((_, state, dag_id, hash)) = locked.iter().find(|l| l.0 == *run_pk) else {
            continue;
        };
        let dag = cache.get(&mut tx, dag_id, hash).await?;
        let mut below: BTreeSet<String> = BTreeSet::new();
        for t in marked_ids {
            below.extend(dag.all_downstream(t).iter().map(|d| d.id.clone()));
        }
        for t in marked_ids {
            below.remove(*t);
        }
        let below: Vec<String> = below.into_iter().collect();
        mark::reset_upstream_failed(&mut tx, *run_pk, &below).await?;
        // A queued run is settled when it starts; a finished one reopens to be settled
        // again (it finishes at once if everything is final).
        match state {
            RunState::Queued => continue,
            RunState::Success | RunState::Failed => runs::reopen(&mut tx, *run_pk).await?,
            RunState::Running => {}
        }
        touched.insert(*run_pk, (dag_id.as_str(), hash.as_str()));
    }
    let mut out = BatchResult::default();
    settle_all(&mut tx, cache, &touched, &mut out).await?;
    // Pool slots and task limits may have come free.
    store::notify_wake(&mut tx).await?;
    tx.commit().await?;
    Ok(changes)
}

fn marked(c: &MarkCandidate, to: TaskState) -> Marked {
    Marked {
        ti_id: c.id,
        run_pk: c.run_pk,
        run_id: c.run_id.clone(),
        task_id: c.task_id.clone(),
        from: c.state,
        to,
        try_number: c.try_number,
        stopped: c.state == Some(TaskState::Running),
    }
}

/// Writes the changes, closes and announces the tries they stop.
async fn apply(tx: &mut sqlx::PgConnection, changes: &[Marked], by: &str) -> Result<()> {
    let states: Vec<(i64, TaskState)> = changes.iter().map(|c| (c.ti_id, c.to)).collect();
    mark::set_states(tx, &states).await?;
    let stopped: Vec<(i64, i32, String)> = changes
        .iter()
        .filter(|c| c.stopped)
        .map(|c| (c.ti_id, c.try_number, format!("marked {} by {by}", c.to)))
        .collect();
    if !stopped.is_empty() {
        mark::close_marked_tries(tx, &stopped).await?;
        let tries: Vec<(i64, i32)> = stopped.iter().map(|s| (s.0, s.1)).collect();
        mark::notify_stop(tx, &tries).await?;
    }
    Ok(())
}

/// Marks a run as Airflow does: `success` sets every task instance not in success to
/// success; `failed` fails the running ones and skips the unfinished ones; both end the run
/// in that state. `queued` puts the run back in the queue (its task instances as they are),
/// to start again within the DAG's limits. Returns the task instances changed.
pub async fn mark_run(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    state: RunMark,
    by: &str,
) -> Result<Vec<Marked>> {
    crate::transient::retry("mark run", || {
        mark_run_once(pool, cache, dag_id, run_id, state, by)
    })
    .await
}

async fn mark_run_once(
    pool: &PgPool,
    cache: &VersionCache,
    dag_id: &str,
    run_id: &str,
    state: RunMark,
    by: &str,
) -> Result<Vec<Marked>> {
    let mut tx = pool.begin().await?;
    // Lock order: the DAG row, then its run rows.
    if runs::lock_dag_for_start(&mut tx, dag_id, false)
        .await?
        .is_none()
    {
        return Err(EngineError::DagNotFound(dag_id.into()));
    }
    let run = runs::get(&mut tx, dag_id, run_id).await?;
    runs::lock_runs(&mut tx, &[run.id]).await?;
    let candidates = mark::lock_candidates(&mut tx, &[run.id], None).await?;
    let changes: Vec<Marked> = candidates
        .iter()
        .filter_map(|c| run_mark_decision(state, c.state).map(|to| marked(c, to)))
        .collect();
    if !changes.is_empty() {
        apply(&mut tx, &changes, by).await?;
    }
    mark::set_run_state(&mut tx, run.id, state.state()).await?;
    // A run that ended frees a slot; a queued one may start at once.
    run::start_queued(&mut tx, cache, dag_id).await?;
    store::notify_wake(&mut tx).await?;
    tx.commit().await?;
    Ok(changes)
}

/// The state a task instance in `from` moves to when its run is marked `mark`, if any.
fn run_mark_decision(mark: RunMark, from: Option<TaskState>) -> Option<TaskState> {
    use TaskState::*;
    match mark {
        RunMark::Success => (from != Some(Success)).then_some(Success),
        RunMark::Failed => match from {
            Some(Running) => Some(Failed),
            None | Some(Scheduled | Queued | UpForRetry) => Some(Skipped),
            Some(Success | Failed | UpstreamFailed | Skipped) => None,
        },
        RunMark::Queued => None,
    }
}

/// Sets (`Some`) or removes (`None`) the note of a run.
pub async fn set_run_note(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    note: Option<&str>,
    by: &str,
) -> Result<()> {
    if let Some(n) = note {
        check_note(n)?;
    }
    crate::transient::retry("note", || async {
        let mut tx = pool.begin().await?;
        let run = runs::get(&mut tx, dag_id, run_id).await?;
        mark::set_run_note(&mut tx, run.id, note, by).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

/// Sets (`Some`) or removes (`None`) the note of a task instance.
pub async fn set_task_note(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    note: Option<&str>,
    by: &str,
) -> Result<()> {
    if let Some(n) = note {
        check_note(n)?;
    }
    crate::transient::retry("note", || async {
        let mut tx = pool.begin().await?;
        let run = runs::get(&mut tx, dag_id, run_id).await?;
        let Some(ti) = mark::lock_candidates(&mut tx, &[run.id], Some(&[task_id.to_string()]))
            .await?
            .pop()
        else {
            return Err(EngineError::TaskNotFound {
                dag_id: dag_id.into(),
                task_id: task_id.into(),
            });
        };
        mark::set_ti_note(&mut tx, ti.id, note, by).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    #[test]
    fn marking_a_run_failed_fails_running_and_skips_unfinished_as_airflow_3() {
        let f = |s| run_mark_decision(RunMark::Failed, s);
        assert_eq!(f(Some(Running)), Some(Failed));
        for s in [None, Some(Scheduled), Some(Queued), Some(UpForRetry)] {
            assert_eq!(f(s), Some(Skipped), "{s:?}");
        }
        for s in [Success, Failed, UpstreamFailed, Skipped] {
            assert_eq!(f(Some(s)), None, "{s:?}");
        }
    }

    #[test]
    fn marking_a_run_success_makes_every_other_state_success_and_queued_changes_none() {
        assert_eq!(run_mark_decision(RunMark::Success, Some(Success)), None);
        for s in [None, Some(Running), Some(Failed), Some(UpstreamFailed)] {
            assert_eq!(run_mark_decision(RunMark::Success, s), Some(Success));
            assert_eq!(run_mark_decision(RunMark::Queued, s), None);
        }
    }

    #[test]
    fn mark_states_parse_as_airflow_spells_them() {
        assert_eq!(TiMark::parse("SUCCESS"), Some(TiMark::Success));
        assert_eq!(TiMark::parse("skipped"), Some(TiMark::Skipped));
        assert_eq!(TiMark::parse("running"), None);
        assert_eq!(RunMark::parse("queued"), Some(RunMark::Queued));
        assert_eq!(RunMark::parse("skipped"), None);
        assert!(check_note(&"x".repeat(1000)).is_ok());
        assert!(check_note(&"x".repeat(1001)).is_err());
    }
}
