//! How many events a benchmark's ingest has stored: the sum of its partitions' next offsets
//! (each committed with the rows it covers, so it never runs ahead of them).

pub async fn stored_events(pool: &sqlx::PgPool) -> anyhow::Result<u64> {
    let n: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(next_offset), 0)::bigint FROM ingest_offsets")
            .fetch_one(pool)
            .await?;
    Ok(n as u64)
}
