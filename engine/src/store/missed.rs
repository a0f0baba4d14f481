//! The missed-interval ledger (`missed_intervals`): intervals the scheduler skipped with
//! catch-up off or while the DAG was paused. SQL and row types only; which intervals are
//! skipped is `crate::timetable`'s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::error::Result;

/// Why an interval was skipped (Postgres enum `missed_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "missed_reason", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MissedReason {
    /// The DAG has `catchup = false` and the scheduler jumped to the latest interval.
    CatchupDisabled,
    /// The interval ended while the DAG was paused.
    Paused,
}

impl MissedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CatchupDisabled => "catchup_disabled",
            Self::Paused => "paused",
        }
    }

    /// In words, for pages and tables ("catchup disabled").
    pub fn label(self) -> &'static str {
        match self {
            Self::CatchupDisabled => "catchup disabled",
            Self::Paused => "paused",
        }
    }
}

impl std::fmt::Display for MissedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An interval in the missed-interval ledger.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Missed {
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub reason: MissedReason,
    pub recorded_at: DateTime<Utc>,
}

/// One skipped interval to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub reason: MissedReason,
}

/// Records skipped intervals of `dag_id` (logical date = start); ones already recorded are
/// left alone. Returns how many were new.
pub async fn record(conn: &mut PgConnection, dag_id: &str, skipped: &[Skipped]) -> Result<u64> {
    let starts: Vec<DateTime<Utc>> = skipped.iter().map(|s| s.start).collect();
    let ends: Vec<DateTime<Utc>> = skipped.iter().map(|s| s.end).collect();
    let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
    let done = sqlx::query(
        "INSERT INTO missed_intervals (dag_id, logical_date, data_interval_start, data_interval_end, reason)
         SELECT $1, s, s, e, r::missed_reason
         FROM UNNEST($2::timestamptz[], $3::timestamptz[], $4::text[]) AS u(s, e, r)
         ON CONFLICT DO NOTHING",
    )
    .bind(dag_id)
    .bind(&starts)
    .bind(&ends)
    .bind(&reasons)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Ledger entries of `dag_id` that still have no run, oldest first.
pub async fn open(conn: &mut PgConnection, dag_id: &str) -> Result<Vec<Missed>> {
    Ok(sqlx::query_as(
        "SELECT m.data_interval_start, m.data_interval_end, m.reason, m.recorded_at
         FROM missed_intervals m
         WHERE m.dag_id = $1 AND NOT EXISTS (
             SELECT 1 FROM dag_runs r WHERE r.dag_id = m.dag_id AND r.logical_date = m.logical_date)
         ORDER BY m.logical_date",
    )
    .bind(dag_id)
    .fetch_all(conn)
    .await?)
}
