//! Partition ownership through leases in Postgres: every process takes a fair share of the
//! topic's partitions (partitions / live processes, rounded up), renews its leases while it
//! runs, gives up extras when others join, and takes over the partitions of a process whose
//! lease ran out. Correctness never depends on it (the offset compare-and-set does); leases
//! only make sure every partition has exactly one reader most of the time.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::PgPool;

use super::Config;

/// One lease round: returns the partitions this process owns now.
pub async fn round(
    pool: &PgPool,
    cfg: &Config,
    partitions: &[i32],
    ttl: Duration,
) -> Result<BTreeSet<i32>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ttl_s = ttl.as_secs_f64();
    // Serialise rounds of one group/topic so shares are computed on a consistent view.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('upiflow.ingest'), hashtext($1 || '/' || $2))",
    )
    .bind(&cfg.group)
    .bind(&cfg.topic)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO ingest_leases (consumer_group, kafka_topic, kafka_partition)
         SELECT $1, $2, p FROM UNNEST($3::int[]) AS p ON CONFLICT DO NOTHING",
    )
    .bind(&cfg.group)
    .bind(&cfg.topic)
    .bind(partitions)
    .execute(&mut *tx)
    .await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingest_instances
         WHERE consumer_group = $1 AND kafka_topic = $2 AND stopped_at IS NULL
           AND (heartbeat_at > now() - $3 * interval '1 second' OR instance_id = $4)",
    )
    .bind(&cfg.group)
    .bind(&cfg.topic)
    .bind(ttl_s)
    .bind(&cfg.instance_id)
    .fetch_one(&mut *tx)
    .await?;
    let share = (partitions.len() as i64 + live.max(1) - 1) / live.max(1);
    // Renew what we hold, then give back anything beyond our share (highest first).
    let mut mine: Vec<i32> = sqlx::query_scalar(
        "UPDATE ingest_leases SET expires_at = now() + $4 * interval '1 second'
         WHERE consumer_group = $1 AND kafka_topic = $2 AND owner = $3 AND kafka_partition = ANY($5)
         RETURNING kafka_partition",
    )
    .bind(&cfg.group)
    .bind(&cfg.topic)
    .bind(&cfg.instance_id)
    .bind(ttl_s)
    .bind(partitions)
    .fetch_all(&mut *tx)
    .await?;
    mine.sort_unstable();
    if mine.len() as i64 > share {
        let extra: Vec<i32> = mine.split_off(share as usize);
        sqlx::query(
            "UPDATE ingest_leases SET owner = NULL, expires_at = now()
             WHERE consumer_group = $1 AND kafka_topic = $2 AND owner = $3 AND kafka_partition = ANY($4)",
        )
        .bind(&cfg.group)
        .bind(&cfg.topic)
        .bind(&cfg.instance_id)
        .bind(&extra)
        .execute(&mut *tx)
        .await?;
    }
    let want = share - mine.len() as i64;
    if want > 0 {
        let taken: Vec<i32> = sqlx::query_scalar(
            "UPDATE ingest_leases SET owner = $3, expires_at = now() + $4 * interval '1 second'
             WHERE (consumer_group, kafka_topic, kafka_partition) IN (
                SELECT consumer_group, kafka_topic, kafka_partition FROM ingest_leases
                WHERE consumer_group = $1 AND kafka_topic = $2 AND kafka_partition = ANY($6)
                  AND (owner IS NULL OR expires_at < now())
                ORDER BY kafka_partition LIMIT $5)
             RETURNING kafka_partition",
        )
        .bind(&cfg.group)
        .bind(&cfg.topic)
        .bind(&cfg.instance_id)
        .bind(ttl_s)
        .bind(want)
        .bind(partitions)
        .fetch_all(&mut *tx)
        .await?;
        mine.extend(taken);
    }
    tx.commit().await?;
    Ok(mine.into_iter().collect())
}

/// Gives every lease of this process back (clean shutdown).
pub async fn release_all(pool: &PgPool, cfg: &Config) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE ingest_leases SET owner = NULL, expires_at = now() WHERE owner = $1")
        .bind(&cfg.instance_id)
        .execute(pool)
        .await?;
    Ok(())
}
