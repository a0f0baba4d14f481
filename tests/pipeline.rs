//! The whole UPI pipeline end to end: generated events (3 days, bad ones mixed in) on a real
//! broker -> exactly-once ingest -> a backfill of the shipped DAG (supervisor, transforms,
//! quality checks) -> summaries equal to an independent computation from the raw events.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;
use upiflow_engine::backfill::{self, Request};
use upiflow_engine::store::dags::VersionCache;
use upiflow_tasks::upi::broker::LocalBroker;
use upiflow_tasks::upi::supervisor::{self, LocalIngest};
use upiflow_tasks::upi::{generator, ingest};

type Summary = Vec<(chrono::NaiveDate, i64, i64, i64, i64, String)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_events_flow_through_ingest_and_the_shipped_dag_to_exact_summaries() {
    let db = fresh_db().await;
    let broker = LocalBroker::start().await.unwrap();
    broker
        .create_topic(supervisor::DEFAULT_TOPIC, 3)
        .await
        .unwrap();
    generator::generate(&generator::Options {
        bootstrap_servers: broker.bootstrap.clone(),
        topic: supervisor::DEFAULT_TOPIC.into(),
        count: 6_000,
        rate: None,
        invalid_fraction: 0.05,
        days: 3,
        seed: 99,
        progress: false,
    })
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let local = LocalIngest::start(
        db.pool.clone(),
        ingest::Config::new(
            &broker.bootstrap,
            supervisor::DEFAULT_TOPIC,
            supervisor::DEFAULT_GROUP,
        ),
        stop.clone(),
    );
    let (wstop, worker) = spawn_worker(&db.pool, fast_worker("w"));

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dags/daily_upi_aggregation.toml");
    let dag = upiflow_engine::dag::load_dag_file(&path, &upiflow_tasks::registry()).unwrap();
    // Every IST day the events touch: from 4 days ago to today.
    let today = chrono::Utc::now().with_timezone(&dag.tz()).date_naive();
    let day = |n: i64| {
        upiflow_engine::dag::parse_datetime_in(
            &(today - chrono::Duration::days(n)).to_string(),
            dag.tz(),
        )
        .unwrap()
    };
    let b = backfill::start(
        &db.pool,
        &VersionCache::new(),
        &dag,
        &Request {
            from: day(4),
            to: day(0),
            rerun_failed: false,
            reset: false,
            created_by: "test".into(),
            max_active_runs: None,
            yield_to_scheduled: true,
        },
    )
    .await
    .unwrap();
    let mut p = backfill::progress(&db.pool, &b).await.unwrap();
    for _ in 0..1200 {
        if p.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        p = backfill::progress(&db.pool, &b).await.unwrap();
    }
    assert_eq!((p.success, p.failed, p.total), (5, 0, 5), "{p:?}");

    // Nothing lost: every message is in raw, the bad ones in the dead-letter table.
    let (raw, dead): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM raw_upi_transactions), (SELECT count(*) FROM dead_letter_upi_transactions)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(raw, 6_000);
    assert!(dead > 200, "{dead} dead letters");

    // The independent computation: straight from the raw payloads, latest event per txn_id.
    let expected: Summary = sqlx::query_as(
        "WITH ev AS (
            SELECT DISTINCT ON (payload::json->>'txn_id')
                   payload::json->>'status' AS status, (payload::json->>'amount')::numeric(12, 2) AS amount,
                   event_time
            FROM raw_upi_transactions WHERE valid
            ORDER BY payload::json->>'txn_id', event_time DESC, kafka_offset DESC)
         SELECT (event_time AT TIME ZONE 'Asia/Kolkata')::date AS d, count(*),
                count(*) FILTER (WHERE status = 'SUCCESS'), count(*) FILTER (WHERE status = 'FAILED'),
                count(*) FILTER (WHERE status = 'PENDING'), sum(amount)::text
         FROM ev GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let got: Summary = sqlx::query_as(
        "SELECT date, total_txns, success_txns, failed_txns, pending_txns, total_amount::text
         FROM daily_upi_summary WHERE total_txns > 0 ORDER BY date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(got, expected);
    // The quality checks ran on every day and passed.
    let checks: Vec<String> = sqlx::query_scalar(
        "SELECT l.line FROM task_logs l JOIN task_tries t ON t.id = l.try_id JOIN task_instances ti ON ti.id = t.ti_id
         WHERE ti.task_id = 'quality_checks' AND l.line LIKE 'checks:%'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(checks.len(), 5);
    assert!(checks.iter().all(|c| c.contains(" 0 failed")), "{checks:?}");

    wstop.cancel();
    worker.await.unwrap();
    stop.cancel();
    local.join().await;
    broker.stop().await;
}
