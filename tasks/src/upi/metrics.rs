//! The UPI pipeline's Prometheus metric families, read from Postgres at scrape time (the
//! ingest processes report themselves there):
//!
//! | metric | type | from |
//! |---|---|---|
//! | `upiflow_ingest_events_per_second{ingest_instance}` | gauge | `ingest_instances` (alive) |
//! | `upiflow_ingest_consumer_lag{consumer_group,topic,partition}` | gauge | `ingest_lag` |
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
