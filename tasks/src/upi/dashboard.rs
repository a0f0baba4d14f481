//! The payments dashboard's queries: one per panel (or group of panels fed by one result),
//! each cheap at 10,000,000 events. The benchmark (examples/bench_dashboard.rs) runs these
//! same functions; [`super::panels`] turns their results into panels.
//!
//! Where each reads:
//! - minute and hour panels (volume, failures, status split, banks, heatmap, today's top
//!   merchants): the rollups `upi_rollup_minute` (ranges up to 24 h), `upi_rollup_hour`
//!   (7 and 30 days) and `upi_rollup_merchant_day`, kept exact by triggers on
//!   `clean_upi_transactions` (see migrations/20260105100000_metrics.sql);
//! - daily panels: the DAG's `daily_upi_summary` and `merchant_upi_summary`;
//! - ingest health: `ingest_instances`, `ingest_lag`, `dead_letter_upi_transactions`.
//!
//! Days and hours are IST (Asia/Kolkata, UTC+05:30 all year), the zone of the DAG's days.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use sqlx::PgPool;
pub use upiflow_engine::product::{Range, Window};

/// Asia/Kolkata has been UTC+05:30 without daylight saving since 1945.
pub const IST_SECS: i32 = 5 * 3600 + 1800;

/// The IST date of an instant.
pub fn ist_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&FixedOffset::east_opt(IST_SECS).expect("a valid offset"))
        .date_naive()
}

/// The window of `range` at `now`, aligned in IST.
pub fn window(range: Range, now: DateTime<Utc>) -> Window {
    Window::new(range, now, IST_SECS)
}

/// The rollup a time-bucketed query reads, and its time column.
fn rollup(w: &Window) -> (&'static str, &'static str) {
    if w.bucket_secs() < 3600 {
        ("upi_rollup_minute", "minute")
    } else {
        ("upi_rollup_hour", "hour")
    }
}

/// Transactions and amount per bucket and status over the window.
#[derive(Debug, Default, Clone)]
pub struct Volume {
    pub buckets: Vec<DateTime<Utc>>,
    /// Per status (SUCCESS, FAILED, PENDING): transactions per bucket.
    pub txns: [Vec<f64>; 3],
    pub amount: [f64; 3],
}

pub const STATUSES: [&str; 3] = ["SUCCESS", "FAILED", "PENDING"];

fn status_index(s: &str) -> Option<usize> {
    STATUSES.iter().position(|x| *x == s)
}

impl Volume {
    pub fn total(&self) -> f64 {
        self.txns.iter().flatten().fold(0.0, |a, b| a + b)
    }
    pub fn by_status(&self, i: usize) -> f64 {
        self.txns[i].iter().fold(0.0, |a, b| a + b)
    }
    /// Transactions per bucket, all statuses.
    pub fn per_bucket(&self) -> Vec<f64> {
        (0..self.buckets.len())
            .map(|i| self.txns.iter().map(|s| s[i]).sum())
            .collect()
    }
}

pub async fn volume(pool: &PgPool, w: &Window) -> Result<Volume, sqlx::Error> {
    let (table, col) = rollup(w);
    let rows: Vec<(DateTime<Utc>, String, i64, f64)> = sqlx::query_as(&format!(
        "SELECT date_bin(make_interval(secs => $3), {col}, TIMESTAMPTZ '2000-01-01 00:00:00+05:30'),
                status, sum(txns)::int8, sum(amount)::float8
         FROM {table}
         WHERE {col} >= $1 AND {col} < $2
         GROUP BY 1, 2"
    ))
    .bind(w.start)
    .bind(w.end)
    .bind(w.bucket_secs() as f64)
    .fetch_all(pool)
    .await?;
    let buckets = w.buckets();
    let index: HashMap<DateTime<Utc>, usize> =
        buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let mut v = Volume {
        txns: std::array::from_fn(|_| vec![0.0; buckets.len()]),
        buckets,
        amount: [0.0; 3],
    };
    for (bucket, status, txns, amount) in rows {
        if let (Some(&i), Some(s)) = (index.get(&bucket), status_index(&status)) {
            v.txns[s][i] += txns as f64;
            v.amount[s] += amount;
        }
    }
    Ok(v)
}

/// Transactions per payer bank (the handle after `@`) and status over the window.
pub async fn banks(pool: &PgPool, w: &Window) -> Result<Vec<(String, [f64; 3])>, sqlx::Error> {
    let (table, col) = rollup(w);
    let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "SELECT payer_bank, status, sum(txns)::int8 FROM {table}
         WHERE {col} >= $1 AND {col} < $2
         GROUP BY 1, 2"
    ))
    .bind(w.start)
    .bind(w.end)
    .fetch_all(pool)
    .await?;
    let mut by: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    for (bank, status, n) in rows {
        if let Some(s) = status_index(&status) {
            by.entry(bank).or_default()[s] += n as f64;
        }
    }
    let mut out: Vec<(String, [f64; 3])> = by
        .into_iter()
        .filter(|(_, v)| v.iter().sum::<f64>() > 0.0)
        .collect();
    out.sort_by(|a, b| {
        b.1.iter()
            .sum::<f64>()
            .total_cmp(&a.1.iter().sum::<f64>())
            .then(a.0.cmp(&b.0))
    });
    Ok(out)
}

