//! What `/metrics` reads about the orchestrator: the try-duration histogram (kept
//! cumulative in `metrics_task_tries` behind the `metrics_cursors` cursor), runs by state,
//! the scheduler's last loop and the task queue.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

use crate::error::Result;

/// One cell of the try histogram: tries of a DAG with an outcome that took at most `le`
/// seconds (and more than the bound below), with their total seconds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TryCell {
    pub dag_id: String,
    pub outcome: String,
    pub le: f64,
    pub tries: i64,
    pub seconds: f64,
}

/// Adds the tries that ended since the stored cursor to `metrics_task_tries`, each in the
/// smallest of `bounds` (ascending, ending with +Inf) that holds its duration, and moves the
/// cursor, in one transaction (concurrent scrapes wait for each other on the cursor row).
pub async fn advance_try_histogram(conn: &mut PgConnection, bounds: &[f64]) -> Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO metrics_cursors (name, upto) VALUES ('task_tries', 'epoch')
         ON CONFLICT (name) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    let from: DateTime<Utc> =
        sqlx::query_scalar("SELECT upto FROM metrics_cursors WHERE name = 'task_tries' FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    // A try's ended_at is its finishing transaction's now(), i.e. that transaction's start,
    // so every try ending before the oldest open transaction is committed already.
    let upto: DateTime<Utc> = sqlx::query_scalar(
        "SELECT LEAST(now(), (SELECT min(xact_start) FROM pg_stat_activity
                              WHERE datname = current_database() AND pid <> pg_backend_pid()
                                AND xact_start IS NOT NULL))",
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO metrics_task_tries AS m (dag_id, outcome, le, tries, seconds)
         SELECT ti.dag_id, t.outcome,
                (SELECT min(b) FROM unnest($3::float8[]) AS b
                  WHERE b >= EXTRACT(EPOCH FROM t.ended_at - t.started_at)::float8),
                count(*), sum(EXTRACT(EPOCH FROM t.ended_at - t.started_at)::float8)
         FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id
         WHERE t.ended_at >= $1 AND t.ended_at < $2 AND t.outcome IS NOT NULL
         GROUP BY 1, 2, 3
         ON CONFLICT (dag_id, outcome, le) DO UPDATE
         SET tries = m.tries + EXCLUDED.tries, seconds = m.seconds + EXCLUDED.seconds",
    )
    .bind(from)
    .bind(upto)
    .bind(bounds)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE metrics_cursors SET upto = $1 WHERE name = 'task_tries' AND upto < $1")
        .bind(upto)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Every cell of the try histogram, by DAG, outcome and bound.
pub async fn try_cells(conn: &mut PgConnection) -> Result<Vec<TryCell>> {
    Ok(sqlx::query_as(
        "SELECT dag_id, outcome::text AS outcome, le, tries, seconds FROM metrics_task_tries
         ORDER BY dag_id, outcome, le",
    )
    .fetch_all(conn)
    .await?)
}

/// Every DAG id, in order.
pub async fn dag_ids(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT dag_id FROM dags ORDER BY dag_id")
            .fetch_all(conn)
            .await?,
    )
}

/// Runs per DAG and state, `(dag_id, state, runs)`, for the pairs that have any.
pub async fn run_counts(conn: &mut PgConnection) -> Result<Vec<(String, String, i64)>> {
    Ok(
        sqlx::query_as("SELECT dag_id, state::text, count(*) FROM dag_runs GROUP BY 1, 2")
            .fetch_all(conn)
            .await?,
    )
}

/// The latest scheduler loop of any scheduler: (seconds since it ended, seconds it took).
pub async fn last_scheduler_loop(conn: &mut PgConnection) -> Result<Option<(f64, f64)>> {
    Ok(sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM now() - last_loop_at)::float8, loop_seconds
         FROM scheduler_loops ORDER BY last_loop_at DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?)
}

/// Task instances waiting for a worker, `(state, count)`, for the waiting states that have any.
pub async fn queue_depth(conn: &mut PgConnection) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT state::text, count(*) FROM task_instances
         WHERE state IN ('scheduled', 'queued') GROUP BY 1",
    )
    .fetch_all(conn)
    .await?)
}
