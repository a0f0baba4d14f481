//! `/metrics`: Prometheus metrics in the text exposition format (0.0.4), encoded by the
//! `prometheus-client` crate.
//!
//! upiflow's parts (scheduler, workers, web, ingest) run as separate processes sharing one
//! Postgres, so the values come from Postgres at scrape time, each from a cheap query
//! (`upiflow_engine::store::metrics`):
//!
//! | metric | type | from |
//! |---|---|---|
//! | `upiflow_task_try_duration_seconds{dag_id}` | histogram | `metrics_task_tries` |
//! | `upiflow_task_tries_total{dag_id,outcome}` | counter | `metrics_task_tries` |
//! | `upiflow_dag_runs{dag_id,state}` | gauge | `dag_runs` |
//! | `upiflow_scheduler_loop_lag_seconds` | gauge | `scheduler_loops` |
//! | `upiflow_scheduler_loop_duration_seconds` | gauge | `scheduler_loops` |
//! | `upiflow_task_queue_depth{state}` | gauge | `task_instances` (scheduled, queued) |
//!
//! Then the families of the product registered in [`crate::AppState`], if any (the UPI
//! pipeline's ingest metrics: `upiflow_tasks::upi::metrics`), encoded the same way.
//!
//! The try histogram is cumulative without rescanning every try: each scrape adds the tries
//! that ended since a cursor stored in Postgres (`metrics_cursors`) to `metrics_task_tries`.
//! The cursor only passes instants before the oldest open transaction of the database, so a
//! try whose end is not committed yet is never skipped (a long transaction delays the
//! histogram, it never loses a try).
//!
//! Like every other route, it needs a user (Basic or Bearer, any role): Prometheus scrapes
//! it with an API key (`upiflow tokens create`, one indexed lookup per scrape) or with
//! `basic_auth` (an argon2 hash per scrape); see the README.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use upiflow_engine::product::{MetricFamily, MetricKind, MetricValue, ProductError};
use upiflow_engine::store::metrics as store;

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
    /// The registered product's families.
    product: Vec<MetricFamily>,
}

async fn metrics(State(s): State<AppState>, _viewer: Viewer) -> Result<Response, ApiError> {
    let mut snapshot = Snapshot::load(&s.pool).await?;
    if let Some(p) = &s.product {
        snapshot.product = p.metrics(&s.pool).await.map_err(|e| match e {
            ProductError::Db(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        })?;
    }
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

impl Snapshot {
    /// The orchestrator's part, after adding the tries that ended since the last scrape to
    /// the histogram.
    async fn load(pool: &PgPool) -> Result<Self, ApiError> {
        let mut conn = pool.acquire().await?;
        let mut bounds: Vec<f64> = TRY_BUCKETS.to_vec();
        bounds.push(f64::INFINITY);
        store::advance_try_histogram(&mut conn, &bounds).await?;
        let mut s = Snapshot::default();

        let mut by_dag: std::collections::BTreeMap<String, (Vec<u64>, f64)> = Default::default();
        let mut by_outcome: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for c in store::try_cells(&mut conn).await? {
            let e = by_dag
                .entry(c.dag_id.clone())
                .or_insert_with(|| (vec![0; TRY_BUCKETS.len() + 1], 0.0));
            let i = TRY_BUCKETS
                .iter()
                .position(|b| *b >= c.le)
                .unwrap_or(TRY_BUCKETS.len());
            e.0[i] += c.tries as u64;
            e.1 += c.seconds;
            *by_outcome.entry((c.dag_id, c.outcome)).or_default() += c.tries as u64;
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
        let dags = store::dag_ids(&mut conn).await?;
        let counts = store::run_counts(&mut conn).await?;
        for dag in &dags {
            for state in RUN_STATES {
                let n = counts
                    .iter()
                    .find(|c| &c.0 == dag && c.1 == state)
                    .map_or(0, |c| c.2);
                s.runs.push((dag.clone(), state.into(), n));
            }
        }

        s.loop_lag = store::last_scheduler_loop(&mut conn).await?;

        let queue = store::queue_depth(&mut conn).await?;
        s.queue = ["scheduled", "queued"]
            .iter()
            .map(|st| {
                let n = queue.iter().find(|q| q.0 == *st).map_or(0, |q| q.1);
                ((*st).to_string(), n)
            })
            .collect();
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

        for f in &self.product {
            encode_family(&mut encoder, f)?;
        }
        Ok(())
    }
}

/// Encodes one of the product's families.
fn encode_family(encoder: &mut DescriptorEncoder, f: &MetricFamily) -> Result<(), std::fmt::Error> {
    let kind = match f.kind {
        MetricKind::Gauge => MetricType::Gauge,
        MetricKind::Counter => MetricType::Counter,
    };
    let mut m = encoder.encode_descriptor(&f.name, &f.help, None, kind)?;
    for sample in &f.samples {
        let labels: Vec<(&str, &str)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // A sample without labels is the family's only one, written without braces.
        if labels.is_empty() {
            encode_value(&mut m, f.kind, sample.value)?;
        } else {
            encode_value(&mut m.encode_family(&labels)?, f.kind, sample.value)?;
        }
    }
    Ok(())
}

fn encode_value(
    e: &mut MetricEncoder,
    kind: MetricKind,
    value: MetricValue,
) -> Result<(), std::fmt::Error> {
    match (kind, value) {
        (MetricKind::Gauge, MetricValue::Int(v)) => e.encode_gauge(&v),
        (MetricKind::Gauge, MetricValue::Float(v)) => e.encode_gauge(&v),
        // A counter never goes below zero.
        (MetricKind::Counter, MetricValue::Int(v)) => {
            e.encode_counter::<NoLabelSet, _, u64>(&(v.max(0) as u64), None)
        }
        (MetricKind::Counter, MetricValue::Float(v)) => {
            e.encode_counter::<NoLabelSet, _, f64>(&v, None)
        }
    }
}
