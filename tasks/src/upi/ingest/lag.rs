//! Consumer lag per partition (high watermark minus the stored next offset), recorded every
//! two seconds in `ingest_lag` where the UI and the CLI read it.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Config;

/// High watermark of every partition of `topic`, by partition.
pub fn high_watermarks(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let meta = client.fetch_metadata(Some(topic), timeout)?;
    let mut out = Vec::new();
    for t in meta.topics() {
        if let Some(err) = t.error() {
            anyhow::bail!("topic `{topic}`: {err:?}");
        }
        for p in t.partitions() {
            let (_, high) = client.fetch_watermarks(topic, p.id(), timeout)?;
            out.push((p.id(), high));
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub async fn record(pool: PgPool, cfg: Config, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let (b, t) = (cfg.bootstrap_servers.clone(), cfg.topic.clone());
        let marks = match tokio::task::spawn_blocking(move || {
            high_watermarks(&b, &t, Duration::from_secs(5))
        })
        .await
        {
            Ok(Ok(m)) => m,
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot read high watermarks");
                continue;
            }
            Err(_) => continue,
        };
        let parts: Vec<i32> = marks.iter().map(|m| m.0).collect();
        let highs: Vec<i64> = marks.iter().map(|m| m.1).collect();
        let res = sqlx::query(
            "INSERT INTO ingest_lag (consumer_group, kafka_topic, kafka_partition, high_watermark, next_offset, lag)
             SELECT $1, $2, u.p, u.h, COALESCE(o.next_offset, 0), GREATEST(0, u.h - COALESCE(o.next_offset, 0))
             FROM UNNEST($3::int[], $4::bigint[]) AS u(p, h)
             LEFT JOIN ingest_offsets o ON o.consumer_group = $1 AND o.kafka_topic = $2 AND o.kafka_partition = u.p
             ON CONFLICT (consumer_group, kafka_topic, kafka_partition) DO UPDATE SET
                high_watermark = EXCLUDED.high_watermark, next_offset = EXCLUDED.next_offset,
                lag = EXCLUDED.lag, updated_at = now()",
        )
        .bind(&cfg.group)
        .bind(&cfg.topic)
        .bind(&parts)
        .bind(&highs)
        .execute(&pool)
        .await;
        if let Err(error) = res {
            tracing::debug!(%error, "cannot record consumer lag");
        }
    }
}
