//! Task log lines: the writer's batched insert and reading a try's log in pages.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};

use crate::error::Result;
use crate::state::LogStream;

/// Inserts a batch of log lines (equal-length columns) in one statement.
pub async fn insert(
    pool: &PgPool,
    try_ids: &[i64],
    ats: &[DateTime<Utc>],
    streams: &[LogStream],
    lines: &[String],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_logs (try_id, at, stream, line)
         SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::log_stream[], $4::text[])",
    )
    .bind(try_ids)
    .bind(ats)
    .bind(streams)
    .bind(lines)
    .execute(pool)
    .await?;
    Ok(())
}

/// A stored log line with its position (for reading a log in pages).
#[derive(Debug, Clone, FromRow)]
pub struct LogLine {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub stream: LogStream,
    pub line: String,
}

/// Up to `limit` log lines of a try that come after position `after` (0: from the start).
pub async fn log_page(
    conn: &mut PgConnection,
    try_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<LogLine>> {
    Ok(sqlx::query_as(
        "SELECT id, at, stream, line FROM task_logs WHERE try_id = $1 AND id > $2
         ORDER BY id LIMIT $3",
    )
    .bind(try_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
