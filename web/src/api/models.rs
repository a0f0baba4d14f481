//! Types shared by several endpoints, named and shaped as in Airflow 3's OpenAPI document.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use upiflow_engine::store::dags::{self, NumberedVersion};
use utoipa::ToSchema;

use crate::error::ApiError;

/// An Airflow-style error answer (`HTTPExceptionResponse`).
#[derive(Serialize, ToSchema)]
pub struct HTTPExceptionResponse {
    pub detail: String,
}

/// One problem with a request (`ValidationError`).
#[derive(Serialize, ToSchema)]
pub struct ValidationError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A 422 answer (`HTTPValidationError`), as FastAPI gives.
#[derive(Serialize, ToSchema)]
pub struct HTTPValidationError {
    pub detail: Vec<ValidationError>,
}

/// Task-instance states (the ones upiflow has of Airflow's `TaskInstanceState`).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskInstanceState {
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    UpstreamFailed,
    Skipped,
}

impl From<upiflow_engine::TaskState> for TaskInstanceState {
    fn from(s: upiflow_engine::TaskState) -> Self {
        use upiflow_engine::TaskState as T;
        match s {
            T::Scheduled => Self::Scheduled,
            T::Queued => Self::Queued,
            T::Running => Self::Running,
            T::Success => Self::Success,
            T::Failed => Self::Failed,
            T::UpForRetry => Self::UpForRetry,
            T::UpstreamFailed => Self::UpstreamFailed,
            T::Skipped => Self::Skipped,
        }
    }
}

/// One stored version of a DAG's definition (`DagVersionResponse`). upiflow versions are
/// content hashes; `version_number` counts them in the order they were first seen.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagVersionResponse {
    #[schema(format = "uuid")]
    pub id: String,
    pub version_number: i64,
    pub dag_id: String,
    pub bundle_name: Option<String>,
    /// The version's content hash.
    pub bundle_version: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dag_display_name: String,
    pub bundle_url: Option<String>,
}

/// A UUID (version 8, "custom") that stands for a database id, since Airflow's ids are UUIDs.
pub fn uuid_of_id(kind: u16, id: i64) -> String {
    format!(
        "00000000-{kind:04x}-8000-8000-{:012x}",
        (id as u64) & 0xffff_ffff_ffff
    )
}

/// A UUID (version 8) made of the first 120 bits of a hex content hash.
fn uuid_of_hash(hash: &str) -> String {
    let hex: String = hash
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(30)
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "{}-{}-8{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..15],
        &hex[15..18],
        &hex[18..30]
    )
}

/// The versions `(dag_id, hash)` with their numbers, for many at once.
pub async fn dag_versions(
    conn: &mut PgConnection,
    wanted: &[(String, String)],
) -> Result<HashMap<(String, String), DagVersionResponse>, ApiError> {
    let rows = dags::numbered(conn, wanted).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let NumberedVersion {
                dag_id,
                hash,
                created_at,
                number,
            } = r;
            let v = version_response(&dag_id, &hash, created_at, number);
            ((dag_id, hash), v)
        })
        .collect())
}

/// The version `hash` of `dag_id` as a list row read it ([`dags::VersionRef`]), if stored.
pub fn listed_version(
    dag_id: &str,
    hash: &str,
    v: &dags::VersionRef,
) -> Option<DagVersionResponse> {
    Some(version_response(
        dag_id,
        hash,
        v.version_created_at?,
        v.version_number?,
    ))
}

fn version_response(
    dag_id: &str,
    hash: &str,
    created_at: DateTime<Utc>,
    number: i64,
) -> DagVersionResponse {
    DagVersionResponse {
        id: uuid_of_hash(hash),
        version_number: number,
        dag_display_name: dag_id.to_string(),
        dag_id: dag_id.to_string(),
        bundle_name: Some("dags-folder".into()),
        bundle_version: Some(hash.to_string()),
        created_at,
        bundle_url: None,
    }
}

/// Seconds between two instants, when both are known.
pub fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    match (start, end) {
        (Some(s), Some(e)) => Some((e - s).num_milliseconds() as f64 / 1000.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_hashes_become_well_formed_uuids() {
        assert_eq!(uuid_of_id(1, 42), "00000000-0001-8000-8000-00000000002a");
        let u = uuid_of_hash("0123456789abcdef0123456789abcdef0123");
        assert_eq!(u, "01234567-89ab-8cde-8f01-23456789abcd");
        assert_eq!(uuid_of_hash("xyz").len(), 36);
    }
}
