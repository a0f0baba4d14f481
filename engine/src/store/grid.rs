//! A DAG's grid: a page of its runs and the state of each of their task instances. Two
//! queries whatever the size: the runs by the `(dag_id, logical_date)` key, then their task
//! instances by the `(run_pk, task_id)` key.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

use crate::error::Result;
use crate::state::{RunState, RunType, TaskState};

/// A run, as a column of the grid.
#[derive(Debug, Clone, FromRow)]
pub struct GridRun {
    pub id: i64,
    pub run_id: String,
    pub state: RunState,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub deadline_missed_at: Option<DateTime<Utc>>,
}

impl GridRun {
    /// Missed its deadline (`runs::is_late`).
    pub fn is_late(&self) -> bool {
        super::runs::is_late(self.deadline_at, self.deadline_missed_at, self.end_date)
    }
}

/// A task instance, as a cell of the grid.
#[derive(Debug, Clone, FromRow)]
pub struct GridCell {
    pub run_pk: i64,
    pub task_id: String,
    /// `None`: not yet ready.
    pub state: Option<TaskState>,
    pub try_number: i32,
}

/// Up to `limit` runs of `dag_id` after skipping `offset`, newest logical date first.
pub async fn runs(
    conn: &mut PgConnection,
    dag_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<GridRun>> {
    Ok(sqlx::query_as(
        "SELECT id, run_id, state, run_type, logical_date, start_date, end_date,
                deadline_at, deadline_missed_at
         FROM dag_runs WHERE dag_id = $1 ORDER BY logical_date DESC LIMIT $2 OFFSET $3",
    )
    .bind(dag_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await?)
}

/// Every task instance of the runs `run_pks`, in no particular order.
pub async fn cells(conn: &mut PgConnection, run_pks: &[i64]) -> Result<Vec<GridCell>> {
    Ok(sqlx::query_as(
        "SELECT run_pk, task_id, state, try_number
         FROM task_instances WHERE run_pk = ANY($1)",
    )
    .bind(run_pks)
    .fetch_all(conn)
    .await?)
}
