//! `upiflow ingest`: loads the Kafka topic `upi_transactions` into Postgres exactly once.
//! Offsets live in Postgres, written in the same transaction as the rows they cover; whenever
//! a process starts reading a partition it starts at the stored offset. Kill it at any moment:
//! nothing is lost (the transaction did not commit) and nothing is doubled (the offsets moved
//! with it). Several processes share the partitions through leases kept next to the offsets
//! (see `lease`): Tansu 0.6's group coordinator never expired a member killed with SIGKILL in
//! our tests, which left its partitions unread for good.

mod lag;
mod lease;
pub mod watermark;
pub mod writer;

pub use lag::high_watermarks;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use writer::{Row, WriteError};

/// How an ingest process behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub bootstrap_servers: String,
    pub topic: String,
    /// Offsets and leases are kept per group.
    pub group: String,
    /// Most messages in one transaction.
    pub batch_size: usize,
    /// How long a batch may wait to fill up.
    pub linger: Duration,
    /// A partition whose owner has not renewed its lease for this long goes to another process.
    pub lease_ttl: Duration,
    /// Name of this process in `ingest_instances` and `ingest_leases`.
    pub instance_id: String,
    /// How far out of event-time order events may arrive: a partition's watermark is its
    /// largest event time stored minus this (Flink's `forBoundedOutOfOrderness`).
    pub out_of_orderness: Duration,
}

/// The out-of-orderness bound when none is given.
pub const DEFAULT_OUT_OF_ORDERNESS: Duration = Duration::from_secs(5);

impl Config {
    pub fn new(bootstrap_servers: &str, topic: &str, group: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            group: group.into(),
            batch_size: 10_000,
            linger: Duration::from_millis(10),
            lease_ttl: Duration::from_secs(6),
            instance_id: format!(
                "ingest-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            out_of_orderness: DEFAULT_OUT_OF_ORDERNESS,
        }
    }
}

/// The consumer's fetch settings. librdkafka's default `fetch.wait.max.ms` of 500 lets a
/// broker hold a fetch that long when it has nothing new (Tansu answers such a fetch only at
/// its deadline), which put a 500 ms floor under every event's way to Postgres; 10 ms keeps
/// the floor low for an idle partition at the cost of more (empty) fetches: idle, Tansu then
/// uses 6.6% of a core instead of 1.0% (25 ms: 2.9%, with p99 73-77 ms in bench_latency).
pub const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("fetch.max.bytes", "52428800"),
    ("fetch.wait.max.ms", "10"),
];

/// The ingest's consumer configuration: [`CONSUMER_SETTINGS`] for `group` on the broker.
pub fn consumer_config(bootstrap_servers: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers)
        .set("group.id", group);
    for (k, v) in CONSUMER_SETTINGS {
        c.set(*k, *v);
    }
    c
}

/// Where each owned partition stands: the next offset we accept (None: the first one we see).
type Positions = HashMap<i32, Option<i64>>;

