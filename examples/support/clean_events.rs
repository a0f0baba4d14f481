//! A bulk load of synthetic clean UPI events, shared by the transform and dashboard
//! benchmarks: the table's indexes are dropped, the rows inserted by one
//! INSERT ... SELECT generate_series, and the indexes rebuilt from their own definitions
//! (one sort per index instead of millions of random insertions).

use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// Evenly spaced in time (an append-only ingest writes in roughly that order), 200,000 payers
/// at 8 banks, 2,000 merchants, 80/15/5 % success/failed/pending, amounts from 1 to 100,000.
/// Txn ids: random 32 hex digits, or with `$4` false the `upiflow generate` format numbered in
/// time order (as a live feed makes them). `$1`: the number of events; `$2`: the first
/// instant; `$3`: the spacing in microseconds.
const GENERATE: &str = "
INSERT INTO clean_upi_transactions
    (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
SELECT CASE WHEN $4 THEN md5(i::text) ELSE 'txn-2a-' || lpad(i::text, 10, '0') END,
       'user' || (i * 7919 % 200000) || '@'
           || (ARRAY['oksbi', 'okaxis', 'okhdfcbank', 'okicici', 'ybl', 'paytm', 'ibl', 'axl'])
              [1 + (i * 7919 % 200000) % 8],
       'merchant' || (i * 104729 % 2000) || '@'
           || (ARRAY['upi', 'ybl', 'okaxis', 'paytm'])[1 + (i * 104729 % 2000) % 4],
       1 + (i * 2654435761 % 9999900) / 100.0,
       CASE WHEN i % 20 < 16 THEN 'SUCCESS' WHEN i % 20 < 19 THEN 'FAILED' ELSE 'PENDING' END,
       $2 + i * $3 * interval '1 microsecond',
       i % 6,
       i
FROM generate_series(0::bigint, $1 - 1) AS i";

/// How long the load took.
pub struct Loaded {
    pub insert_s: f64,
    pub index_s: f64,
    pub indexes: usize,
}

/// Inserts `events` clean events spread evenly over `days` from `start`.
pub async fn load(
    conn: &mut PgConnection,
    events: i64,
    days: i64,
    start: DateTime<Utc>,
    random_ids: bool,
) -> anyhow::Result<Loaded> {
    sqlx::query("SET maintenance_work_mem = '1GB'")
        .execute(&mut *conn)
        .await?;
    let indexes: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(i.oid), pg_get_constraintdef(c.oid)
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
         WHERE x.indrelid = 'clean_upi_transactions'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, _, constraint) in &indexes {
        let drop = match constraint {
            Some(_) => format!("ALTER TABLE clean_upi_transactions DROP CONSTRAINT {name}"),
            None => format!("DROP INDEX {name}"),
        };
        sqlx::query(&drop).execute(&mut *conn).await?;
    }

    let t0 = Instant::now();
    let spacing_us = days * 86_400_000_000 / events;
    sqlx::query(GENERATE)
        .bind(events)
        .bind(start)
        .bind(spacing_us as f64)
        .bind(random_ids)
        .execute(&mut *conn)
        .await?;
    let insert_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    for (name, definition, constraint) in &indexes {
        let create = match constraint {
            Some(c) => format!("ALTER TABLE clean_upi_transactions ADD CONSTRAINT {name} {c}"),
            None => definition.clone(),
        };
        sqlx::query(&create).execute(&mut *conn).await?;
    }
    Ok(Loaded {
        insert_s,
        index_s: t1.elapsed().as_secs_f64(),
        indexes: indexes.len(),
    })
}
