//! Dashboard benchmark: every query of the payments dashboard (`/payments`) over 10,000,000
//! clean UPI events spread over the last 30 days, at the widest range (30 days; the minute
//! rollup's panels also at 24 h, the widest range that reads it), p50 and p99 over repeated
//! runs; target under 200 ms each. Also: the whole page and each refresh fragment through
//! the router, a /metrics scrape, the seed's way (the same numbers straight from
//! clean_upi_transactions) as a baseline, and what the exact rollup triggers cost the
//! ingest transaction (writer batches of 1,000 events with the triggers on and off).
//!
//! The load is a bulk load: clean rows by INSERT ... SELECT generate_series with indexes
//! and triggers off, then indexes, rollups and the DAG's daily and merchant summaries built
//! from the loaded rows (each by one GROUP BY), then VACUUM ANALYZE.
//!
//! Needs DATABASE_URL (a superuser: it creates and drops its own database);
//! `scripts/bench.sh` starts a Postgres with default durability settings and runs this.

#[path = "support/bench_db.rs"]
mod bench_db;
#[path = "support/clean_events.rs"]
mod clean_events;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tower::ServiceExt;
use upiflow_tasks::upi::dashboard::{self as payments, Range};
use upiflow_tasks::upi::ingest::writer;
use upiflow_web::auth::Role;

const EVENTS: i64 = 10_000_000;
const DAYS: i64 = 30;
const DEAD_LETTERS: i64 = 100_000;
const RUNS: usize = 100;
const TARGET_MS: f64 = 200.0;

/// The rollups from the loaded rows, as the migration builds them for existing data.
const ROLLUPS: [&str; 3] = [
    "INSERT INTO upi_rollup_minute (minute, status, payer_bank, txns, amount)
     SELECT date_trunc('minute', event_time), status, split_part(payer, '@', 2), count(*), sum(amount)
     FROM clean_upi_transactions GROUP BY 1, 2, 3",
    "INSERT INTO upi_rollup_hour (hour, status, payer_bank, txns, amount)
     SELECT date_trunc('hour', event_time, 'Asia/Kolkata'), status, split_part(payer, '@', 2),
            count(*), sum(amount)
     FROM clean_upi_transactions GROUP BY 1, 2, 3",
    "INSERT INTO upi_rollup_merchant_day (day, merchant, txns, amount)
     SELECT (event_time AT TIME ZONE 'Asia/Kolkata')::date, payee, count(*), sum(amount)
     FROM clean_upi_transactions GROUP BY 1, 2",
];

/// What the daily_upi_aggregation DAG leaves in its summaries for complete days (the same
/// numbers; bench_transforms measures the DAG itself).
const SUMMARIES: [&str; 2] = [
    "INSERT INTO daily_upi_summary (date, total_txns, success_txns, failed_txns, pending_txns, total_amount)
     SELECT (event_time AT TIME ZONE 'Asia/Kolkata')::date, count(*),
            count(*) FILTER (WHERE status = 'SUCCESS'), count(*) FILTER (WHERE status = 'FAILED'),
            count(*) FILTER (WHERE status = 'PENDING'), sum(amount)
     FROM clean_upi_transactions
     WHERE event_time < date_trunc('day', now(), 'Asia/Kolkata')
     GROUP BY 1",
    "INSERT INTO merchant_upi_summary (merchant, date, total_txns, amount)
     SELECT payee, (event_time AT TIME ZONE 'Asia/Kolkata')::date, count(*), sum(amount)
     FROM clean_upi_transactions
     WHERE event_time < date_trunc('day', now(), 'Asia/Kolkata')
     GROUP BY 1, 2",
];

async fn exec(pool: &PgPool, sql: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    sqlx::query(sql).execute(pool).await?;
    Ok(t.elapsed().as_secs_f64())
}

