//! One batch of messages into Postgres in ONE transaction: the partitions' next offsets
//! (compare-and-set, so two consumers can never both write a range), every message into
//! `raw_upi_transactions`, valid ones upserted into `clean_upi_transactions` (latest event
//! time wins, ties by offset), invalid ones into `dead_letter_upi_transactions`. The same
//! statement that moves the offsets moves the partitions' event-time watermarks
//! (`watermark`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::upi::event::{Verdict, validate};

/// A consumed message.
#[derive(Debug, Clone)]
pub struct Row {
    pub partition: i32,
    pub offset: i64,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub payload: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Someone else moved a partition's offset since we read it: our view is stale.
    #[error("offsets of partitions {0:?} moved under us (another consumer owns them now)")]
    Conflict(Vec<i32>),
    #[error("database error while writing a batch")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub raw: usize,
    pub clean: usize,
    pub dead: usize,
}

/// Writes `rows` (in offset order per partition, starting at `starts[partition]`); each
/// partition's watermark becomes its largest event time stored minus `out_of_orderness`,
/// unless it was already further.
pub async fn write_batch(
    pool: &PgPool,
    group: &str,
    topic: &str,
    rows: &[Row],
    starts: &BTreeMap<i32, i64>,
    out_of_orderness: Duration,
) -> Result<Written, WriteError> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for r in rows {
        let n = next.entry(r.partition).or_insert(r.offset + 1);
        *n = (*n).max(r.offset + 1);
    }
    let parts: Vec<i32> = next.keys().copied().collect();
    let expect: Vec<i64> = parts
        .iter()
        .map(|p| starts.get(p).copied().unwrap_or(0))
        .collect();
    let nexts: Vec<i64> = next.values().copied().collect();

    let mut raw_part = Vec::with_capacity(rows.len());
    let mut raw_off = Vec::with_capacity(rows.len());
    let mut raw_ts = Vec::with_capacity(rows.len());
    let mut raw_payload = Vec::with_capacity(rows.len());
    let mut raw_txn = Vec::with_capacity(rows.len());
    let mut raw_time = Vec::with_capacity(rows.len());
    let mut raw_valid = Vec::with_capacity(rows.len());
    let mut dead = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The largest event time of a valid event, per partition.
    let mut newest: BTreeMap<i32, DateTime<Utc>> = BTreeMap::new();
    // Within a batch one transaction may appear twice (PENDING then SUCCESS): keep the latest.
    let mut clean: HashMap<String, (crate::upi::event::Clean, i32, i64)> = HashMap::new();
    for r in rows {
        let verdict = validate(r.payload.as_deref());
        // Postgres text holds no NUL; the audit copy keeps everything else as received.
        let text = String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default())
            .replace('\0', "\u{FFFD}");
        raw_part.push(r.partition);
        raw_off.push(r.offset);
        raw_ts.push(r.kafka_timestamp);
        match verdict {
            Verdict::Valid(c) => {
                newest
                    .entry(r.partition)
                    .and_modify(|t| *t = (*t).max(c.event_time))
                    .or_insert(c.event_time);
                raw_txn.push(Some(c.txn_id.clone()));
                raw_time.push(Some(c.event_time));
                raw_valid.push(true);
                let newer = clean
                    .get(&c.txn_id)
                    .is_none_or(|(old, _, off)| (c.event_time, r.offset) > (old.event_time, *off));
                if newer {
                    clean.insert(c.txn_id.clone(), (c, r.partition, r.offset));
                }
            }
            Verdict::Invalid {
                reason,
                txn_id,
                event_time,
            } => {
                raw_txn.push(txn_id);
                raw_time.push(event_time);
                raw_valid.push(false);
                dead.0.push(r.partition);
                dead.1.push(r.offset);
                dead.2.push(text.clone());
                dead.3.push(reason);
            }
        }
        raw_payload.push(text);
    }

    let mut tx = pool.begin().await?;
    let maxes: Vec<Option<DateTime<Utc>>> = parts.iter().map(|p| newest.get(p).copied()).collect();
    // Offsets first: the row locks serialise writers of a partition, and the WHERE makes a
    // stale writer's update a no-op, which we turn into a rollback. GREATEST skips NULLs: a
    // batch of only invalid messages leaves the watermark where it was.
    let moved: Vec<i32> = sqlx::query_scalar(
        "INSERT INTO ingest_offsets
            (consumer_group, kafka_topic, kafka_partition, next_offset, max_event_time, watermark)
         SELECT $1, $2, p, n, m, m - make_interval(secs => $6)
         FROM UNNEST($3::int[], $5::bigint[], $7::timestamptz[]) AS u(p, n, m)
         ON CONFLICT (consumer_group, kafka_topic, kafka_partition) DO UPDATE
            SET next_offset = EXCLUDED.next_offset, updated_at = now(),
                max_event_time = GREATEST(ingest_offsets.max_event_time, EXCLUDED.max_event_time),
                watermark = GREATEST(ingest_offsets.watermark, EXCLUDED.watermark)
            WHERE ingest_offsets.next_offset = (
                SELECT e FROM UNNEST($3::int[], $4::bigint[]) AS x(p, e)
                WHERE x.p = EXCLUDED.kafka_partition)
         RETURNING kafka_partition",
    )
    .bind(group)
    .bind(topic)
    .bind(&parts)
    .bind(&expect)
    .bind(&nexts)
    .bind(out_of_orderness.as_secs_f64())
    .bind(&maxes)
    .fetch_all(&mut *tx)
    .await?;
    if moved.len() != parts.len() {
        let stale = parts
            .iter()
            .copied()
            .filter(|p| !moved.contains(p))
            .collect();
        return Err(WriteError::Conflict(stale));
    }
    sqlx::query(
        "INSERT INTO raw_upi_transactions
            (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, payload, txn_id, event_time, valid)
         SELECT $1, * FROM UNNEST($2::int[], $3::bigint[], $4::timestamptz[], $5::text[], $6::text[],
                                  $7::timestamptz[], $8::bool[])",
    )
    .bind(topic)
    .bind(&raw_part)
    .bind(&raw_off)
    .bind(&raw_ts)
    .bind(&raw_payload)
    .bind(&raw_txn)
    .bind(&raw_time)
    .bind(&raw_valid)
    .execute(&mut *tx)
    .await?;
    if !dead.0.is_empty() {
        sqlx::query(
            "INSERT INTO dead_letter_upi_transactions (kafka_topic, kafka_partition, kafka_offset, payload, reason)
             SELECT $1, * FROM UNNEST($2::int[], $3::bigint[], $4::text[], $5::text[])",
        )
        .bind(topic)
        .bind(&dead.0)
        .bind(&dead.1)
        .bind(&dead.2)
        .bind(&dead.3)
        .execute(&mut *tx)
        .await?;
    }
    let n_clean = clean.len();
    if n_clean > 0 {
        let mut c = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (e, p, o) in clean.into_values() {
            c.0.push(e.txn_id);
            c.1.push(e.payer);
            c.2.push(e.payee);
            c.3.push(e.amount);
            c.4.push(e.status);
            c.5.push(e.event_time);
            c.6.push(p);
            c.7.push(o);
        }
        sqlx::query(
            "INSERT INTO clean_upi_transactions
                (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
             SELECT t, pr, pe, a::numeric(12, 2), s, et, p, o
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[],
                         $6::timestamptz[], $7::int[], $8::bigint[]) AS u(t, pr, pe, a, s, et, p, o)
             ON CONFLICT (txn_id) DO UPDATE SET
                payer = EXCLUDED.payer, payee = EXCLUDED.payee, amount = EXCLUDED.amount,
                status = EXCLUDED.status, event_time = EXCLUDED.event_time,
                kafka_partition = EXCLUDED.kafka_partition, kafka_offset = EXCLUDED.kafka_offset,
                updated_at = now()
             WHERE (EXCLUDED.event_time, EXCLUDED.kafka_offset)
                 > (clean_upi_transactions.event_time, clean_upi_transactions.kafka_offset)",
        )
        .bind(&c.0)
        .bind(&c.1)
        .bind(&c.2)
        .bind(&c.3)
        .bind(&c.4)
        .bind(&c.5)
        .bind(&c.6)
        .bind(&c.7)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Written {
        raw: rows.len(),
        clean: n_clean,
        dead: dead.0.len(),
    })
}

