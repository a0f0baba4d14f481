//! Operations users ask for (trigger, wait), shared by the CLI, the scheduler and the web.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::dag::Dag;
use crate::error::{EngineError, Result};
use crate::state::{RunState, RunType};
use crate::store::dags::VersionCache;
use crate::store::runs::{self, NewRun, RunRow};
use crate::store::{self, dags};

/// A request for a new run.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// For scheduled DAGs the run covers the schedule interval that contains this instant;
    /// `None` means the latest complete interval (for unscheduled DAGs: now).
    pub logical_date: Option<DateTime<Utc>>,
    pub conf: Value,
    pub run_type: RunType,
    /// The run's id; `None`: upiflow's `<type>__<logical date>`. Checked by [`check_run_id`].
    pub run_id: Option<String>,
    /// Who asks for it (recorded as the run's `triggering_user_name`).
    pub triggered_by: Option<String>,
}

impl Default for Trigger {
    fn default() -> Self {
        Self {
            logical_date: None,
            conf: Value::Object(Default::default()),
            run_type: RunType::Manual,
            run_id: None,
            triggered_by: None,
        }
    }
}

/// The longest run id (Airflow's `dag_run.run_id` column is 250 characters).
pub const RUN_ID_MAX: usize = 250;

/// Refuses a run id a client chose that Airflow would refuse: empty, longer than 250
/// characters, or with characters outside Airflow's default `allowed_run_id_pattern`
/// (`^[A-Za-z0-9_.~:+-]+$`); and `~`, which the API reads as "every run".
pub fn check_run_id(id: &str) -> Result<()> {
    let bad = |why: String| Err(EngineError::RunIdInvalid(format!("dag_run_id: {why}")));
    if id.is_empty() || id.chars().count() > RUN_ID_MAX {
        return bad(format!("must be 1 to {RUN_ID_MAX} characters"));
    }
    if id == "~" {
        return bad("`~` stands for every run in the API; choose another id".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.~:+-".contains(*c)))
    {
        return bad(format!(
            "`{id}` has the character {c:?}; a run id is letters, digits and `_.~:+-` \
             (Airflow's allowed_run_id_pattern)"
        ));
    }
    Ok(())
}

/// The logical date and data interval a trigger resolves to. For scheduled DAGs the logical
/// date is always the start of a schedule interval, as for scheduled runs, so `ds` names the
/// day the run computes whatever started it.
pub fn resolve_interval(
    dag: &Dag,
    at: Option<DateTime<Utc>>,
) -> (DateTime<Utc>, (DateTime<Utc>, DateTime<Utc>)) {
    let tz = dag.tz();
    let now = Utc::now();
    let interval = match at {
        Some(t) => dag.schedule().interval_containing(t, tz),
        None => dag.schedule().latest_complete_interval(now, tz),
    };
    match interval {
        Some((start, end)) => (start, (start, end)),
        None => {
            let t = at.unwrap_or(now);
            (t, (t, t))
        }
    }
}

/// Creates a run of `dag` and starts it if the DAG has room for it. A second run for the same
/// logical date is refused (`Conflict`).
///
/// The run uses the version of the DAG the database holds (`dags.latest_hash`, moved only by
/// the scheduler's DAG-file sync), as in Airflow 3 a manual run uses the latest serialized
/// DAG: a caller reading a stale DAG folder never moves it backwards. `dag` itself is stored
/// as a version, and becomes the current one only if the database did not know the DAG yet.
/// The run's `dag_hash` says which version it got; callers compare it with
/// `dag.version_hash()` to warn about a local definition that differs.
pub async fn trigger(
    pool: &PgPool,
    cache: &VersionCache,
    dag: &Dag,
    req: &Trigger,
) -> Result<RunRow> {
    crate::conf::check(dag, &req.conf)?;
    if let Some(id) = &req.run_id {
        check_run_id(id)?;
    }
    let run = crate::transient::retry("trigger", || trigger_once(pool, cache, dag, req)).await?;
    // Read it again: starting it may have moved it on already.
    crate::transient::retry("trigger", || async {
        let mut conn = pool.acquire().await?;
        runs::get_by_pk(&mut conn, run.id).await
    })
    .await
}

async fn trigger_once(
    pool: &PgPool,
    cache: &VersionCache,
    dag: &Dag,
    req: &Trigger,
) -> Result<RunRow> {
    let mut tx = pool.begin().await?;
    // Takes the `dags` row before any run row (lock order).
    let version = dags::register(&mut tx, dag).await?;
    let hash = version.latest_hash;
    let current: Arc<Dag>;
    let dag = if hash == version.hash {
        dag
    } else {
        current = cache.get(&mut tx, &dag.dag_id, &hash).await?;
        // The conf must fit the version that runs.
        crate::conf::check(&current, &req.conf)?;
        &*current
    };
    let (logical_date, data_interval) = resolve_interval(dag, req.logical_date);
    let new = NewRun {
        run_id: req
            .run_id
            .clone()
            .unwrap_or_else(|| runs::make_run_id(req.run_type, logical_date)),
        logical_date,
        data_interval,
        run_type: req.run_type,
        conf: req.conf.clone(),
    };
    let Some(run) = runs::create(&mut tx, dag, &hash, &new).await? else {
        // A run id the caller chose that is taken is Airflow's 409 naming the id; an id made
        // from the logical date that is taken means that date has its run, said as such.
        if req.run_id.is_some() && runs::exists(&mut tx, &dag.dag_id, &new.run_id).await? {
            return Err(EngineError::RunIdExists {
                dag_id: dag.dag_id.clone(),
                run_id: new.run_id,
            });
        }
        let existing = runs::run_id_at(&mut tx, &dag.dag_id, logical_date, &new.run_id).await?;
        let existing = existing.unwrap_or_default();
        return Err(EngineError::RunExists {
            dag_id: dag.dag_id.clone(),
            logical_date,
            existing,
        });
    };
    if let Some(user) = &req.triggered_by {
        runs::set_triggering_user(&mut tx, run.id, user).await?;
    }
    crate::lifecycle::run::start_queued(&mut tx, cache, &dag.dag_id).await?;
    store::notify_wake(&mut tx).await?;
    tx.commit().await?;
    Ok(run)
}

/// Waits until the run reaches a final state, calling `progress` on every change.
pub async fn wait_for_run(
    pool: &PgPool,
    run_pk: i64,
    mut progress: impl FnMut(&RunRow),
) -> Result<RunState> {
    let mut last = None;
    loop {
        let run = crate::transient::retry("wait for run", || async move {
            let mut conn = pool.acquire().await?;
            runs::get_by_pk(&mut conn, run_pk).await
        })
        .await?;
        if last != Some(run.state) {
            progress(&run);
            last = Some(run.state);
        }
        if run.state.is_terminal() {
            return Ok(run.state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a final state by polling every `every` (for benchmarks and tests that need
/// finer resolution than `wait_for_run`).
pub async fn wait_until_done(pool: &PgPool, run_pk: i64, every: Duration) -> Result<RunState> {
    loop {
        let state: RunState = crate::transient::retry("wait for run", || async move {
            let mut conn = pool.acquire().await?;
            runs::run_state(&mut conn, run_pk).await
        })
        .await?;
        if state.is_terminal() {
            return Ok(state);
        }
        tokio::time::sleep(every).await;
    }
}

/// Pauses or resumes a DAG. Resuming starts the manual runs that waited while it was paused
/// and wakes the workers, all in the caller's transaction.
pub async fn set_paused(
    conn: &mut sqlx::PgConnection,
    cache: &VersionCache,
    dag_id: &str,
    paused: bool,
) -> Result<()> {
    dags::set_paused(&mut *conn, dag_id, paused).await?;
    if !paused {
        crate::lifecycle::run::start_queued(&mut *conn, cache, dag_id).await?;
        store::notify_wake(&mut *conn).await?;
    }
    Ok(())
}

// --- #14 "dags2": deleting a DAG, favourites ---

/// Deletes everything recorded of a DAG (Airflow's `delete_dag`): its versions, runs, task
/// instances, tries, logs, backfills, missed intervals, favourites and notifications; the
/// audit log keeps its rows. Refused while one of its task instances is running, as Airflow
/// refuses (upiflow never stops a running try). The DAG file is not touched: while it is in
/// the DAGs folder the scheduler's next sync records the DAG again (as a new DAG, version 1,
/// unpaused, without history), as Airflow's DAG processor does at the next parse.
pub async fn delete_dag(pool: &PgPool, dag_id: &str) -> Result<()> {
    crate::transient::retry("delete DAG", || async {
        let mut tx = pool.begin().await?;
        let running = dags::lock_for_delete(&mut tx, dag_id)
            .await?
            .ok_or_else(|| EngineError::DagNotFound(dag_id.into()))?;
        if !running.is_empty() {
            return Err(EngineError::DagDeleteWhileRunning {
                dag_id: dag_id.into(),
                running,
            });
        }
        dags::delete(&mut tx, dag_id).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

/// Marks (`favorite`) or unmarks a DAG as a favourite of `owner` (Airflow 3.1's
/// `favorite_dag` / `unfavorite_dag`): `FavoriteExists` / `FavoriteMissing` when it already
/// is / is not one, `DagNotFound` for an unknown DAG.
pub async fn set_favorite(
    pool: &PgPool,
    owner: &store::favorites::Owner,
    dag_id: &str,
    favorite: bool,
) -> Result<()> {
    let mut conn = pool.acquire().await?;
    if favorite {
        store::favorites::add(&mut conn, owner, dag_id).await
    } else {
        store::favorites::remove(&mut conn, owner, dag_id).await
    }
}
