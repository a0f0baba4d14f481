//! The `ingest_supervisor` task kind: makes sure an ingest process is alive (restarting the
//! in-process one, or checking the heartbeat of a separate one), takes the topic's high
//! watermarks when the try starts, waits until the offsets stored in Postgres reach them (so
//! downstream transforms see every event produced before the run began), then waits until
//! the run's data interval is complete in event time: every partition's event-time watermark
//! has passed `data_interval_end` plus the DAG's `allowed_lateness`, or the partition is idle
//! (no lag and nothing stored for `idle_timeout`: Flink's idleness rule), so an event of
//! 23:59 that reaches Kafka at 00:10 is in the day it belongs to.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use upiflow_engine::logs::LogStream;
use upiflow_engine::{PrepareCtx, PrepareError, TaskContext, TaskError, TaskKind};

use super::ingest::{self, Config, watermark};
use crate::keys;

/// `ingest_supervisor` task configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Kafka topic the ingest consumes.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Consumer group whose offsets count.
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// Kafka address; default: KAFKA_BOOTSTRAP_SERVERS of the worker.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// A separate ingest process counts as alive if it heart-beat this recently.
    #[serde(default = "default_heartbeat", with = "humantime_secs")]
    pub max_heartbeat_age: Duration,
    /// How long to wait for the ingest to catch up and the interval to be complete before
    /// failing the try.
    #[serde(default = "default_wait", with = "humantime_secs")]
    pub wait_timeout: Duration,
    /// A partition with nothing left to read that has stored nothing for this long does not
    /// hold an interval open (Flink's `withIdleness`).
    #[serde(default = "default_idle", with = "humantime_secs")]
    pub idle_timeout: Duration,
}

pub const DEFAULT_TOPIC: &str = "upi_transactions";
pub const DEFAULT_GROUP: &str = "upiflow-ingest";

fn default_topic() -> String {
    DEFAULT_TOPIC.into()
}
fn default_group() -> String {
    DEFAULT_GROUP.into()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(30)
}
fn default_wait() -> Duration {
    Duration::from_secs(600)
}
fn default_idle() -> Duration {
    Duration::from_secs(30)
}

/// Durations as humantime text in TOML ("30s") and in the stored config.
mod humantime_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// The ingest running inside this process (standalone), which the supervisor may restart.
pub struct LocalIngest {
    pool: sqlx::PgPool,
    cfg: Config,
    shutdown: CancellationToken,
    handle: Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
}

static LOCAL: OnceLock<Arc<LocalIngest>> = OnceLock::new();

impl LocalIngest {
    /// Starts the in-process ingest and makes it the one supervisors look after.
    pub fn start(pool: sqlx::PgPool, cfg: Config, shutdown: CancellationToken) -> Arc<Self> {
        let me = Arc::new(Self {
            pool,
            cfg,
            shutdown,
            handle: Mutex::new(None),
        });
        me.ensure_running();
        let _ = LOCAL.set(me.clone());
        me
    }

    /// Starts it if it is not running; says whether it had to.
    pub fn ensure_running(&self) -> bool {
        let mut h = self.handle.lock().expect("lock");
        if h.as_ref().is_some_and(|h| !h.is_finished()) || self.shutdown.is_cancelled() {
            return false;
        }
        let restarted = h.is_some();
        *h = Some(tokio::spawn(ingest::run(
            self.pool.clone(),
            self.cfg.clone(),
            self.shutdown.clone(),
        )));
        restarted
    }

    /// Waits for it to stop (after its shutdown token is cancelled).
    pub async fn join(&self) {
        let h = self.handle.lock().expect("lock").take();
        if let Some(h) = h {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(error = format!("{error:#}"), "ingest failed"),
                Err(error) => tracing::error!(%error, "ingest panicked"),
            }
        }
    }
}

