//! An overview of every DAG, as the UI's front page shows it: each DAG's row with the states
//! of its latest runs and how many are active, and the DAG files that do not load.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

use crate::error::Result;
use crate::state::RunState;

/// How many of a DAG's latest runs [`list`] returns the states of.
pub const RECENT_RUNS: i64 = 10;

/// One DAG with a summary of its runs.
#[derive(Debug, Clone, FromRow)]
pub struct DagLine {
    pub dag_id: String,
    pub description: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub is_paused: bool,
    pub is_active: bool,
    pub next_dagrun: Option<DateTime<Utc>>,
    /// States of the latest runs, newest first (at most [`RECENT_RUNS`]).
    pub recent: Vec<RunState>,
    /// Runs queued or running.
    pub running: i64,
}

/// A DAG file that does not load, at the line of its first problem.
#[derive(Debug, Clone, FromRow)]
pub struct ImportError {
    pub fileloc: String,
    pub line: i32,
    pub message: String,
}

/// Every DAG by id, with the states of its latest runs and its active run count.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<DagLine>> {
    Ok(sqlx::query_as(
        "SELECT d.dag_id, d.description, d.schedule, d.timezone, d.is_paused, d.is_active,
                d.next_dagrun,
                COALESCE(ARRAY(SELECT r.state FROM dag_runs r WHERE r.dag_id = d.dag_id
                               ORDER BY r.logical_date DESC LIMIT $1), '{}') AS recent,
                (SELECT count(*) FROM dag_runs r WHERE r.dag_id = d.dag_id
                   AND r.state IN ('queued', 'running')) AS running
         FROM dags d ORDER BY d.dag_id",
    )
    .bind(RECENT_RUNS)
    .fetch_all(conn)
    .await?)
}

/// The DAG files that do not load, by file and line.
pub async fn import_errors(conn: &mut PgConnection) -> Result<Vec<ImportError>> {
    Ok(
        sqlx::query_as("SELECT fileloc, line, message FROM import_errors ORDER BY fileloc, line")
            .fetch_all(conn)
            .await?,
    )
}