/// Transactions per IST day and hour of the window's days: `(day, hour) -> count`.
pub async fn heatmap(
    pool: &PgPool,
    w: &Window,
) -> Result<HashMap<(NaiveDate, u32), f64>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT hour, sum(txns)::int8 FROM upi_rollup_hour
         WHERE hour >= $1 AND hour < $2
         GROUP BY 1",
    )
    .bind(w.midnight(w.first_day))
    .bind(w.midnight(w.last_day + Duration::days(1)))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(h, n)| {
            let local = h.with_timezone(&w.zone());
            (
                (local.date_naive(), chrono::Timelike::hour(&local)),
                n as f64,
            )
        })
        .collect())
}

/// The ten merchants with the largest amount today (IST): `(merchant, txns, amount)`.
pub async fn top_merchants(
    pool: &PgPool,
    w: &Window,
) -> Result<Vec<(String, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT merchant, txns, amount::float8 FROM upi_rollup_merchant_day
         WHERE day = $1 AND txns > 0
         ORDER BY amount DESC, merchant
         LIMIT 10",
    )
    .bind(w.today())
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Daily {
    pub date: NaiveDate,
    pub total_txns: i64,
    pub success_txns: i64,
    pub failed_txns: i64,
    pub pending_txns: i64,
    pub total_amount: f64,
}

/// The DAG's daily summaries of the window's days.
pub async fn daily(pool: &PgPool, w: &Window) -> Result<Vec<Daily>, sqlx::Error> {
    sqlx::query_as(
        "SELECT date, total_txns, success_txns, failed_txns, pending_txns, total_amount::float8
         FROM daily_upi_summary WHERE date BETWEEN $1 AND $2 ORDER BY date",
    )
    .bind(w.first_day)
    .bind(w.last_day)
    .fetch_all(pool)
    .await
}

/// The five merchants with the largest amount over the window's days, and their amount
/// per day (from the DAG's merchant summary): `(merchant, date, amount)`.
pub async fn merchant_trend(
    pool: &PgPool,
    w: &Window,
) -> Result<Vec<(String, NaiveDate, f64)>, sqlx::Error> {
    sqlx::query_as(
        "WITH top AS (
             SELECT merchant, sum(amount) AS amount FROM merchant_upi_summary
             WHERE date BETWEEN $1 AND $2
             GROUP BY merchant ORDER BY sum(amount) DESC, merchant LIMIT 5)
         SELECT m.merchant, m.date, m.amount::float8
         FROM merchant_upi_summary m JOIN top USING (merchant)
         WHERE m.date BETWEEN $1 AND $2
         ORDER BY top.amount DESC, m.merchant, m.date",
    )
    .bind(w.first_day)
    .bind(w.last_day)
    .fetch_all(pool)
    .await
}

/// Ingest processes that reported in the last 30 s: `(instance, events/s, events total)`.
pub async fn ingest_rate(pool: &PgPool) -> Result<Vec<(String, f64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT instance_id, events_per_sec, events_total FROM ingest_instances
         WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '30 seconds'
         ORDER BY instance_id",
    )
    .fetch_all(pool)
    .await
}

/// Consumer lag per partition as last recorded, with the partition's event-time watermark
/// and how far it is behind now, when it has one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
    /// Seconds since the lag was recorded.
    pub age: f64,
    pub watermark: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds from the watermark to now.
    pub watermark_behind: Option<f64>,
}

pub async fn consumer_lag(pool: &PgPool) -> Result<Vec<PartitionLag>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.consumer_group AS group, l.kafka_topic AS topic, l.kafka_partition AS partition,
                l.lag, EXTRACT(EPOCH FROM now() - l.updated_at)::float8 AS age, o.watermark,
                EXTRACT(EPOCH FROM now() - o.watermark)::float8 AS watermark_behind
         FROM ingest_lag l LEFT JOIN ingest_offsets o USING (consumer_group, kafka_topic, kafka_partition)
         ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
}

/// Dead letters received in the window by kind of reason (its text up to the first `:` or
/// backquote, e.g. `unknown status`), and the total ever received.
pub async fn dead_letters(
    pool: &PgPool,
    w: &Window,
) -> Result<(Vec<(String, i64)>, i64), sqlx::Error> {
    let kinds: Vec<(String, i64)> = sqlx::query_as(
        "SELECT trim(split_part(split_part(reason, ':', 1), '`', 1)), count(*)
         FROM dead_letter_upi_transactions
         WHERE received_at >= $1 AND received_at < $2
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
    )
    .bind(w.start)
    .bind(w.end)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_upi_transactions")
        .fetch_one(pool)
        .await?;
    Ok((kinds, total))
}
