//! Pools: named numbers of slots that the claim shares out (`crate::store::tis::claim`).

use std::collections::BTreeMap;

use sqlx::PgConnection;

use crate::error::Result;

/// Every pool's size: name -> slots.
pub async fn sizes(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i32)> = sqlx::query_as("SELECT name, slots FROM pools")
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(n, s)| (n, i64::from(s))).collect())
}
