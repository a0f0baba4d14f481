//! `/metrics`: Prometheus metrics in the text exposition format (0.0.4), encoded by the
//! `prometheus-client` crate.
//!
//! upiflow's parts (scheduler, workers, web, ingest) run as separate processes sharing one
//! Postgres, so the values come from Postgres at scrape time, each from a cheap query:
//!
//! | metric | type | from |
//! |---|---|---|
//! | `upiflow_task_try_duration_seconds{dag_id}` | histogram | `metrics_task_tries` |
//! | `upiflow_task_tries_total{dag_id,outcome}` | counter | `metrics_task_tries` |
//! | `upiflow_dag_runs{dag_id,state}` | gauge | `dag_runs` |
//! | `upiflow_scheduler_loop_lag_seconds` | gauge | `scheduler_loops` |
//! | `upiflow_scheduler_loop_duration_seconds` | gauge | `scheduler_loops` |
//! | `upiflow_task_queue_depth{state}` | gauge | `task_instances` (scheduled, queued) |
//! | `upiflow_ingest_events_per_second{ingest_instance}` | gauge | `ingest_instances` (alive) |
//! | `upiflow_ingest_consumer_lag{consumer_group,topic,partition}` | gauge | `ingest_lag` |
//! | `upiflow_ingest_dead_letters_total` | counter | `dead_letter_upi_transactions` |
//!
//! The try histogram is cumulative without rescanning every try: each scrape adds the tries
//! that ended since a cursor stored in Postgres (`metrics_cursors`) to `metrics_task_tries`.
//! The cursor only passes instants before the oldest open transaction of the database, so a
//! try whose end is not committed yet is never skipped (a long transaction delays the
//! histogram, it never loses a try).
//!
//! Like every other route, it needs a user (Basic or Bearer, any role): Prometheus scrapes
//! it with `basic_auth` (see the README).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Upper bounds (seconds) of the try-duration buckets; the last bucket is `+Inf`.
pub const TRY_BUCKETS: [f64; 13] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

const RUN_STATES: [&str; 4] = ["queued", "running", "success", "failed"];

/// A DAG's try durations: non-cumulative count per bucket (upper bound, count), with
/// TRY_BUCKETS then +Inf, and the sum of seconds.
type Durations = (String, Vec<(f64, u64)>, f64);

/// Everything one scrape reports.
#[derive(Debug, Default)]
struct Snapshot {
    try_durations: Vec<Durations>,
    tries: Vec<(String, String, u64)>,
    runs: Vec<(String, String, i64)>,
    loop_lag: Option<(f64, f64)>,
    queue: Vec<(String, i64)>,
    ingest_rate: Vec<(String, f64)>,
    lag: Vec<(String, String, i32, i64)>,
    dead_letters: u64,
}

async fn metrics(State(s): State<AppState>, _viewer: Viewer) -> Result<Response, ApiError> {
    let snapshot = Snapshot::load(&s.pool).await?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut body = String::new();
    prometheus_text::encode(&mut body, &registry)
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        body,
    )
        .into_response())
}

