//! Ingest benchmark (issue #4): 1,000,000 events pre-loaded on a 3-partition topic of a local
//! Tansu broker; time from start to all stored, exactly once. In the same process, as
//! references: a bare rdkafka consumer draining the topic (the broker's limit), and the seed
//! stack's method (row INSERTs in batches of 20, one commit per batch) on the first 100,000.
//! Needs DATABASE_URL (a superuser) and `tansu`; `scripts/bench.sh` provides both.

#[path = "support/bench_db.rs"]
mod bench_db;
#[path = "support/ingest_stored.rs"]
mod ingest_stored;

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use upiflow_tasks::upi::broker::LocalBroker;
use upiflow_tasks::upi::event::{Verdict, validate};
use upiflow_tasks::upi::{generator, ingest};

const EVENTS: u64 = 1_000_000;
const BASELINE_EVENTS: u64 = 100_000;
const TOPIC: &str = "upi_transactions";

fn consumer_from_start(bootstrap: &str, group: &str) -> anyhow::Result<StreamConsumer> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let broker = LocalBroker::start().await?;
    broker.create_topic(TOPIC, 3).await?;
    let t = Instant::now();
    let sent = generator::generate(&generator::Options {
        bootstrap_servers: broker.bootstrap.clone(),
        topic: TOPIC.into(),
        count: EVENTS,
        rate: None,
        invalid_fraction: 0.01,
        days: 7,
        seed: 1,
        progress: false,
    })
    .await?;
    println!(
        "pre-loaded {} events in {:.1} s",
        sent.sent,
        t.elapsed().as_secs_f64()
    );

    // 1. The broker's limit: a bare consumer that only counts.
    let bare = consumer_from_start(&broker.bootstrap, "bench-bare")?;
    let t = Instant::now();
    let mut n = 0u64;
    while n < EVENTS {
        let m = bare.recv().await?;
        n += 1;
        std::hint::black_box(m.payload());
    }
    let bare_rate = EVENTS as f64 / t.elapsed().as_secs_f64();
    drop(bare);
    println!(
        "bare rdkafka consumer: {EVENTS} events in {:.2} s = {bare_rate:.0} events/s",
        t.elapsed().as_secs_f64()
    );

    // 2. upiflow ingest, exactly once.
    let db1 = bench_db::BenchDb::create(8).await?;
    let pool = db1.pool.clone();
    let stop = CancellationToken::new();
    let t = Instant::now();
    let run = tokio::spawn(ingest::run(
        pool.clone(),
        ingest::Config::new(&broker.bootstrap, TOPIC, "bench"),
        stop.clone(),
    ));
    while ingest_stored::stored_events(&pool).await? < EVENTS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    stop.cancel();
    run.await??;
    let (raw, clean, dead): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM raw_upi_transactions), (SELECT count(*) FROM clean_upi_transactions),
                (SELECT count(*) FROM dead_letter_upi_transactions)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(raw as u64, EVENTS, "exactly once");
    let ingest_rate = EVENTS as f64 / secs;
    println!(
        "upiflow ingest: {EVENTS} events in {secs:.2} s = {ingest_rate:.0} events/s (raw {raw}, clean {clean}, dead-lettered {dead})"
    );

    // 3. The seed's method: row INSERTs, 20 per transaction, into the seed's clean table (its
    // primary key and its three indexes; none of upiflow's dashboard triggers, which would
    // slow this baseline down and flatter the ratio).
    let db2 = bench_db::BenchDb::create(8).await?;
    let pool2 = db2.pool.clone();
    sqlx::raw_sql(
        "CREATE TABLE seed_clean_upi_transactions (
            txn_id text PRIMARY KEY, payer text NOT NULL, payee text NOT NULL,
            amount numeric(12, 2) NOT NULL, status text NOT NULL, event_time timestamptz NOT NULL,
            kafka_partition integer NOT NULL, kafka_offset bigint NOT NULL);
         CREATE INDEX ON seed_clean_upi_transactions (event_time);
         CREATE INDEX ON seed_clean_upi_transactions (status);
         CREATE INDEX ON seed_clean_upi_transactions (payee);",
    )
    .execute(&pool2)
    .await?;
    let c = consumer_from_start(&broker.bootstrap, "bench-baseline")?;
    let t = Instant::now();
    let mut done = 0u64;
    while done < BASELINE_EVENTS {
        let mut tx = pool2.begin().await?;
        for _ in 0..20 {
            let m = c.recv().await?;
            if let Verdict::Valid(e) = validate(m.payload()) {
                sqlx::query(
                    "INSERT INTO seed_clean_upi_transactions (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
                     VALUES ($1, $2, $3, $4::float8::numeric(12, 2), $5, $6, $7, $8)
                     ON CONFLICT (txn_id) DO UPDATE SET status = EXCLUDED.status, event_time = EXCLUDED.event_time",
                )
                .bind(&e.txn_id)
                .bind(&e.payer)
                .bind(&e.payee)
                .bind(e.amount)
                .bind(e.status)
                .bind(e.event_time)
                .bind(m.partition())
                .bind(m.offset())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        done += 20;
    }
    let base_rate = BASELINE_EVENTS as f64 / t.elapsed().as_secs_f64();
    println!(
        "seed method (row INSERTs, commit per 20): {BASELINE_EVENTS} events in {:.2} s = {base_rate:.0} events/s",
        t.elapsed().as_secs_f64()
    );
    println!(
        "ingest vs seed method: {:.1}x (target 10x); ingest vs bare consumer: {:.0}% (target 50%); target 100,000 events/s",
        ingest_rate / base_rate,
        100.0 * ingest_rate / bare_rate
    );

    db1.drop().await?;
    db2.drop().await?;
    broker.stop().await;
    Ok(())
}
