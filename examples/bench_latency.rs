//! Event-to-stored latency (issue #16, target 1): a running `upiflow ingest` on a 3-partition
//! topic of a local Tansu broker, fed at a steady 50 events/s and then 5,000 events/s (10 s
//! each, event times stamped as they are sent). An event's latency is the time from the
//! producer's record timestamp (librdkafka's create time, taken when the event is handed to
//! the producer) to the commit of the ingest transaction that stored it (Postgres'
//! `pg_xact_commit_timestamp`, so the server needs `track_commit_timestamp = on`, as the
//! clusters of `scripts/lib/postgres.sh` have). Prints p50, p99 and the worst per rate
//! against the target (p99 at most 100 ms), exactly once checked.
//!
//! Baseline in the same run: a bare rdkafka consumer with the same fetch settings, reading
//! the same topic while the events are produced, prints the broker's own delivery latency
//! (record timestamp to the message in hand), the floor under any consumer.
//!
//! Needs DATABASE_URL (a superuser) and `tansu`; `scripts/bench.sh` provides both.

#[path = "support/bench_db.rs"]
mod bench_db;
#[path = "support/ingest_stored.rs"]
mod ingest_stored;

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use upiflow_tasks::upi::broker::LocalBroker;
use upiflow_tasks::upi::{generator, ingest};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOPIC: &str = "upi_transactions";
const SECONDS: u64 = 10;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The bare consumer: every message's delivery latency (ms) until `stop`.
async fn bare_latencies(bootstrap: String, stop: CancellationToken) -> anyhow::Result<Vec<f64>> {
    let c: StreamConsumer = ingest::consumer_config(&bootstrap, "bench-latency-bare").create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(TOPIC, p, Offset::End)?;
    }
    c.assign(&tpl)?;
    let mut out = Vec::new();
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => break,
            m = c.recv() => m?,
        };
        if let Some(ts) = m.timestamp().to_millis() {
            out.push((chrono::Utc::now().timestamp_micros() as f64 / 1000.0) - ts as f64);
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = bench_db::BenchDb::create(8).await?;
    let pool = db.pool.clone();
    let tracked: String = sqlx::query_scalar("SHOW track_commit_timestamp")
        .fetch_one(&pool)
        .await?;
    if tracked != "on" {
        db.drop().await?;
        anyhow::bail!(
            "the server must run with track_commit_timestamp = on (scripts/bench.sh starts one)"
        );
    }
    let broker = LocalBroker::start().await?;
    broker.create_topic(TOPIC, 3).await?;
    let cfg = ingest::Config::new(&broker.bootstrap, TOPIC, "bench");
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest::run(pool.clone(), cfg.clone(), stop.clone()));
    // Let the ingest take its partitions before the first event.
    loop {
        let leased: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest_leases")
            .fetch_one(&pool)
            .await?;
        if leased == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "upiflow ingest on Tansu, 3 partitions; consumer {}; batches of at most {} events, linger {} ms",
        ingest::CONSUMER_SETTINGS
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        cfg.batch_size,
        cfg.linger.as_millis()
    );
    let mut sent_total = 0u64;
    for (seed, rate) in [(1u64, 50.0f64), (2, 5000.0)] {
        let count = (rate as u64) * SECONDS;
        let since: chrono::DateTime<chrono::Utc> = chrono::Utc::now();
        let bare_stop = CancellationToken::new();
        let bare = tokio::spawn(bare_latencies(broker.bootstrap.clone(), bare_stop.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent = generator::generate(&generator::Options {
            bootstrap_servers: broker.bootstrap.clone(),
            topic: TOPIC.into(),
            count,
            rate: Some(rate),
            invalid_fraction: 0.0,
            days: 0,
            seed,
            progress: false,
        })
        .await?;
        sent_total += sent.sent;
        // Until every event sent so far is stored.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let stored = ingest_stored::stored_events(&pool).await?;
            if stored >= sent_total {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "only {stored} of {sent_total} events stored after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        bare_stop.cancel();
        let mut bare = bare.await??;
        let mut lat: Vec<f64> = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM pg_xact_commit_timestamp(xmin) - kafka_timestamp)
                     * 1000)::float8
             FROM raw_upi_transactions WHERE kafka_timestamp >= $1",
        )
        .bind(since)
        .fetch_all(&pool)
        .await?;
        anyhow::ensure!(
            lat.len() as u64 == sent.sent,
            "{} events stored for the {} sent at {rate}/s",
            lat.len(),
            sent.sent
        );
        lat.sort_by(f64::total_cmp);
        bare.sort_by(f64::total_cmp);
        let p99 = pct(&lat, 0.99);
        println!(
            "{rate:.0} events/s for {SECONDS} s: {} events stored exactly once; event -> stored p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms; target p99 <= 100 ms: {}",
            lat.len(),
            pct(&lat, 0.5),
            lat.last().unwrap(),
            if p99 <= 100.0 { "met" } else { "MISSED" }
        );
        if !bare.is_empty() {
            println!(
                "  baseline, a bare consumer with the same settings: event -> in hand p50 {:.1} ms, p99 {:.1} ms ({} events)",
                pct(&bare, 0.5),
                pct(&bare, 0.99),
                bare.len()
            );
        }
    }
    let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_upi_transactions")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        raw as u64 == sent_total,
        "exactly once: {raw} stored of {sent_total}"
    );
    stop.cancel();
    run.await??;
    db.drop().await?;
    Ok(())
}
