//! The Kafka -> Postgres ingest against a real broker (Tansu) and Postgres: exactly once
//! through SIGKILLs, two consumers sharing partitions, every bad event dead-lettered.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use upiflow_tasks::upi::broker::LocalBroker;
use upiflow_tasks::upi::generator::{self, MessageKind, Source};

/// What a seed's messages must produce once ingested.
struct Expected {
    messages: i64,
    dead: i64,
    clean_txns: HashSet<String>,
    invalid_kinds: HashMap<&'static str, i64>,
}

fn expected(seed: u64, count: u64, days: u32, invalid: f64) -> Expected {
    let now = chrono::Utc::now();
    let mut s = Source::new(seed, days, invalid);
    let mut e = Expected {
        messages: count as i64,
        dead: 0,
        clean_txns: HashSet::new(),
        invalid_kinds: HashMap::new(),
    };
    for _ in 0..count {
        let m = s.next(now);
        match m.kind {
            MessageKind::Invalid(k) => {
                e.dead += 1;
                *e.invalid_kinds.entry(k).or_default() += 1;
            }
            _ => {
                e.clean_txns.insert(m.key);
            }
        }
    }
    e
}

async fn generate(
    broker: &LocalBroker,
    topic: &str,
    seed: u64,
    count: u64,
    days: u32,
    invalid: f64,
) {
    broker.create_topic(topic, 3).await.unwrap();
    let opts = generator::Options {
        bootstrap_servers: broker.bootstrap.clone(),
        topic: topic.into(),
        count,
        rate: None,
        invalid_fraction: invalid,
        days,
        seed,
        progress: false,
    };
    generator::generate(&opts).await.unwrap();
}

fn ingest_process(
    db: &TestDb,
    broker: &LocalBroker,
    topic: &str,
    batch: usize,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args([
            "ingest",
            "--topic",
            topic,
            "--batch-size",
            &batch.to_string(),
        ])
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

async fn stored(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(sum(next_offset), 0)::bigint FROM ingest_offsets")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn wait_stored(db: &TestDb, n: i64, secs: u64) {
    for _ in 0..secs * 20 {
        if stored(db).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ingest stored {} of {n} messages", stored(db).await);
}

/// raw == every message once, contiguous offsets per partition; clean and dead as expected.
async fn assert_exactly_once(db: &TestDb, e: &Expected) {
    let (raw, distinct, dead): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM raw_upi_transactions),
                (SELECT count(DISTINCT (kafka_partition, kafka_offset)) FROM raw_upi_transactions),
                (SELECT count(*) FROM dead_letter_upi_transactions)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (raw, distinct),
        (e.messages, e.messages),
        "every message stored exactly once"
    );
    let holes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT kafka_partition, max(kafka_offset) + 1 - min(kafka_offset) AS span, count(*) AS n
                               FROM raw_upi_transactions GROUP BY 1) p WHERE span <> n",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(holes, 0, "offsets are contiguous per partition");
    assert_eq!(dead, e.dead);
    let clean: Vec<String> = sqlx::query_scalar("SELECT txn_id FROM clean_upi_transactions")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(clean.len(), e.clean_txns.len());
    assert_eq!(clean.into_iter().collect::<HashSet<_>>(), e.clean_txns);
    // Resolved PENDING payments show their final status.
    let pending_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM clean_upi_transactions c WHERE status = 'PENDING'
           AND EXISTS (SELECT 1 FROM raw_upi_transactions r WHERE r.txn_id = c.txn_id AND r.valid
                       AND r.payload NOT LIKE '%PENDING%')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(pending_left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_lands_once_and_each_bad_kind_is_dead_lettered_with_its_reason() {
    let db = fresh_db().await;
    let broker = LocalBroker::start().await.unwrap();
    let (seed, count) = (11, 3_000);
    generate(&broker, "t1", seed, count, 3, 0.06).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let cfg = upiflow_tasks::upi::ingest::Config::new(&broker.bootstrap, "t1", "g1");
    let run = tokio::spawn(upiflow_tasks::upi::ingest::run(
        db.pool.clone(),
        cfg,
        stop.clone(),
    ));
    wait_stored(&db, count as i64, 60).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let e = expected(seed, count, 3, 0.06);
    assert_exactly_once(&db, &e).await;
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM dead_letter_upi_transactions")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let count_of = |needle: &str| reasons.iter().filter(|r| r.contains(needle)).count() as i64;
    assert_eq!(count_of("invalid JSON"), e.invalid_kinds["broken_json"]);
    assert_eq!(count_of("missing field"), e.invalid_kinds["missing_field"]);
    assert_eq!(
        count_of("outside (0, 100000]"),
        e.invalid_kinds["amount_not_positive"] + e.invalid_kinds["amount_too_large"]
    );
    assert_eq!(
        count_of("unknown status `REVERSED`"),
        e.invalid_kinds["unknown_status"]
    );
    assert_eq!(
        count_of("unparseable timestamp"),
        e.invalid_kinds["bad_timestamp"]
    );
    // Lag was recorded per partition.
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_doubles_nothing() {
    let db = fresh_db().await;
    let broker = LocalBroker::start().await.unwrap();
    let (seed, count) = (12, 60_000);
    generate(&broker, "upi_transactions", seed, count, 2, 0.02).await;
    let mut kills = 0;
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    while stored(&db).await < count as i64 {
        let mut child = ingest_process(&db, &broker, "upi_transactions", 2_000);
        if kills < 6 {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            let wait = 300 + rng_state % 1_200;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            continue;
        }
        wait_stored(&db, count as i64, 120).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(child.wait().unwrap().success(), "SIGTERM is a clean stop");
    }
    assert!(kills >= 5, "killed {kills} times");
    assert_exactly_once(&db, &expected(seed, count, 2, 0.02)).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_processes_share_the_partitions_exactly_once() {
    let db = fresh_db().await;
    let broker = LocalBroker::start().await.unwrap();
    let (seed, count) = (13, 30_000);
    generate(&broker, "upi_transactions", seed, count, 1, 0.01).await;
    let mut a = ingest_process(&db, &broker, "upi_transactions", 500);
    let mut b = ingest_process(&db, &broker, "upi_transactions", 500);
    wait_stored(&db, count as i64, 120).await;
    for c in [&mut a, &mut b] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        c.wait().unwrap();
    }
    assert_exactly_once(&db, &expected(seed, count, 1, 0.01)).await;
    let instances: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest_instances")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(instances, 2);
    broker.stop().await;
}