const SPEC: &[keys::KeySpec] = &[
    keys::KeySpec {
        name: "topic",
        expects: "a topic name",
    },
    keys::KeySpec {
        name: "consumer_group",
        expects: "a consumer group name",
    },
    keys::KeySpec {
        name: "bootstrap_servers",
        expects: "host:port[,host:port]",
    },
    keys::KeySpec {
        name: "max_heartbeat_age",
        expects: "a duration such as \"30s\"",
    },
    keys::KeySpec {
        name: "wait_timeout",
        expects: "a duration such as \"10m\"",
    },
    keys::KeySpec {
        name: "idle_timeout",
        expects: "a duration such as \"30s\"",
    },
];

pub struct IngestSupervisorKind;

impl TaskKind for IngestSupervisorKind {
    fn name(&self) -> &'static str {
        "ingest_supervisor"
    }

    fn keys(&self) -> &'static [&'static str] {
        &[
            "topic",
            "consumer_group",
            "bootstrap_servers",
            "max_heartbeat_age",
            "wait_timeout",
            "idle_timeout",
        ]
    }

    fn prepare(
        &self,
        _ctx: &PrepareCtx<'_>,
        keys: toml::Table,
    ) -> Result<Value, Vec<PrepareError>> {
        let cfg: SupervisorConfig = keys::parse(keys, SPEC)?;
        Ok(serde_json::to_value(cfg).expect("config serialises"))
    }

    fn run<'a>(
        &'a self,
        ctx: &'a TaskContext,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(supervise(ctx, config))
    }
}

