//! The UPI pipeline's Prometheus metric families, read from Postgres at scrape time (the
//! ingest processes report themselves there):
//!
//! | metric | type | from |
//! |---|---|---|
//! | `upiflow_ingest_events_per_second{ingest_instance}` | gauge | `ingest_instances` (alive) |
//! | `upiflow_ingest_consumer_lag{consumer_group,topic,partition}` | gauge | `ingest_lag` |
//! | `upiflow_ingest_event_time_watermark_seconds{consumer_group,topic,partition}` | gauge | `ingest_offsets` |
//! | `upiflow_ingest_dead_letters_total` | counter | `dead_letter_upi_transactions` |

use sqlx::PgPool;
use upiflow_engine::product::{MetricFamily, MetricKind, MetricValue, Sample};

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The ingest families, in exposition order.
pub async fn families(pool: &PgPool) -> Result<Vec<MetricFamily>, sqlx::Error> {
    let rate: Vec<(String, f64)> = sqlx::query_as(
        "SELECT instance_id, events_per_sec FROM ingest_instances
         WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '30 seconds'
         ORDER BY instance_id",
    )
    .fetch_all(pool)
    .await?;
    let lag: Vec<(String, String, i32, i64)> = sqlx::query_as(
        "SELECT consumer_group, kafka_topic, kafka_partition, lag FROM ingest_lag
         ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    let marks: Vec<(String, String, i32, f64)> = sqlx::query_as(
        "SELECT consumer_group, kafka_topic, kafka_partition, EXTRACT(EPOCH FROM watermark)::float8
         FROM ingest_offsets WHERE watermark IS NOT NULL ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_upi_transactions")
        .fetch_one(pool)
        .await?;
    Ok(vec![
        MetricFamily {
            name: "upiflow_ingest_events_per_second".into(),
            help:
                "Events per second stored by each live ingest process (heartbeat in the last 30 s)."
                    .into(),
            kind: MetricKind::Gauge,
            samples: rate
                .iter()
                .map(|(instance, r)| Sample {
                    labels: labels(&[("ingest_instance", instance)]),
                    value: MetricValue::Float(*r),
                })
                .collect(),
        },
        MetricFamily {
            name: "upiflow_ingest_consumer_lag".into(),
            help: "Messages behind the high watermark, per partition, as last recorded by ingest."
                .into(),
            kind: MetricKind::Gauge,
            samples: lag
                .iter()
                .map(|(group, topic, partition, lag)| Sample {
                    labels: labels(&[
                        ("consumer_group", group),
                        ("topic", topic),
                        ("partition", &partition.to_string()),
                    ]),
                    value: MetricValue::Int(*lag),
                })
                .collect(),
        },
        MetricFamily {
            name: "upiflow_ingest_event_time_watermark_seconds".into(),
            help: "Event-time watermark per partition (Unix seconds): the largest event time stored minus the out-of-orderness bound.".into(),
            kind: MetricKind::Gauge,
            samples: marks
                .iter()
                .map(|(group, topic, partition, mark)| Sample {
                    labels: labels(&[
                        ("consumer_group", group),
                        ("topic", topic),
                        ("partition", &partition.to_string()),
                    ]),
                    value: MetricValue::Float(*mark),
                })
                .collect(),
        },
        MetricFamily {
            name: "upiflow_ingest_dead_letters".into(),
            help: "Messages that failed validation and went to the dead-letter table.".into(),
            kind: MetricKind::Counter,
            samples: vec![Sample {
                labels: Vec::new(),
                value: MetricValue::Int(dead),
            }],
        },
    ])
}