async fn load(pool: &PgPool, start: DateTime<Utc>) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET work_mem = '256MB'")
        .execute(&mut *conn)
        .await?;
    // Triggers off: the rollups are built below by one GROUP BY each.
    sqlx::query("ALTER TABLE clean_upi_transactions DISABLE TRIGGER USER")
        .execute(&mut *conn)
        .await?;
    let t0 = Instant::now();
    let loaded = clean_events::load(&mut conn, EVENTS, DAYS, start, true).await?;
    let (inserted, indexed) = (loaded.insert_s, loaded.index_s);
    let t2 = Instant::now();
    for sql in ROLLUPS.iter().chain(&SUMMARIES) {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    sqlx::query("ALTER TABLE clean_upi_transactions ENABLE TRIGGER USER")
        .execute(&mut *conn)
        .await?;
    let derived = t2.elapsed().as_secs_f64();

    // Dead letters spread over the 30 days, and what ingest reports about itself.
    sqlx::query(
        "INSERT INTO dead_letter_upi_transactions (kafka_topic, kafka_partition, kafka_offset, payload, reason, received_at)
         SELECT 'upi_transactions', i % 6, 100000000 + i, '{\"txn_id\": 1}',
                (ARRAY['invalid JSON: expected value', 'unknown status `REVERSED`',
                       'missing field `payer`', 'amount out of range: 0', 'bad timestamp `31/02/2024`'])[1 + i % 5],
                $1 + (i * $2 / $3) * interval '1 microsecond'
         FROM generate_series(0::bigint, $3 - 1) AS i",
    )
    .bind(start)
    .bind(DAYS * 86_400_000_000)
    .bind(DEAD_LETTERS)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ingest_lag (consumer_group, kafka_topic, kafka_partition, high_watermark, next_offset, lag)
         SELECT 'upiflow', 'upi_transactions', p, 2000000, 2000000 - p * 10, p * 10
         FROM generate_series(0, 5) AS p",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ingest_instances (instance_id, consumer_group, kafka_topic, events_total, events_per_sec)
         VALUES ('bench-a', 'upiflow', 'upi_transactions', 5000000, 2500),
                ('bench-b', 'upiflow', 'upi_transactions', 5000000, 2400)",
    )
    .execute(&mut *conn)
    .await?;

    let t3 = Instant::now();
    sqlx::query("VACUUM ANALYZE").execute(&mut *conn).await?;
    let vacuumed = t3.elapsed().as_secs_f64();
    let (clean, rolled): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM clean_upi_transactions),
                (SELECT sum(txns)::int8 FROM upi_rollup_hour)",
    )
    .fetch_one(&mut *conn)
    .await?;
    anyhow::ensure!(
        clean == EVENTS && rolled == EVENTS,
        "loaded {clean} events, rolled up {rolled}"
    );
    let sizes: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM upi_rollup_minute), (SELECT count(*) FROM upi_rollup_hour),
                (SELECT count(*) FROM upi_rollup_merchant_day)",
    )
    .fetch_one(&mut *conn)
    .await?;
    println!(
        "loaded {EVENTS} clean events over {DAYS} days ending now in {:.1} s: insert {inserted:.1} s, \
         {} indexes {indexed:.1} s, rollups and summaries {derived:.1} s, VACUUM ANALYZE {vacuumed:.1} s",
        t0.elapsed().as_secs_f64(),
        loaded.indexes
    );
    println!(
        "rollup rows: minute {}, hour {}, merchant-day {}; {DEAD_LETTERS} dead letters",
        sizes.0, sizes.1, sizes.2
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs `f` 3 times to warm up, then `RUNS` times; prints and returns (p50, p99) in ms.
async fn measure<F, Fut, T, E>(name: &str, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    for _ in 0..3 {
        f().await.map_err(Into::into)?;
    }
    let mut ms = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await.map_err(Into::into)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    println!(
        "  {name:<58} p50 {p50:7.2} ms   p99 {p99:7.2} ms   {}",
        if p99 < TARGET_MS { "met" } else { "MISSED" }
    );
    Ok((p50, p99))
}

/// Writer batches of 1,000 events (80 % new transactions, 20 % status changes of earlier
/// ones, which move rollup counts), through the real ingest writer; returns the median and
/// p99 ms per batch.
async fn writer_batches(
    pool: &PgPool,
    batches: usize,
    next: &mut BTreeMap<i32, i64>,
    seq: &mut i64,
) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::new();
    for _ in 0..batches {
        let mut rows = Vec::with_capacity(1000);
        let starts = next.clone();
        for k in 0..1000i64 {
            *seq += 1;
            let changed = k % 5 == 0 && *seq > 2000;
            let id = if changed { *seq - 1500 } else { *seq };
            let partition = (id % 6) as i32;
            let offset = next.entry(partition).or_insert(0);
            let event = serde_json::json!({
                "txn_id": format!("w-{id}"),
                "payer": format!("user{}@{}", id % 5000, ["oksbi", "ybl", "paytm"][(id % 3) as usize]),
                "payee": format!("merchant{}@upi", id % 2000),
                "amount": 10 + id % 5000,
                "status": if changed { "SUCCESS" } else { ["PENDING", "FAILED", "SUCCESS"][(id % 3) as usize] },
                "timestamp": (Utc::now() + chrono::Duration::milliseconds(if changed { 500 } else { 0 })).to_rfc3339(),
            });
            rows.push(writer::Row {
                partition,
                offset: *offset,
                kafka_timestamp: None,
                payload: Some(event.to_string().into_bytes()),
            });
            *offset += 1;
        }
        let t = Instant::now();
        writer::write_batch(
            pool,
            "bench",
            "upi_bench",
            &rows,
            &starts,
            upiflow_tasks::upi::ingest::DEFAULT_OUT_OF_ORDERNESS,
        )
        .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = bench_db::BenchDb::create(20).await?;
    let pool = db.pool.clone();
    let settings: (String, String, String) = sqlx::query_as(
        "SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('shared_buffers')",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "postgres fsync={} synchronous_commit={} shared_buffers={}",
        settings.0, settings.1, settings.2
    );
    let now = Utc::now();
    load(&pool, now - chrono::Duration::days(DAYS)).await?;

    let mut worst: f64 = 0.0;
    let wide = payments::window(Range::Month, Utc::now());
    let day = payments::window(Range::Day, Utc::now());
    println!("panel queries, {RUNS} runs each (target p99 < {TARGET_MS} ms):");
    for (name, w) in [("30 d", &wide), ("24 h", &day)] {
        let (_, p) = measure(
            &format!("volume per bucket x status (tpm, failures, split) {name}"),
            || payments::volume(&pool, w),
        )
        .await?;
        worst = worst.max(p);
        let (_, p) = measure(&format!("transactions by payer bank {name}"), || {
            payments::banks(&pool, w)
        })
        .await?;
        worst = worst.max(p);
    }
    let w = &wide;
    let runs = [
        measure("heatmap day x hour, 31 days", || {
            payments::heatmap(&pool, w)
        })
        .await?,
        measure("top 10 merchants today", || {
            payments::top_merchants(&pool, w)
        })
        .await?,
        measure("daily totals / status / amount (daily_upi_summary)", || {
            payments::daily(&pool, w)
        })
        .await?,
        measure("merchant trend, top 5 (merchant_upi_summary)", || {
            payments::merchant_trend(&pool, w)
        })
        .await?,
        measure("ingest rate (ingest_instances)", || {
            payments::ingest_rate(&pool)
        })
        .await?,
        measure("consumer lag (ingest_lag)", || {
            payments::consumer_lag(&pool)
        })
        .await?,
        measure("dead letters by reason 30 d + total", || {
            payments::dead_letters(&pool, w)
        })
        .await?,
    ];
    worst = runs.iter().fold(worst, |a, r| a.max(r.1));

    // The whole page and its fragments through the router, as a browser gets them.
    let state = upiflow_web::AppState::new(pool.clone())
        .await?
        .with_product(upiflow_tasks::upi::product::UpiProduct::shared());
    let key = state.token_key.clone();
    upiflow_web::auth::create_user(&pool, "bench", "bench-password", Role::Viewer)
        .await
        .map_err(anyhow::Error::msg)?;
    let cookie = upiflow_web::ui::session::start(
        &state.token_key,
        "bench",
        upiflow_web::auth::Grant {
            role: Role::Viewer,
            version: 0,
        },
        false,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cookie = format!("{}={}", cookie.name(), cookie.value());
    let app = upiflow_web::app(state);
    let get = |uri: &'static str, auth: Option<&'static str>| {
        let app = app.clone();
        let cookie = cookie.clone();
        async move {
            let mut req = Request::builder().uri(uri).header("cookie", cookie);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = app.oneshot(req.body(Body::empty())?).await?;
            anyhow::ensure!(resp.status() == StatusCode::OK, "{uri}: {}", resp.status());
            let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await?;
            Ok::<usize, anyhow::Error>(body.len())
        }
    };
    println!("through the router (render included):");
    measure("GET /payments?range=30d (every panel)", || {
        get("/payments?range=30d", None)
    })
    .await?;
    for uri in [
        "/payments/panels/live?range=30d",
        "/payments/panels/daily?range=30d",
        "/payments/panels/ingest?range=30d",
        "/payments/panels/live?range=1h",
    ] {
        measure(&format!("GET {uri}"), || get(uri, None)).await?;
    }
    // Basic auth checks an argon2 hash on every scrape; a bearer token does not.
    let token = upiflow_web::auth::issue_token(
        &key,
        "bench",
        upiflow_web::auth::Grant {
            role: Role::Viewer,
            version: 0,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bearer: &'static str = Box::leak(format!("Bearer {token}").into_boxed_str());
    measure("GET /metrics (bearer token)", || {
        get("/metrics", Some(bearer))
    })
    .await?;

    // Baseline: the seed's way, the volume panel straight from 10M clean rows.
    let t = Instant::now();
    let _: Vec<(DateTime<Utc>, String, i64)> = sqlx::query_as(
        "SELECT date_bin('6 hours', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+05:30'), status, count(*)
         FROM clean_upi_transactions WHERE event_time >= $1 AND event_time < $2 GROUP BY 1, 2",
    )
    .bind(wide.start)
    .bind(wide.end)
    .fetch_all(&pool)
    .await?;
    println!(
        "baseline (seed): the 30-day volume panel straight from clean_upi_transactions: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    // What the exact rollups cost the ingest transaction.
    let mut next = BTreeMap::new();
    let mut seq = 0;
    writer_batches(&pool, 5, &mut next, &mut seq).await?; // warm-up
    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..4 {
        on.push(writer_batches(&pool, 10, &mut next, &mut seq).await?);
        exec(
            &pool,
            "ALTER TABLE clean_upi_transactions DISABLE TRIGGER USER",
        )
        .await?;
        off.push(writer_batches(&pool, 10, &mut next, &mut seq).await?);
        exec(
            &pool,
            "ALTER TABLE clean_upi_transactions ENABLE TRIGGER USER",
        )
        .await?;
    }
    let med = |v: &[(f64, f64)]| {
        let mut m: Vec<f64> = v.iter().map(|x| x.0).collect();
        m.sort_by(f64::total_cmp);
        m[m.len() / 2]
    };
    println!(
        "ingest writer, batches of 1,000 events (20 % status changes): median {:.1} ms with the rollup triggers, {:.1} ms without",
        med(&on),
        med(&off)
    );

    println!(
        "slowest panel query p99: {worst:.2} ms; target < {TARGET_MS} ms: {}",
        if worst < TARGET_MS { "met" } else { "MISSED" }
    );
    db.drop().await?;
    Ok(())
}
