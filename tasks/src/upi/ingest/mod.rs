//! `upiflow ingest`: a Kafka consumer-group member that loads `upi_transactions` into Postgres
//! exactly once. Offsets live in Postgres, written in the same transaction as the rows; on
//! start and on every rebalance the consumer seeks to them. Kill it at any moment: nothing is
//! lost (the transaction did not commit) and nothing is doubled (the offsets moved with it).

mod lag;
pub use lag::high_watermarks;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use writer::{Row, WriteError};

/// How an ingest process behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub bootstrap_servers: String,
    pub topic: String,
    /// Kafka consumer group; offsets in Postgres are kept per group.
    pub group: String,
    /// Most messages in one transaction.
    pub batch_size: usize,
    /// How long a batch may wait to fill up.
    pub linger: Duration,
    /// Name of this process in `ingest_instances`.
    pub instance_id: String,
}

impl Config {
    pub fn new(bootstrap_servers: &str, topic: &str, group: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            group: group.into(),
            batch_size: 10_000,
            linger: Duration::from_millis(50),
            instance_id: format!(
                "ingest-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
        }
    }
}

#[derive(Debug)]
enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Receives rebalances inside librdkafka's callback: new partitions are paused there, before
/// any message of theirs can arrive, and positioned from Postgres by the main loop.
struct Ctx {
    changes: Arc<Mutex<Vec<Change>>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| e.partition())
                .collect::<Vec<_>>()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(error) = consumer.pause(tpl) {
                    tracing::warn!(%error, "could not pause newly assigned partitions");
                }
                self.changes
                    .lock()
                    .expect("lock")
                    .push(Change::Assigned(parts(tpl)));
            }
            Rebalance::Revoke(tpl) => self
                .changes
                .lock()
                .expect("lock")
                .push(Change::Revoked(parts(tpl))),
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

/// Where each owned partition stands: the next offset we accept (None: the first one we see).
type Positions = HashMap<i32, Option<i64>>;

