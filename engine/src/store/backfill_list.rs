//! What the backfill pages list: every backfill with its range's runs counted by state, and
//! the runs in one backfill's range.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

use crate::error::Result;
use crate::store::backfills::{BackfillRow, BackfillState};
use crate::store::runs::RunRow;

/// A backfill with the runs of its range counted by state.
#[derive(Debug, Clone, FromRow)]
pub struct BackfillLine {
    pub id: i64,
    pub dag_id: String,
    pub from_date: DateTime<Utc>,
    pub to_date: DateTime<Utc>,
    pub created_by: String,
    pub state: BackfillState,
    pub total: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub success: i64,
    pub failed: i64,
    pub running: i64,
    pub queued: i64,
}

/// The latest `limit` backfills, newest first, with their progress counted as
/// `backfill::progress` counts it, in one query.
pub async fn list(conn: &mut PgConnection, limit: i64) -> Result<Vec<BackfillLine>> {
    Ok(sqlx::query_as(
        "SELECT b.id, b.dag_id, b.from_date, b.to_date, b.created_by, b.state,
                b.total, b.created_at, b.completed_at,
                p.success, p.failed, p.running, p.queued
         FROM backfills b
         CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE r.state = 'success') AS success,
                   count(*) FILTER (WHERE r.state = 'failed') AS failed,
                   count(*) FILTER (WHERE r.state = 'running') AS running,
                   count(*) FILTER (WHERE r.state = 'queued') AS queued
            FROM dag_runs r
            WHERE r.dag_id = b.dag_id AND r.logical_date BETWEEN b.from_date AND b.to_date) p
         ORDER BY b.id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Up to `limit` runs of `dag_id` whose logical date lies in `[from, to]`, oldest first:
/// those a backfill created and those it found.
pub async fn runs_in_range(
    conn: &mut PgConnection,
    dag_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as(
        "SELECT * FROM dag_runs WHERE dag_id = $1 AND logical_date BETWEEN $2 AND $3
         ORDER BY logical_date LIMIT $4",
    )
    .bind(dag_id)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// A page of the backfills of `dag_id` by id (descending with `desc`), and how many it has
/// in all (Airflow's `list_backfills`).
pub async fn of_dag(
    conn: &mut PgConnection,
    dag_id: &str,
    desc: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<BackfillRow>, i64)> {
    let order = if desc { "DESC" } else { "ASC" };
    let rows = sqlx::query_as(&format!(
        "SELECT id, dag_id, from_date, to_date, rerun_failed, reset, created_by, state, total,
                created_at, completed_at, max_active_runs, yield_to_scheduled, is_paused,
                updated_at
         FROM backfills WHERE dag_id = $1 ORDER BY id {order} LIMIT $2 OFFSET $3"
    ))
    .bind(dag_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM backfills WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_one(conn)
        .await?;
    Ok((rows, total))
}
