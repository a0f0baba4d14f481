//! Small reads of one run for the user operations (`crate::ops`): which run holds a logical
//! date, and a run's state without the rest of its row.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Result;
use crate::state::RunState;

/// The run_id of `dag_id`'s run at `logical_date` or named `run_id`, if there is one.
pub async fn run_id_at(
    conn: &mut PgConnection,
    dag_id: &str,
    logical_date: DateTime<Utc>,
    run_id: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT run_id FROM dag_runs WHERE dag_id = $1 AND (logical_date = $2 OR run_id = $3)",
    )
    .bind(dag_id)
    .bind(logical_date)
    .bind(run_id)
    .fetch_optional(conn)
    .await?)
}

/// The state of the run with primary key `run_pk`.
pub async fn run_state(conn: &mut PgConnection, run_pk: i64) -> Result<RunState> {
    Ok(
        sqlx::query_scalar("SELECT state FROM dag_runs WHERE id = $1")
            .bind(run_pk)
            .fetch_one(conn)
            .await?,
    )
}