/// Adds the tries that ended since the stored cursor to `metrics_task_tries` and moves the
/// cursor, in one transaction (concurrent scrapes wait for each other on the cursor row).
async fn advance_try_histogram(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO metrics_cursors (name, upto) VALUES ('task_tries', 'epoch')
         ON CONFLICT (name) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    let from: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT upto FROM metrics_cursors WHERE name = 'task_tries' FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    // A try's ended_at is its finishing transaction's now(), i.e. that transaction's start,
    // so every try ending before the oldest open transaction is committed already.
    let upto: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT LEAST(now(), (SELECT min(xact_start) FROM pg_stat_activity
                              WHERE datname = current_database() AND pid <> pg_backend_pid()
                                AND xact_start IS NOT NULL))",
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut bounds: Vec<f64> = TRY_BUCKETS.to_vec();
    bounds.push(f64::INFINITY);
    sqlx::query(
        "INSERT INTO metrics_task_tries AS m (dag_id, outcome, le, tries, seconds)
         SELECT ti.dag_id, t.outcome,
                (SELECT min(b) FROM unnest($3::float8[]) AS b
                  WHERE b >= EXTRACT(EPOCH FROM t.ended_at - t.started_at)::float8),
                count(*), sum(EXTRACT(EPOCH FROM t.ended_at - t.started_at)::float8)
         FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id
         WHERE t.ended_at >= $1 AND t.ended_at < $2 AND t.outcome IS NOT NULL
         GROUP BY 1, 2, 3
         ON CONFLICT (dag_id, outcome, le) DO UPDATE
         SET tries = m.tries + EXCLUDED.tries, seconds = m.seconds + EXCLUDED.seconds",
    )
    .bind(from)
    .bind(upto)
    .bind(&bounds)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE metrics_cursors SET upto = $1 WHERE name = 'task_tries' AND upto < $1")
        .bind(upto)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

impl Snapshot {
    async fn load(pool: &PgPool) -> Result<Self, sqlx::Error> {
        advance_try_histogram(pool).await?;
        let mut s = Snapshot::default();

        let rows: Vec<(String, String, f64, i64, f64)> = sqlx::query_as(
            "SELECT dag_id, outcome::text, le, tries, seconds FROM metrics_task_tries
             ORDER BY dag_id, outcome, le",
        )
        .fetch_all(pool)
        .await?;
        let mut by_dag: std::collections::BTreeMap<String, (Vec<u64>, f64)> = Default::default();
        let mut by_outcome: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for (dag, outcome, le, tries, seconds) in rows {
            let e = by_dag
                .entry(dag.clone())
                .or_insert_with(|| (vec![0; TRY_BUCKETS.len() + 1], 0.0));
            let i = TRY_BUCKETS
                .iter()
                .position(|b| *b >= le)
                .unwrap_or(TRY_BUCKETS.len());
            e.0[i] += tries as u64;
            e.1 += seconds;
            *by_outcome.entry((dag, outcome)).or_default() += tries as u64;
        }
        s.try_durations = by_dag
            .into_iter()
            .map(|(dag, (counts, sum))| {
                let buckets = TRY_BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(counts)
                    .collect();
                (dag, buckets, sum)
            })
            .collect();
        s.tries = by_outcome
            .into_iter()
            .map(|((d, o), n)| (d, o, n))
            .collect();

        // Runs by state, every state of every DAG (zeros included, so a state that empties
        // reads 0 rather than vanishing).
        let dags: Vec<String> = sqlx::query_scalar("SELECT dag_id FROM dags ORDER BY dag_id")
            .fetch_all(pool)
            .await?;
        let counts: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT dag_id, state::text, count(*) FROM dag_runs GROUP BY 1, 2")
                .fetch_all(pool)
                .await?;
        for dag in &dags {
            for state in RUN_STATES {
                let n = counts
                    .iter()
                    .find(|c| &c.0 == dag && c.1 == state)
                    .map_or(0, |c| c.2);
                s.runs.push((dag.clone(), state.into(), n));
            }
        }

        s.loop_lag = sqlx::query_as(
            "SELECT EXTRACT(EPOCH FROM now() - last_loop_at)::float8, loop_seconds
             FROM scheduler_loops ORDER BY last_loop_at DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await?;

        let queue: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state::text, count(*) FROM task_instances
             WHERE state IN ('scheduled', 'queued') GROUP BY 1",
        )
        .fetch_all(pool)
        .await?;
        s.queue = ["scheduled", "queued"]
            .iter()
            .map(|st| {
                let n = queue.iter().find(|q| q.0 == *st).map_or(0, |q| q.1);
                ((*st).to_string(), n)
            })
            .collect();

        s.ingest_rate = sqlx::query_as(
            "SELECT instance_id, events_per_sec FROM ingest_instances
             WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '30 seconds'
             ORDER BY instance_id",
        )
        .fetch_all(pool)
        .await?;
        s.lag = sqlx::query_as(
            "SELECT consumer_group, kafka_topic, kafka_partition, lag FROM ingest_lag
             ORDER BY 1, 2, 3",
        )
        .fetch_all(pool)
        .await?;
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_upi_transactions")
            .fetch_one(pool)
            .await?;
        s.dead_letters = dead as u64;
        Ok(s)
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "upiflow_task_try_duration_seconds",
            "Duration of finished task tries, by DAG.",
            None,
            MetricType::Histogram,
        )?;
        for (dag, buckets, sum) in &self.try_durations {
            let count = buckets.iter().map(|b| b.1).sum();
            let labels: Labels = vec![("dag_id", dag)];
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(*sum, count, buckets, None)?;
        }

        let mut m = encoder.encode_descriptor(
            "upiflow_task_tries",
            "Finished task tries, by DAG and outcome (success, failed, timed_out, zombie).",
            None,
            MetricType::Counter,
        )?;
        for (dag, outcome, n) in &self.tries {
            let labels: Labels = vec![("dag_id", dag), ("outcome", outcome)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }

        let mut m = encoder.encode_descriptor(
            "upiflow_dag_runs",
            "DAG runs by DAG and state.",
            None,
            MetricType::Gauge,
        )?;
        for (dag, state, n) in &self.runs {
            let labels: Labels = vec![("dag_id", dag), ("state", state)];
            m.encode_family(&labels)?.encode_gauge(n)?;
        }

        if let Some((lag, took)) = self.loop_lag {
            encoder
                .encode_descriptor(
                    "upiflow_scheduler_loop_lag_seconds",
                    "Seconds since a scheduler last finished a loop (any scheduler).",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&lag)?;
            encoder
                .encode_descriptor(
                    "upiflow_scheduler_loop_duration_seconds",
                    "How long the latest scheduler loop took.",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&took)?;
        }

        let mut m = encoder.encode_descriptor(
            "upiflow_task_queue_depth",
            "Task instances waiting for a worker, by state (scheduled, queued).",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &self.queue {
            let labels: Labels = vec![("state", state)];
            m.encode_family(&labels)?.encode_gauge(n)?;
        }

        let mut m = encoder.encode_descriptor(
            "upiflow_ingest_events_per_second",
            "Events per second stored by each live ingest process (heartbeat in the last 30 s).",
            None,
            MetricType::Gauge,
        )?;
        for (instance, rate) in &self.ingest_rate {
            let labels: Labels = vec![("ingest_instance", instance)];
            m.encode_family(&labels)?.encode_gauge(rate)?;
        }

        let mut m = encoder.encode_descriptor(
            "upiflow_ingest_consumer_lag",
            "Messages behind the high watermark, per partition, as last recorded by ingest.",
            None,
            MetricType::Gauge,
        )?;
        for (group, topic, partition, lag) in &self.lag {
            let partition = partition.to_string();
            let labels: Labels = vec![
                ("consumer_group", group),
                ("topic", topic),
                ("partition", &partition),
            ];
            m.encode_family(&labels)?.encode_gauge(lag)?;
        }

        encoder
            .encode_descriptor(
                "upiflow_ingest_dead_letters",
                "Messages that failed validation and went to the dead-letter table.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.dead_letters, None)?;
        Ok(())
    }
}
