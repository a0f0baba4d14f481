//! The numbers of DAG versions: a DAG's versions counted in the order they were first
//! stored (Airflow's `version_number`), read for many versions at once.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Result;

/// One version of a DAG with its number.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NumberedVersion {
    pub dag_id: String,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    /// 1 for a DAG's first version, then 2, 3, ... (by creation, then hash).
    pub number: i64,
}

/// The versions `(dag_id, hash)` asked for that exist, each with its number.
pub async fn numbered(
    conn: &mut PgConnection,
    wanted: &[(String, String)],
) -> Result<Vec<NumberedVersion>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let (dags, hashes): (Vec<&str>, Vec<&str>) =
        wanted.iter().map(|(d, h)| (d.as_str(), h.as_str())).unzip();
    Ok(sqlx::query_as(
        "SELECT v.dag_id, v.hash, v.created_at, v.n AS number FROM (
            SELECT dag_id, hash, created_at,
                   row_number() OVER (PARTITION BY dag_id ORDER BY created_at, hash) AS n
            FROM dag_versions WHERE dag_id = ANY($1)) v
         JOIN UNNEST($1::text[], $2::text[]) AS u(dag_id, hash)
           ON u.dag_id = v.dag_id AND u.hash = v.hash",
    )
    .bind(&dags)
    .bind(&hashes)
    .fetch_all(conn)
    .await?)
}
