//! The executor against a real Postgres: retries, timeouts, trigger rules, clear, many
//! workers, conf checks.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::json;
use upiflow_engine::ErrorKind;
use upiflow_engine::executor::WorkerConfig;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::state::{RunState, TaskState, TryOutcome};
use upiflow_engine::store::dags::VersionCache;
use upiflow_engine::store::runs::RunRow;

async fn trigger_at(db: &TestDb, dag: &upiflow_engine::Dag, day: u32) -> RunRow {
    let req = Trigger {
        logical_date: Some(Utc.with_ymd_and_hms(2024, 1, day, 0, 0, 0).unwrap()),
        ..Trigger::default()
    };
    ops::trigger(&db.pool, &VersionCache::new(), dag, &req)
        .await
        .expect("trigger")
}

async fn wait(db: &TestDb, run: &RunRow) -> RunState {
    tokio::time::timeout(
        Duration::from_secs(60),
        ops::wait_for_run(&db.pool, run.id, |_| {}),
    )
    .await
    .expect("run finishes within a minute")
    .expect("wait")
}

async fn states(db: &TestDb, run: &RunRow) -> HashMap<String, (Option<TaskState>, i32)> {
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::task_views::for_run(&mut conn, run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.task_id, (t.state, t.try_number)))
        .collect()
}