/// Runs until `shutdown`; then finishes the batch in hand and leaves the group.
pub async fn run(pool: PgPool, cfg: Config, shutdown: CancellationToken) -> Result<()> {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let consumer: StreamConsumer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("fetch.max.bytes", "52428800")
        .create_with_context(Ctx {
            changes: changes.clone(),
        })
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[&cfg.topic])
        .context("cannot subscribe")?;
    sqlx::query(
        "INSERT INTO ingest_instances (instance_id, consumer_group, kafka_topic) VALUES ($1, $2, $3)
         ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL",
    )
    .bind(&cfg.instance_id)
    .bind(&cfg.group)
    .bind(&cfg.topic)
    .execute(&pool)
    .await?;
    tracing::info!(topic = %cfg.topic, group = %cfg.group, instance = %cfg.instance_id, "ingest started");
    let lag = tokio::spawn(lag::record(pool.clone(), cfg.clone(), shutdown.clone()));

    let mut positions: Positions = HashMap::new();
    let mut total: u64 = 0;
    let mut last_beat = Instant::now();
    let mut since_beat: u64 = 0;
    let mut backoff = backoff::ExponentialBackoff {
        max_elapsed_time: None,
        ..Default::default()
    };
    'outer: loop {
        apply_changes(&consumer, &pool, &cfg, &changes, &mut positions).await;

        // Collect a batch: wait for a first message, then linger briefly for more.
        let mut batch: Vec<Row> = Vec::new();
        let mut starts: BTreeMap<i32, i64> = BTreeMap::new();
        let mut reseek = false;
        let mut deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while batch.len() < cfg.batch_size {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => break,
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(%error, "Kafka error while consuming; it reconnects by itself");
                    continue;
                }
            };
            if batch.is_empty() {
                deadline = tokio::time::Instant::now() + cfg.linger;
            }
            let (p, off) = (msg.partition(), msg.offset());
            let Some(pos) = positions.get_mut(&p) else {
                continue; // not (yet) ours: it was revoked, or not positioned yet
            };
            match *pos {
                Some(next) if off < next => continue, // already stored: a duplicate delivery
                Some(next) if off > next => {
                    tracing::warn!(
                        partition = p,
                        expected = next,
                        got = off,
                        "gap in offsets; seeking back"
                    );
                    reseek = true;
                    break;
                }
                _ => {}
            }
            starts.entry(p).or_insert(off);
            *pos = Some(off + 1);
            batch.push(Row {
                partition: p,
                offset: off,
                kafka_timestamp: msg
                    .timestamp()
                    .to_millis()
                    .and_then(chrono::DateTime::from_timestamp_millis),
                payload: msg.payload().map(<[u8]>::to_vec),
            });
        }

        if !batch.is_empty() {
            loop {
                match writer::write_batch(&pool, &cfg.group, &cfg.topic, &batch, &starts).await {
                    Ok(w) => {
                        total += w.raw as u64;
                        since_beat += w.raw as u64;
                        backoff::backoff::Backoff::reset(&mut backoff);
                        break;
                    }
                    Err(WriteError::Conflict(parts)) => {
                        tracing::warn!(
                            ?parts,
                            "another consumer wrote these partitions; re-reading offsets"
                        );
                        reseek = true;
                        break;
                    }
                    Err(WriteError::Db(error)) => {
                        // Keep the batch and try again: nothing was committed, nothing is lost.
                        let wait = backoff::backoff::Backoff::next_backoff(&mut backoff)
                            .unwrap_or(Duration::from_secs(10));
                        tracing::error!(%error, ?wait, rows = batch.len(), "cannot write a batch to Postgres; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => break 'outer,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
        if reseek {
            let owned: Vec<i32> = positions.keys().copied().collect();
            changes.lock().expect("lock").push(Change::Assigned(owned));
        }
        if last_beat.elapsed() >= Duration::from_secs(1) {
            let rate = since_beat as f64 / last_beat.elapsed().as_secs_f64();
            let beat = sqlx::query(
                "UPDATE ingest_instances SET heartbeat_at = now(), events_total = $2, events_per_sec = $3
                 WHERE instance_id = $1",
            )
            .bind(&cfg.instance_id)
            .bind(total as i64)
            .bind(rate)
            .execute(&pool)
            .await;
            if let Err(error) = beat {
                tracing::warn!(%error, "ingest heartbeat failed");
            }
            last_beat = Instant::now();
            since_beat = 0;
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    consumer.unsubscribe();
    let _ = lag.await;
    let _ = sqlx::query("UPDATE ingest_instances SET stopped_at = now() WHERE instance_id = $1")
        .bind(&cfg.instance_id)
        .execute(&pool)
        .await;
    tracing::info!(events = total, "ingest stopped");
    Ok(())
}

/// Positions newly assigned partitions at the offsets stored in Postgres (the beginning when
/// none is stored) and resumes them; forgets revoked ones.
async fn apply_changes(
    consumer: &StreamConsumer<Ctx>,
    pool: &PgPool,
    cfg: &Config,
    changes: &Mutex<Vec<Change>>,
    positions: &mut Positions,
) {
    let pending: Vec<Change> = std::mem::take(&mut *changes.lock().expect("lock"));
    if pending.is_empty() {
        return;
    }
    let mut assigned = Vec::new();
    for c in pending {
        match c {
            Change::Assigned(parts) => assigned.extend(parts),
            Change::Revoked(parts) => {
                for p in parts {
                    positions.remove(&p);
                    assigned.retain(|a| *a != p);
                }
            }
        }
    }
    if assigned.is_empty() {
        return;
    }
    let mut backoff = backoff::ExponentialBackoff {
        max_elapsed_time: None,
        ..Default::default()
    };
    let stored = loop {
        match writer::stored_offsets(pool, &cfg.group, &cfg.topic).await {
            Ok(s) => break s,
            Err(error) => {
                let wait = backoff::backoff::Backoff::next_backoff(&mut backoff)
                    .unwrap_or(Duration::from_secs(10));
                tracing::error!(%error, ?wait, "cannot read stored offsets; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in &assigned {
        let at = stored.get(p).copied();
        let offset = at.map_or(Offset::Beginning, Offset::Offset);
        if let Err(error) = tpl.add_partition_offset(&cfg.topic, *p, offset) {
            tracing::warn!(%error, partition = p, "bad partition offset");
        }
        positions.insert(*p, at);
    }
    match consumer.seek_partitions(tpl.clone(), Duration::from_secs(10)) {
        Ok(res) => {
            for e in res.elements() {
                if let Err(error) = e.error() {
                    tracing::warn!(%error, partition = e.partition(), "seek failed; will retry");
                    changes
                        .lock()
                        .expect("lock")
                        .push(Change::Assigned(vec![e.partition()]));
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, "seek failed; will retry");
            changes
                .lock()
                .expect("lock")
                .push(Change::Assigned(assigned.clone()));
        }
    }
    if let Err(error) = consumer.resume(&tpl) {
        tracing::warn!(%error, "could not resume partitions");
    }
    tracing::info!(partitions = ?assigned, ?stored, "positioned partitions at the offsets stored in Postgres");
}