/// The stored next offsets of a consumer group's partitions.
pub async fn stored_offsets(
    pool: &PgPool,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT kafka_partition, next_offset FROM ingest_offsets WHERE consumer_group = $1 AND kafka_topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A private in-memory broker starts empty, so offsets stored for an earlier broker no longer
/// mean anything. Keeps the audit trail of that broker under `TOPIC@retired-TIMESTAMP` (so the
/// new broker's offsets cannot collide with it) and forgets its stored offsets.
pub async fn retire_broker_epoch(
    pool: &PgPool,
    group: &str,
    topic: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let had: Option<i64> = sqlx::query_scalar(
        "SELECT max(next_offset) FROM ingest_offsets WHERE consumer_group = $1 AND kafka_topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_one(&mut *tx)
    .await?;
    if had.is_none() {
        return Ok(false);
    }
    let retired = format!(
        "{topic}@retired-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    );
    for table in ["raw_upi_transactions", "dead_letter_upi_transactions"] {
        sqlx::query(&format!(
            "UPDATE {table} SET kafka_topic = $2 WHERE kafka_topic = $1"
        ))
        .bind(topic)
        .bind(&retired)
        .execute(&mut *tx)
        .await?;
    }
    for table in ["ingest_offsets", "ingest_lag"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE consumer_group = $1 AND kafka_topic = $2"
        ))
        .bind(group)
        .bind(topic)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::warn!(%topic, %retired, "a fresh private broker: the previous broker's audit trail is kept under a retired topic name");
    Ok(true)
}