async fn supervise(ctx: &TaskContext, config: &Value) -> Result<(), TaskError> {
    let cfg: SupervisorConfig = serde_json::from_value(config.clone())
        .map_err(|e| TaskError::Fatal(format!("bad stored config: {e}")))?;
    let bootstrap = cfg
        .bootstrap_servers
        .clone()
        .or_else(|| std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok())
        .or_else(|| LOCAL.get().map(|l| l.cfg.bootstrap_servers.clone()))
        .ok_or_else(|| {
            TaskError::Fatal(
                "no Kafka: set KAFKA_BOOTSTRAP_SERVERS or the task's bootstrap_servers".into(),
            )
        })?;
    let log = |line: String| ctx.log.line(LogStream::System, line);

    match LOCAL
        .get()
        .filter(|l| l.cfg.topic == cfg.topic && l.cfg.group == cfg.consumer_group)
    {
        Some(local) => {
            if local.ensure_running() {
                log("the in-process ingest had stopped; restarted it".into()).await;
            }
        }
        None => {
            let age: Option<f64> = sqlx::query_scalar(
                "SELECT EXTRACT(EPOCH FROM now() - max(heartbeat_at))::float8 FROM ingest_instances
                 WHERE consumer_group = $1 AND kafka_topic = $2 AND stopped_at IS NULL",
            )
            .bind(&cfg.consumer_group)
            .bind(&cfg.topic)
            .fetch_one(&ctx.pool)
            .await
            .map_err(|e| TaskError::Retryable(format!("cannot read ingest heartbeats: {e}")))?;
            match age {
                Some(a) if a <= cfg.max_heartbeat_age.as_secs_f64() => {
                    log(format!(
                        "an ingest process is alive (heartbeat {a:.1}s ago)"
                    ))
                    .await
                }
                _ => {
                    return Err(TaskError::Retryable(format!(
                        "no ingest process for group `{}` on topic `{}` has heart-beaten in the last {}; start `upiflow ingest` (or `upiflow standalone`)",
                        cfg.consumer_group,
                        cfg.topic,
                        humantime::format_duration(cfg.max_heartbeat_age)
                    )));
                }
            }
        }
    }

    let (b, t) = (bootstrap.clone(), cfg.topic.clone());
    let marks = tokio::task::spawn_blocking(move || {
        ingest::high_watermarks(&b, &t, Duration::from_secs(10))
    })
    .await
    .map_err(|e| TaskError::Retryable(format!("watermark lookup failed: {e}")))?
    .map_err(|e| {
        TaskError::Retryable(format!(
            "cannot read the high watermarks of `{}` from {bootstrap}: {e:#}",
            cfg.topic
        ))
    })?;
    log(format!("high watermarks at start: {}", fmt_parts(&marks))).await;
    let started = Instant::now();
    loop {
        let stored = ingest::writer::stored_offsets(&ctx.pool, &cfg.consumer_group, &cfg.topic)
            .await
            .map_err(|e| TaskError::Retryable(format!("cannot read stored offsets: {e}")))?;
        let behind: Vec<(i32, i64)> = marks
            .iter()
            .filter(|(p, high)| stored.get(p).copied().unwrap_or(0) < *high)
            .map(|(p, high)| (*p, high - stored.get(p).copied().unwrap_or(0)))
            .collect();
        if behind.is_empty() {
            log(format!("ingest caught up in {:.1?}", started.elapsed())).await;
            break;
        }
        if started.elapsed() >= cfg.wait_timeout {
            return Err(TaskError::Retryable(format!(
                "ingest did not reach the high watermarks within {}; still behind: {}",
                humantime::format_duration(cfg.wait_timeout),
                behind
                    .iter()
                    .map(|(p, n)| format!("partition {p} by {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    complete_in_event_time(ctx, &cfg, &bootstrap, started).await
}

/// Waits until every partition's watermark has passed the interval's end plus the allowed
/// lateness, or the partition is idle; says in the log which partitions it waits for.
async fn complete_in_event_time(
    ctx: &TaskContext,
    cfg: &SupervisorConfig,
    bootstrap: &str,
    started: Instant,
) -> Result<(), TaskError> {
    let log = |line: String| ctx.log.line(LogStream::System, line);
    let lateness = chrono::Duration::from_std(ctx.allowed_lateness)
        .map_err(|e| TaskError::Fatal(format!("allowed_lateness out of range: {e}")))?;
    let until = ctx.data_interval_end + lateness;
    let mut said = String::new();
    loop {
        let (b, t) = (bootstrap.to_string(), cfg.topic.clone());
        let highs = tokio::task::spawn_blocking(move || {
            ingest::high_watermarks(&b, &t, Duration::from_secs(10))
        })
        .await
        .map_err(|e| TaskError::Retryable(format!("watermark lookup failed: {e}")))?
        .map_err(|e| {
            TaskError::Retryable(format!(
                "cannot read the high watermarks of `{}` from {bootstrap}: {e:#}",
                cfg.topic
            ))
        })?;
        let stored = watermark::stored(&ctx.pool, &cfg.consumer_group, &cfg.topic)
            .await
            .map_err(|e| TaskError::Retryable(format!("cannot read stored watermarks: {e}")))?;
        let standings = watermark::standings(&highs, &stored, until, cfg.idle_timeout);
        let waiting = watermark::describe_waiting(&standings, until);
        if waiting.is_empty() {
            let idle: Vec<String> = standings
                .iter()
                .filter(|(_, s)| **s == watermark::Standing::Idle)
                .map(|(p, _)| p.to_string())
                .collect();
            log(format!(
                "the interval is complete in event time: every watermark has passed {} (data_interval_end + allowed_lateness {}){}",
                until.to_rfc3339(),
                humantime::format_duration(ctx.allowed_lateness),
                if idle.is_empty() {
                    String::new()
                } else {
                    format!("; idle partitions, not waited for: {}", idle.join(", "))
                }
            ))
            .await;
            return Ok(());
        }
        if started.elapsed() >= cfg.wait_timeout {
            return Err(TaskError::Retryable(format!(
                "the interval was not complete in event time within {}: still waiting for {waiting}",
                humantime::format_duration(cfg.wait_timeout),
            )));
        }
        // Say which partitions hold it open whenever that set changes.
        let open: String = standings
            .iter()
            .filter(|(_, s)| matches!(s, watermark::Standing::Waiting { .. }))
            .map(|(p, _)| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if open != said {
            log(format!("waiting for event time: {waiting}")).await;
            said = open;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn fmt_parts(marks: &[(i32, i64)]) -> String {
    marks
        .iter()
        .map(|(p, h)| format!("p{p}={h}"))
        .collect::<Vec<_>>()
        .join(" ")
}
