//! What the health check reads: when a scheduler last finished a loop.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Result;

/// The end of the newest scheduler loop (`scheduler_loops`, written by every scheduler on
/// every pass; `None` if none ever ran) and the database's clock, in one query.
pub async fn scheduler_beat(
    conn: &mut PgConnection,
) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    Ok(
        sqlx::query_as("SELECT (SELECT max(last_loop_at) FROM scheduler_loops), now()")
            .fetch_one(conn)
            .await?,
    )
}
