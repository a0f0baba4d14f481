//! What a run's pages read about its task instances beyond [`crate::store::task_views::for_run`]: one task
//! instance by task id, and every try of every task instance of the run (the gantt chart).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

use crate::error::Result;
use crate::state::TryOutcome;
use crate::store::task_views::TiRow;

/// One try of a task instance of a run.
#[derive(Debug, Clone, FromRow)]
pub struct RunTry {
    pub task_id: String,
    pub try_number: i32,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `None` while the try runs.
    pub outcome: Option<TryOutcome>,
}

/// The task instance `task_id` of the run `run_pk`, if the run has one.
pub async fn task_instance(
    conn: &mut PgConnection,
    run_pk: i64,
    task_id: &str,
) -> Result<Option<TiRow>> {
    Ok(sqlx::query_as(
        "SELECT id, run_pk, dag_id, run_id, task_id, state, try_number, max_tries, next_retry_at,
                worker, queued_at, start_date, end_date
         FROM task_instances WHERE run_pk = $1 AND task_id = $2",
    )
    .bind(run_pk)
    .bind(task_id)
    .fetch_optional(conn)
    .await?)
}

/// Every try of the run's task instances, in the order they started.
pub async fn tries(conn: &mut PgConnection, run_pk: i64) -> Result<Vec<RunTry>> {
    Ok(sqlx::query_as(
        "SELECT ti.task_id, tr.try_number, tr.started_at, tr.ended_at, tr.outcome
         FROM task_instances ti JOIN task_tries tr ON tr.ti_id = ti.id
         WHERE ti.run_pk = $1 ORDER BY tr.started_at, tr.id",
    )
    .bind(run_pk)
    .fetch_all(conn)
    .await?)
}