/// Runs until `shutdown`; then finishes the batch in hand and leaves the group.
pub async fn run(pool: PgPool, cfg: Config, shutdown: CancellationToken) -> Result<()> {
    // Partitions are assigned by us (leases), never by a group coordinator.
    let consumer: StreamConsumer = consumer_config(&cfg.bootstrap_servers, &cfg.group)
        .create()
        .context("cannot create the Kafka consumer")?;
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
    let mut owned: BTreeSet<i32> = BTreeSet::new();
    let mut partitions: Vec<i32> = Vec::new();
    let mut partitions_read: Option<Instant> = None;
    let mut total: u64 = 0;
    let mut last_beat = Instant::now();
    let mut last_round: Option<Instant> = None;
    let mut since_beat: u64 = 0;
    let mut reseek = false;
    let mut inflight: Option<tokio::task::JoinHandle<Outcome>> = None;
    // How far before the stored offset to start reading a partition (see the gap case below).
    let mut rewind: HashMap<i32, i64> = HashMap::new();
    'outer: loop {
        if reseek || last_round.is_none_or(|t| t.elapsed() >= cfg.lease_ttl / 3) {
            if partitions_read.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                let (b, t) = (cfg.bootstrap_servers.clone(), cfg.topic.clone());
                match tokio::task::spawn_blocking(move || {
                    high_watermarks(&b, &t, Duration::from_secs(5))
                })
                .await
                {
                    Ok(Ok(marks)) if !marks.is_empty() => {
                        partitions = marks.into_iter().map(|(p, _)| p).collect();
                        partitions_read = Some(Instant::now());
                    }
                    Ok(Ok(_)) => {
                        tracing::warn!(topic = %cfg.topic, "the topic has no partitions (yet)")
                    }
                    Ok(Err(error)) => tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot read the topic's partitions; retrying"
                    ),
                    Err(_) => {}
                }
            }
            match lease::round(&pool, &cfg, &partitions, cfg.lease_ttl).await {
                Ok(now_owned) => {
                    if now_owned != owned || reseek {
                        match assign(&consumer, &pool, &cfg, &now_owned, &rewind).await {
                            Ok(p) => {
                                positions = p;
                                owned = now_owned;
                                reseek = false;
                            }
                            Err(error) => tracing::error!(
                                error = format!("{error:#}"),
                                "cannot assign partitions; retrying"
                            ),
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "lease round failed; keeping the partitions in hand")
                }
            }
            last_round = Some(Instant::now());
        }

        // Collect a batch: wait for a first message, then linger briefly for more.
        let mut batch: Vec<Row> = Vec::new();
        let mut starts: BTreeMap<i32, i64> = BTreeMap::new();
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
                    // Some brokers (Tansu 0.6) answer a fetch that starts inside a record batch
                    // with the batch after it; start further back and skip what we have.
                    let back = rewind.entry(p).or_insert(256);
                    *back = (*back * 4).min(1 << 22);
                    tracing::info!(
                        partition = p,
                        expected = next,
                        got = off,
                        rewind = *back,
                        "gap in offsets; reading from further back"
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

        // The previous batch was written while this one was read; its outcome decides
        // whether this one may follow.
        if let Some(h) = inflight.take() {
            match h.await.expect("the batch writer does not panic") {
                Outcome::Written(n) => {
                    total += n as u64;
                    since_beat += n as u64;
                }
                Outcome::Conflict => {
                    reseek = true;
                    batch.clear();
                }
                Outcome::Stopped => break 'outer,
            }
        }
        if !batch.is_empty() {
            inflight = Some(tokio::spawn(write_with_retry(
                pool.clone(),
                cfg.clone(),
                batch,
                starts,
                shutdown.clone(),
            )));
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
            if let Some(h) = inflight.take() {
                let _ = h.await;
            }
            break;
        }
    }
    let _ = consumer.unassign();
    if let Err(error) = lease::release_all(&pool, &cfg).await {
        tracing::warn!(%error, "could not release leases; they expire by themselves");
    }
    let _ = lag.await;
    let _ = sqlx::query("UPDATE ingest_instances SET stopped_at = now() WHERE instance_id = $1")
        .bind(&cfg.instance_id)
        .execute(&pool)
        .await;
    tracing::info!(events = total, "ingest stopped");
    Ok(())
}

/// How writing a batch ended.
enum Outcome {
    Written(usize),
    /// Another process wrote one of its partitions first: re-read the offsets.
    Conflict,
    /// Shutdown came while Postgres was unreachable; nothing of the batch was committed.
    Stopped,
}

/// Writes a batch, retrying with backoff while Postgres is unreachable: the batch is kept,
/// nothing was committed, so nothing is lost while we wait.
async fn write_with_retry(
    pool: PgPool,
    cfg: Config,
    batch: Vec<Row>,
    starts: BTreeMap<i32, i64>,
    shutdown: CancellationToken,
) -> Outcome {
    let mut backoff = backoff::ExponentialBackoff {
        max_elapsed_time: None,
        ..Default::default()
    };
    loop {
        match writer::write_batch(
            &pool,
            &cfg.group,
            &cfg.topic,
            &batch,
            &starts,
            cfg.out_of_orderness,
        )
        .await
        {
            Ok(w) => return Outcome::Written(w.raw),
            Err(WriteError::Conflict(parts)) => {
                tracing::warn!(
                    ?parts,
                    "another process wrote these partitions; re-reading offsets"
                );
                return Outcome::Conflict;
            }
            Err(WriteError::Db(error)) => {
                let wait = backoff::backoff::Backoff::next_backoff(&mut backoff)
                    .unwrap_or(Duration::from_secs(10));
                tracing::error!(%error, ?wait, rows = batch.len(), "cannot write a batch to Postgres; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Outcome::Stopped,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Reads `owned` from the offsets stored in Postgres (the beginning where none is stored).
async fn assign(
    consumer: &StreamConsumer,
    pool: &PgPool,
    cfg: &Config,
    owned: &BTreeSet<i32>,
    rewind: &HashMap<i32, i64>,
) -> Result<Positions> {
    let stored = writer::stored_offsets(pool, &cfg.group, &cfg.topic).await?;
    let mut tpl = TopicPartitionList::new();
    let mut positions = HashMap::new();
    for p in owned {
        let at = stored.get(p).copied();
        let from = at.map(|n| n - rewind.get(p).copied().unwrap_or(0));
        let offset = match from {
            Some(n) if n > 0 => Offset::Offset(n),
            _ => Offset::Beginning,
        };
        tpl.add_partition_offset(&cfg.topic, *p, offset)?;
        positions.insert(*p, at);
    }
    consumer.assign(&tpl)?;
    tracing::info!(partitions = ?owned, ?stored, "reading partitions from the offsets stored in Postgres");
    Ok(positions)
}
