//! #15 event-time completeness against a real Tansu broker, a real ingest, a real scheduler
//! and worker: the `ingest_supervisor` of a run waits until every partition's event-time
//! watermark has passed the run's `data_interval_end` plus the DAG's `allowed_lateness`, lets
//! an idle partition through, does not wait at all for a month-old interval, and fails with
//! the partitions it waited for when `wait_timeout` runs out.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{dags_dir, fast_worker, fresh_db, load, spawn_worker};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_engine::state::RunState;
use upiflow_engine::store::dags::VersionCache;
use upiflow_engine::store::runs;
use upiflow_tasks::upi::broker::LocalBroker;
use upiflow_tasks::upi::{generator, ingest};

const TOPIC: &str = "wm_events";
const GROUP: &str = "wm";

fn dag_text(dag_id: &str, bootstrap: &str, idle: &str, wait: &str) -> String {
    format!(
        r#"dag_id = "{dag_id}"
schedule = "none"
allowed_lateness = "10m"

[[tasks]]
id = "complete"
kind = "ingest_supervisor"
topic = "{TOPIC}"
consumer_group = "{GROUP}"
bootstrap_servers = "{bootstrap}"
idle_timeout = "{idle}"
wait_timeout = "{wait}"
"#
    )
}

/// Sends one valid event stamped `at` to `partition` and waits for the broker's ack.
async fn send(producer: &rdkafka::producer::FutureProducer, partition: i32, at: DateTime<Utc>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let payload = serde_json::json!({
        "txn_id": id, "payer": "user1@oksbi", "payee": "merchant1@upi", "amount": 10.0,
        "status": "SUCCESS", "timestamp": at.to_rfc3339(),
    })
    .to_string();
    producer
        .send(
            FutureRecord::to(TOPIC)
                .partition(partition)
                .key(&id)
                .payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("the broker takes the event");
}

fn scheduler(pool: &sqlx::PgPool, dir: &Path) -> CancellationToken {
    let stop = CancellationToken::new();
    let mut cfg = SchedulerConfig::new(dir.to_path_buf());
    cfg.poll = Duration::from_millis(200);
    tokio::spawn(Scheduler::new(pool.clone(), upiflow_tasks::registry(), cfg).run(stop.clone()));
    stop
}

async fn state(pool: &sqlx::PgPool, run_pk: i64) -> RunState {
    let mut c = pool.acquire().await.unwrap();
    runs::get_by_pk(&mut c, run_pk).await.unwrap().state
}

async fn wait_finished(pool: &sqlx::PgPool, run_pk: i64, within: Duration) -> (RunState, Duration) {
    let start = Instant::now();
    loop {
        let s = state(pool, run_pk).await;
        if matches!(s, RunState::Success | RunState::Failed) {
            return (s, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "run {run_pk} still {s:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The supervisor's log lines of a DAG's runs that contain `needle`, in order.
async fn log_lines(pool: &sqlx::PgPool, dag_id: &str, needle: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT l.line FROM task_logs l JOIN task_tries t ON t.id = l.try_id
         JOIN task_instances ti ON ti.id = t.ti_id
         WHERE ti.dag_id = $1 AND strpos(l.line, $2) > 0 ORDER BY l.id",
    )
    .bind(dag_id)
    .bind(needle)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_for_event_time_lets_idle_partitions_through_and_never_waits_for_an_old_day() {
    let db = fresh_db().await;
    let broker = LocalBroker::start().await.unwrap();
    broker.create_topic(TOPIC, 3).await.unwrap();
    let stop = CancellationToken::new();
    let mut cfg = ingest::Config::new(&broker.bootstrap, TOPIC, GROUP);
    cfg.out_of_orderness = Duration::from_secs(5);
    let ingest = tokio::spawn(ingest::run(db.pool.clone(), cfg, stop.clone()));
    let producer = generator::producer(&broker.bootstrap).unwrap();

    let b = &broker.bootstrap;
    let dir = dags_dir(&[
        ("old.toml", &dag_text("old_day", b, "60s", "60s")),
        ("short.toml", &dag_text("short_wait", b, "60s", "4s")),
        ("recent.toml", &dag_text("recent", b, "3s", "60s")),
    ]);
    let sched = scheduler(&db.pool, &dir);
    let (wstop, worker) = spawn_worker(&db.pool, fast_worker("wm"));

    let now = Utc::now();
    let behind = now - chrono::Duration::hours(3);
    // Partition 0 is at the present in event time; 1 and 2 are three hours behind.
    send(&producer, 0, now).await;
    send(&producer, 1, behind).await;
    send(&producer, 2, behind).await;

    // A month-old interval (an unscheduled DAG's run covers its logical date): every
    // watermark is far past it, so the run does not wait (its idle timeout of 60 s cannot be
    // what lets it through).
    let old = load(&dir, "old.toml");
    let run = ops::trigger(
        &db.pool,
        &VersionCache::new(),
        &old,
        &Trigger {
            logical_date: Some(now - chrono::Duration::days(30)),
            ..Trigger::default()
        },
    )
    .await
    .unwrap();
    let (s, took) = wait_finished(&db.pool, run.id, Duration::from_secs(40)).await;
    assert_eq!(s, RunState::Success);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let done = log_lines(&db.pool, "old_day", "complete in event time").await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(!done[0].contains("idle partitions"), "{}", done[0]);

    // An interval that ended two hours ago (plus 10 min of lateness): partitions 1 and 2 hold
    // it open and are not idle yet (60 s), so a 4 s wait fails, naming them.
    let two_hours_ago = now - chrono::Duration::hours(2);
    let short = load(&dir, "short.toml");
    let run = ops::trigger(
        &db.pool,
        &VersionCache::new(),
        &short,
        &Trigger {
            logical_date: Some(two_hours_ago),
            ..Trigger::default()
        },
    )
    .await
    .unwrap();
    let (s, _) = wait_finished(&db.pool, run.id, Duration::from_secs(60)).await;
    assert_eq!(s, RunState::Failed);
    let error: String = sqlx::query_scalar(
        "SELECT t.error FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id
         WHERE ti.run_pk = $1 ORDER BY t.id DESC LIMIT 1",
    )
    .bind(run.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        error.contains("not complete in event time within 4s"),
        "{error}"
    );
    assert!(error.contains("partition 1 (watermark"), "{error}");
    assert!(error.contains("partition 2 (watermark"), "{error}");
    assert!(!error.contains("partition 0"), "{error}");

    // The same interval with a 3 s idle timeout: partition 1 keeps receiving events three hours
    // behind (active, so not idle) and holds the run; partition 2 goes quiet and stops
    // holding it after 3 s.
    let recent = load(&dir, "recent.toml");
    let trickle_stop = CancellationToken::new();
    let trickle = {
        let (producer, stop) = (producer.clone(), trickle_stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                send(&producer, 1, Utc::now() - chrono::Duration::hours(3)).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let run = ops::trigger(
        &db.pool,
        &VersionCache::new(),
        &recent,
        &Trigger {
            logical_date: Some(two_hours_ago),
            ..Trigger::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(state(&db.pool, run.id).await, RunState::Running);
    let waits = log_lines(&db.pool, "recent", "waiting for event time").await;
    let last = waits.last().expect("the supervisor says what it waits for");
    assert!(last.contains("partition 1 (watermark"), "{waits:?}");
    assert!(
        !last.contains("partition 2"),
        "partition 2 is idle by now: {waits:?}"
    );
    // Partition 1 catches up in event time: the run goes on at once.
    trickle_stop.cancel();
    trickle.await.unwrap();
    send(&producer, 1, Utc::now()).await;
    let (s, took) = wait_finished(&db.pool, run.id, Duration::from_secs(20)).await;
    assert_eq!(s, RunState::Success);
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} after the catch-up"
    );
    let done = log_lines(&db.pool, "recent", "complete in event time").await;
    assert!(
        done[0].contains("idle partitions, not waited for: 2"),
        "{done:?}"
    );

    // /metrics-style reading: every partition has a watermark, 1's now past the present - 5 s.
    let marks: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT kafka_partition, watermark FROM ingest_offsets WHERE consumer_group = $1
         ORDER BY 1",
    )
    .bind(GROUP)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(marks.len(), 3);
    assert!(marks[2].1 < now - chrono::Duration::hours(2), "{marks:?}");
    assert!(
        marks[1].1 > now - chrono::Duration::seconds(10),
        "{marks:?}"
    );

    wstop.cancel();
    worker.await.unwrap();
    sched.cancel();
    stop.cancel();
    ingest.await.unwrap().unwrap();
    broker.stop().await;
}