async fn tries(
    db: &TestDb,
    run: &RunRow,
    task: &str,
) -> Vec<(i32, Option<TryOutcome>, Option<String>)> {
    sqlx::query_as(
        "SELECT tr.try_number, tr.outcome, tr.error FROM task_tries tr
         JOIN task_instances ti ON ti.id = tr.ti_id
         WHERE ti.run_pk = $1 AND ti.task_id = $2 ORDER BY tr.try_number",
    )
    .bind(run.id)
    .bind(task)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_chain_runs_in_order_with_one_try_each() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "chain.toml",
        "dag_id = \"chain\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
         [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n\
         [[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"b\"]\n",
    )]);
    let dag = load(&dir, "chain.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let run = trigger_at(&db, &dag, 1).await;
    assert_eq!(wait(&db, &run).await, RunState::Success);
    let order: Vec<String> = sqlx::query_scalar(
        "SELECT ti.task_id FROM task_tries tr JOIN task_instances ti ON ti.id = tr.ti_id
         WHERE ti.run_pk = $1 ORDER BY tr.started_at, tr.id",
    )
    .bind(run.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(order, ["a", "b", "c"]);
    // Every try has its log: at least the line the engine writes when the try starts.
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM task_logs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(lines >= 3);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_command_that_fails_twice_then_succeeds_has_three_tries() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "flaky.toml",
        "dag_id = \"flaky\"\n[defaults]\nretries = 2\nretry_delay = \"200ms\"\n\
         [[tasks]]\nid = \"flaky\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo try $UPIFLOW_TRY_NUMBER; test $UPIFLOW_TRY_NUMBER -ge 3\"]\n",
    )]);
    let dag = load(&dir, "flaky.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let run = trigger_at(&db, &dag, 1).await;
    assert_eq!(wait(&db, &run).await, RunState::Success);
    let t = tries(&db, &run, "flaky").await;
    assert_eq!(
        t.iter().map(|(n, o, _)| (*n, *o)).collect::<Vec<_>>(),
        [
            (1, Some(TryOutcome::Failed)),
            (2, Some(TryOutcome::Failed)),
            (3, Some(TryOutcome::Success))
        ]
    );
    assert!(
        t[0].2.as_deref().unwrap().contains("exited with"),
        "{:?}",
        t[0].2
    );
    // The retry waited for its delay: each try starts at least 200ms after the previous ended.
    let gaps: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM tr.started_at - lag(tr.ended_at) OVER (ORDER BY tr.try_number))::float8
         FROM task_tries tr JOIN task_instances ti ON ti.id = tr.ti_id WHERE ti.run_pk = $1
         ORDER BY tr.try_number OFFSET 1",
    )
    .bind(run.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(gaps.iter().all(|g| *g >= 0.19), "{gaps:?}");
    // The command's output is the try's log.
    let out: Vec<String> =
        sqlx::query_scalar("SELECT line FROM task_logs WHERE stream = 'stdout' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(out, ["try 1", "try 2", "try 3"]);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn every_trigger_rule_decides_as_airflow_does() {
    let db = fresh_db().await;
    let dag_text = r#"
dag_id = "rules"
[[tasks]]
id = "ok"
kind = "command"
command = ["true"]
[[tasks]]
id = "bad"
kind = "command"
command = ["false"]
[[tasks]]
id = "all_success"
kind = "noop"
upstream = ["ok", "bad"]
[[tasks]]
id = "after_upstream_failed"
kind = "noop"
upstream = ["all_success"]
[[tasks]]
id = "all_done"
kind = "noop"
upstream = ["ok", "bad"]
trigger_rule = "all_done"
[[tasks]]
id = "all_failed"
kind = "noop"
upstream = ["bad"]
trigger_rule = "all_failed"
[[tasks]]
id = "all_failed_mixed"
kind = "noop"
upstream = ["ok", "bad"]
trigger_rule = "all_failed"
[[tasks]]
id = "one_success"
kind = "noop"
upstream = ["ok", "bad"]
trigger_rule = "one_success"
[[tasks]]
id = "one_failed"
kind = "noop"
upstream = ["ok", "bad"]
trigger_rule = "one_failed"
[[tasks]]
id = "one_failed_none"
kind = "noop"
upstream = ["ok"]
trigger_rule = "one_failed"
[[tasks]]
id = "none_failed"
kind = "noop"
upstream = ["ok", "bad"]
trigger_rule = "none_failed"
[[tasks]]
id = "none_failed_skips"
kind = "noop"
upstream = ["one_failed_none"]
trigger_rule = "none_failed"
"#;
    let dir = dags_dir(&[("rules.toml", dag_text)]);
    let dag = load(&dir, "rules.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let run = trigger_at(&db, &dag, 1).await;
    // Leaves failed or upstream_failed: the run fails, as in Airflow.
    assert_eq!(wait(&db, &run).await, RunState::Failed);
    let s = states(&db, &run).await;
    use TaskState::*;
    let expect = [
        ("ok", Success),
        ("bad", Failed),
        ("all_success", UpstreamFailed),
        ("after_upstream_failed", UpstreamFailed),
        ("all_done", Success),
        ("all_failed", Success),
        ("all_failed_mixed", Skipped),
        ("one_success", Success),
        ("one_failed", Success),
        ("one_failed_none", Skipped),
        ("none_failed", UpstreamFailed),
        ("none_failed_skips", Success),
    ];
    for (task, state) in expect {
        assert_eq!(s[task].0, Some(state), "task {task}");
    }
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_timeout_kills_the_whole_command_and_says_why() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "slow.toml",
        "dag_id = \"slow\"\n[[tasks]]\nid = \"slow\"\nkind = \"command\"\ntimeout = \"1s\"\n\
         command = [\"sh\", \"-c\", \"sleep 30 & echo $! > sleeper.pid; wait\"]\n",
    )]);
    let dag = load(&dir, "slow.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let started = std::time::Instant::now();
    let run = trigger_at(&db, &dag, 1).await;
    assert_eq!(wait(&db, &run).await, RunState::Failed);
    assert!(started.elapsed() < Duration::from_secs(10));
    let t = tries(&db, &run, "slow").await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].1, Some(TryOutcome::TimedOut));
    assert_eq!(t[0].2.as_deref(), Some("timed out after 1s"));
    // The grandchild `sleep` went down with its process group.
    let pid: i32 = std::fs::read_to_string(dir.join("sleeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "sleep {pid} survived the timeout");
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn clear_downstream_reruns_exactly_the_task_and_what_follows() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "d.toml",
        "dag_id = \"d\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
         [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n\
         [[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"b\"]\n\
         [[tasks]]\nid = \"side\"\nkind = \"noop\"\nupstream = [\"a\"]\n",
    )]);
    let dag = load(&dir, "d.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let run = trigger_at(&db, &dag, 1).await;
    assert_eq!(wait(&db, &run).await, RunState::Success);
    let cache = VersionCache::new();

    let cleared =
        upiflow_engine::lifecycle::clear::clear(&db.pool, &cache, "d", &run.run_id, "b", true)
            .await
            .unwrap();
    assert_eq!(cleared, ["b", "c"]);
    assert_eq!(wait(&db, &run).await, RunState::Success);
    let s = states(&db, &run).await;
    let tries_of = |t: &str| s[t].1;
    assert_eq!(
        (
            tries_of("a"),
            tries_of("b"),
            tries_of("c"),
            tries_of("side")
        ),
        (1, 2, 2, 1)
    );

    let cleared =
        upiflow_engine::lifecycle::clear::clear(&db.pool, &cache, "d", &run.run_id, "side", false)
            .await
            .unwrap();
    assert_eq!(cleared, ["side"]);
    assert_eq!(wait(&db, &run).await, RunState::Success);
    assert_eq!(
        states(&db, &run).await["side"],
        (Some(TaskState::Success), 2)
    );

    let missing =
        upiflow_engine::lifecycle::clear::clear(&db.pool, &cache, "d", &run.run_id, "nope", false)
            .await;
    assert!(matches!(&missing, Err(e) if e.kind() == ErrorKind::NotFound));
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn two_workers_never_run_a_task_instance_twice() {
    let db = fresh_db().await;
    let mut text = String::from("dag_id = \"wide\"\n");
    for i in 0..50 {
        text.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\nkind = \"command\"\n\
             command = [\"sh\", \"-c\", \"echo $UPIFLOW_RUN_ID $UPIFLOW_TASK_ID >> ran.txt\"]\n"
        ));
    }
    let dir = dags_dir(&[("wide.toml", &text)]);
    let dag = load(&dir, "wide.toml");
    let (s1, h1) = spawn_worker(
        &db.pool,
        WorkerConfig {
            concurrency: 8,
            ..fast_worker("w1")
        },
    );
    let (s2, h2) = spawn_worker(
        &db.pool,
        WorkerConfig {
            concurrency: 8,
            ..fast_worker("w2")
        },
    );
    let mut runs = Vec::new();
    for day in 1..=4 {
        runs.push(trigger_at(&db, &dag, day).await);
    }
    for run in &runs {
        assert_eq!(wait(&db, run).await, RunState::Success);
    }
    let ran = std::fs::read_to_string(dir.join("ran.txt")).unwrap();
    let mut lines: Vec<&str> = ran.lines().collect();
    assert_eq!(lines.len(), 200);
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), 200, "some task instance ran twice");
    let (tries, max_try, workers): (i64, i32, i64) =
        sqlx::query_as("SELECT count(*), max(try_number), count(DISTINCT worker) FROM task_tries")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((tries, max_try), (200, 1));
    assert_eq!(workers, 2, "both workers took a share");
    s1.cancel();
    s2.cancel();
    h1.await.unwrap();
    h2.await.unwrap();
}

#[tokio::test]
async fn bad_conf_and_duplicate_runs_are_refused() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "p.toml",
        "dag_id = \"p\"\nschedule = \"@daily\"\n[params]\nmin_amount = 0\nlabel = \"x\"\nratio = 0.5\n\
         [[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let dag = load(&dir, "p.toml");
    let cache = VersionCache::new();
    let bad = |conf| Trigger {
        conf,
        ..Trigger::default()
    };
    for (conf, needle) in [
        (json!({"nope": 1}), "unknown param `nope`"),
        (json!({"min_amount": "ten"}), "must be an integer"),
        (json!({"min_amount": 1.5}), "must be an integer"),
        (json!({"label": 3}), "must be a string"),
        (json!([1, 2]), "must be a JSON object"),
    ] {
        match ops::trigger(&db.pool, &cache, &dag, &bad(conf.clone())).await {
            Err(e) if e.kind() == ErrorKind::Invalid => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{conf}: {msg}")
            }
            other => panic!("{conf}: expected Invalid, got {other:?}"),
        }
    }
    // Integers are fine where a float is declared.
    let latest = ops::trigger(
        &db.pool,
        &cache,
        &dag,
        &bad(json!({"ratio": 2, "min_amount": 5})),
    )
    .await
    .unwrap();
    // Without a date, a run covers the latest complete day, and its logical date (so `ds`)
    // is that day's start, as for scheduled runs.
    let now = Utc::now();
    assert_eq!(latest.logical_date, latest.data_interval_start);
    assert!(latest.data_interval_end <= now);
    assert!(latest.data_interval_end > now - chrono::Duration::days(1));
    let first = trigger_at(&db, &dag, 3).await;
    // Any instant of the same daily interval is the same logical date: refused.
    let again = Trigger {
        logical_date: Some(Utc.with_ymd_and_hms(2024, 1, 3, 15, 0, 0).unwrap()),
        ..Trigger::default()
    };
    match ops::trigger(&db.pool, &cache, &dag, &again).await {
        Err(e) if e.kind() == ErrorKind::Conflict => {
            let msg = e.to_string();
            assert!(msg.contains(&first.run_id), "{msg}")
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        first.logical_date,
        Utc.with_ymd_and_hms(2024, 1, 3, 0, 0, 0).unwrap()
    );
    assert_eq!(
        first.data_interval_end,
        Utc.with_ymd_and_hms(2024, 1, 4, 0, 0, 0).unwrap()
    );
}

#[tokio::test]
async fn a_sql_task_binds_the_interval_and_params() {
    let db = fresh_db().await;
    let dir = dags_dir(&[
        (
            "s.toml",
            "dag_id = \"s\"\nschedule = \"@daily\"\ntimezone = \"Asia/Kolkata\"\n[params]\nfactor = 2\n\
             [[tasks]]\nid = \"q\"\nkind = \"sql\"\nsql = \"sql/q.sql\"\n",
        ),
        (
            "sql/q.sql",
            "CREATE TABLE IF NOT EXISTS out (ds date PRIMARY KEY, start_at timestamptz, v bigint, note text);\n\
             -- a comment with :not_a_param\n\
             INSERT INTO out VALUES (:ds, :data_interval_start, 21 * :params.factor, 'it''s :fine')\n\
             ON CONFLICT (ds) DO UPDATE SET v = EXCLUDED.v;",
        ),
    ]);
    let dag = load(&dir, "s.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let run = trigger_at(&db, &dag, 5).await;
    assert_eq!(wait(&db, &run).await, RunState::Success);
    let (ds, start, v, note): (chrono::NaiveDate, chrono::DateTime<Utc>, i64, String) =
        sqlx::query_as("SELECT ds, start_at, v, note FROM out")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    // 2024-01-05 00:00 UTC lies in the Kolkata day of 2024-01-05, which starts 18:30 UTC the day before.
    assert_eq!(ds, chrono::NaiveDate::from_ymd_opt(2024, 1, 5).unwrap());
    assert_eq!(start, Utc.with_ymd_and_hms(2024, 1, 4, 18, 30, 0).unwrap());
    assert_eq!((v, note.as_str()), (42, "it's :fine"));
    stop.cancel();
    handle.await.unwrap();
}
