//! Concurrency control with real workers on real Postgres: pools are never oversubscribed
//! across worker processes, `pool_slots` counts, priority orders the claim (Airflow's weight
//! rules), `max_active_tasks` and `max_active_tis_per_dag` hold across workers, and a long
//! backfill never delays the scheduled run that becomes due while it runs.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use upiflow_engine::backfill::{self, Request};
use upiflow_engine::lifecycle;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_engine::state::RunState;
use upiflow_engine::store::dags::VersionCache;

/// Worker processes, killed when the test ends, even on failure.
struct Procs(Vec<tokio::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.start_kill();
        }
    }
}

fn worker_process(url: &str, concurrency: usize, poll: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(["worker", "--concurrency", &concurrency.to_string()])
        .args(["--poll-interval", poll])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start upiflow worker")
}

async fn add_pool(db: &TestDb, name: &str, slots: i64) {
    upiflow_engine::pools::set(&db.pool, name, slots, None)
        .await
        .unwrap();
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap()
}

async fn trigger_at(db: &TestDb, dag: &upiflow_engine::Dag, at: DateTime<Utc>) -> i64 {
    ops::trigger(
        &db.pool,
        &VersionCache::new(),
        dag,
        &Trigger {
            logical_date: Some(at),
            ..Trigger::default()
        },
    )
    .await
    .unwrap()
    .id
}

async fn wait_done(db: &TestDb, run_pk: i64, within: Duration) -> RunState {
    tokio::time::timeout(
        within,
        ops::wait_until_done(&db.pool, run_pk, Duration::from_millis(20)),
    )
    .await
    .expect("the run finishes in time")
    .unwrap()
}

/// `(started, ended, weight)` of the tries that match `filter` (SQL on `ti` and `tr`).
async fn tries(db: &TestDb, filter: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>, i64)> {
    sqlx::query_as(&format!(
        "SELECT tr.started_at, tr.ended_at, ti.pool_slots::int8
         FROM task_tries tr JOIN task_instances ti ON ti.id = tr.ti_id
         WHERE tr.ended_at IS NOT NULL AND {filter}"
    ))
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// The most weight held at one instant by intervals `[start, end)` (an end and a start at
/// the same instant do not overlap).
fn max_overlap(intervals: &[(DateTime<Utc>, DateTime<Utc>, i64)]) -> i64 {
    let mut events: Vec<(DateTime<Utc>, i64)> = Vec::new();
    for (s, e, w) in intervals {
        events.push((*s, *w));
        events.push((*e, -*w));
    }
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most
}

fn sleepers(dag_id: &str, n: usize, sleep: &str, task_keys: &str, dag_keys: &str) -> String {
    let mut s = format!("dag_id = \"{dag_id}\"\n{dag_keys}\n");
    for i in 0..n {
        s.push_str(&format!(
            "[[tasks]]\nid = \"t{i:02}\"\nkind = \"command\"\ncommand = [\"sleep\", \"{sleep}\"]\n{task_keys}\n"
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_worker_processes_never_run_more_tries_of_a_pool_than_its_three_slots() {
    let db = fresh_db().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(["pools", "set", "api", "3"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = dags_dir(&[(
        "p.toml",
        &sleepers("p", 60, "0.3", "pool = \"api\"", "max_active_tasks = 100"),
    )]);
    let dag = load(&dir, "p.toml");
    // A worker that frees a slot and has room takes the next task itself at once, so the
    // others look for work every 20 ms: they race it for every freed slot.
    let _procs = Procs(
        (0..4)
            .map(|_| worker_process(&db.url, 32, "20ms"))
            .collect(),
    );
    // Let every worker register, so the claims really race.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let run = trigger_at(&db, &dag, day(1)).await;
    assert_eq!(
        wait_done(&db, run, Duration::from_secs(60)).await,
        RunState::Success
    );
    let done = tries(&db, "ti.dag_id = 'p'").await;
    assert_eq!(done.len(), 60);
    assert_eq!(
        max_overlap(&done),
        3,
        "exactly the pool's three slots in use at the busiest instant"
    );
    let workers: i64 = sqlx::query_scalar("SELECT count(DISTINCT worker) FROM task_tries")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        workers >= 2,
        "the claims were spread over {workers} worker(s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_taking_two_slots_of_three_runs_alone_among_its_kind() {
    let db = fresh_db().await;
    add_pool(&db, "big", 3).await;
    let mut text = sleepers("two", 6, "0.2", "pool = \"big\"\npool_slots = 2", "");
    for i in 0..6 {
        text.push_str(&format!(
            "[[tasks]]\nid = \"one{i}\"\nkind = \"command\"\ncommand = [\"sleep\", \"0.2\"]\npool = \"big\"\n"
        ));
    }
    let dir = dags_dir(&[("two.toml", &text)]);
    let dag = load(&dir, "two.toml");
    let workers: Vec<_> = (0..2)
        .map(|i| spawn_worker(&db.pool, fast_worker(&format!("w{i}"))))
        .collect();
    let run = trigger_at(&db, &dag, day(1)).await;
    assert_eq!(
        wait_done(&db, run, Duration::from_secs(60)).await,
        RunState::Success
    );
    let doubles = tries(&db, "ti.pool_slots = 2").await;
    assert_eq!(doubles.len(), 6);
    let as_one: Vec<_> = doubles.iter().map(|(s, e, _)| (*s, *e, 1)).collect();
    assert_eq!(max_overlap(&as_one), 1, "never two 2-slot tries at once");
    assert!(
        max_overlap(&tries(&db, "true").await) <= 3,
        "never more than 3 slots"
    );
    for (stop, handle) in workers {
        stop.cancel();
        handle.await.unwrap();
    }
}

/// Starts one worker with a single slot and returns the order in which the tasks of
/// `run_pks` started.
async fn start_order(db: &TestDb) -> Vec<String> {
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("solo"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dag_runs WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap();
    sqlx::query_scalar(
        "SELECT ti.run_id || '.' || ti.task_id FROM task_tries tr
         JOIN task_instances ti ON ti.id = tr.ti_id ORDER BY tr.started_at, tr.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn with_one_slot_the_highest_priority_weight_runs_first() {
    let db = fresh_db().await;
    add_pool(&db, "one", 1).await;
    let mut text = String::from("dag_id = \"prio\"\n");
    // Written lowest weight first, so creation order would give the opposite answer.
    for w in 1..=10 {
        text.push_str(&format!(
            "[[tasks]]\nid = \"w{w:02}\"\nkind = \"noop\"\npool = \"one\"\npriority_weight = {w}\n"
        ));
    }
    let dir = dags_dir(&[("prio.toml", &text)]);
    let dag = load(&dir, "prio.toml");
    trigger_at(&db, &dag, day(1)).await;
    let order: Vec<String> = start_order(&db)
        .await
        .into_iter()
        .map(|t| t.rsplit('.').next().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (1..=10).rev().map(|w| format!("w{w:02}")).collect();
    assert_eq!(order, expected);
}

#[tokio::test]
async fn weight_rules_give_what_airflow_gives_and_the_claim_follows_them() {
    let db = fresh_db().await;
    let chain = |id: &str, rule: &str| {
        format!(
            "dag_id = \"{id}\"\n[defaults]\nweight_rule = \"{rule}\"\n\
             [[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
             [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\npriority_weight = 5\n\
             [[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"b\"]\n\
             [[tasks]]\nid = \"side\"\nkind = \"noop\"\npriority_weight = 3\n"
        )
    };
    let dir = dags_dir(&[
        ("down.toml", &chain("down", "downstream")),
        ("up.toml", &chain("up", "upstream")),
        ("abs.toml", &chain("abs", "absolute")),
    ]);
    for (file, at) in [("down.toml", 1), ("up.toml", 2), ("abs.toml", 3)] {
        trigger_at(&db, &load(&dir, file), day(at)).await;
    }
    let weights: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT dag_id, task_id, priority_weight FROM task_instances ORDER BY dag_id, task_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let of = |dag: &str| -> Vec<(String, i32)> {
        weights
            .iter()
            .filter(|w| w.0 == dag)
            .map(|w| (w.1.clone(), w.2))
            .collect()
    };
    let v = |a, b, c, s| {
        vec![
            ("a".to_string(), a),
            ("b".to_string(), b),
            ("c".to_string(), c),
            ("side".to_string(), s),
        ]
    };
    // downstream: a chain's head carries the chain's weight (1 + 5 + 1).
    assert_eq!(of("down"), v(7, 6, 1, 3));
    assert_eq!(of("up"), v(1, 6, 7, 3));
    assert_eq!(of("abs"), v(1, 5, 1, 3));
}

#[tokio::test]
async fn a_backfill_waits_behind_other_runs_unless_it_asks_not_to() {
    for yields in [true, false] {
        let db = fresh_db().await;
        add_pool(&db, "one", 1).await;
        let dir = dags_dir(&[(
            "bf.toml",
            "dag_id = \"bf\"\nschedule = \"@daily\"\n\
             [[tasks]]\nid = \"a\"\nkind = \"noop\"\npool = \"one\"\n",
        )]);
        let dag = load(&dir, "bf.toml");
        // The backfill covers older days, which Airflow's order alone would run first.
        backfill::start(
            &db.pool,
            &VersionCache::new(),
            &dag,
            &Request {
                from: day(1),
                to: day(3),
                rerun_failed: false,
                reset: false,
                created_by: "test".into(),
                max_active_runs: None,
                yield_to_scheduled: yields,
            },
        )
        .await
        .unwrap();
        trigger_at(&db, &dag, day(20)).await;
        let order = start_order(&db).await;
        assert_eq!(order.len(), 4);
        if yields {
            assert!(order[0].starts_with("manual__"), "{order:?}");
        } else {
            assert!(order[3].starts_with("manual__"), "{order:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_active_tasks_and_max_active_tis_per_dag_hold_across_three_workers() {
    let db = fresh_db().await;
    let dir = dags_dir(&[
        (
            "mat.toml",
            &sleepers("mat", 12, "0.2", "", "max_active_tasks = 2"),
        ),
        (
            "cap.toml",
            "dag_id = \"cap\"\n\
             [[tasks]]\nid = \"only\"\nkind = \"command\"\ncommand = [\"sleep\", \"0.2\"]\nmax_active_tis_per_dag = 1\n",
        ),
    ]);
    let mat = load(&dir, "mat.toml");
    let cap = load(&dir, "cap.toml");
    let workers: Vec<_> = (0..3)
        .map(|i| spawn_worker(&db.pool, fast_worker(&format!("w{i}"))))
        .collect();
    let mut runs = vec![trigger_at(&db, &mat, day(1)).await];
    for d in 1..=5 {
        runs.push(trigger_at(&db, &cap, day(d)).await);
    }
    for run in runs {
        assert_eq!(
            wait_done(&db, run, Duration::from_secs(60)).await,
            RunState::Success
        );
    }
    let one = |(s, e, _): &(DateTime<Utc>, DateTime<Utc>, i64)| (*s, *e, 1);
    let mat_tries: Vec<_> = tries(&db, "ti.dag_id = 'mat'")
        .await
        .iter()
        .map(one)
        .collect();
    assert_eq!(mat_tries.len(), 12);
    assert_eq!(max_overlap(&mat_tries), 2, "two of the run's tasks at once");
    let cap_tries: Vec<_> = tries(&db, "ti.dag_id = 'cap'")
        .await
        .iter()
        .map(one)
        .collect();
    assert_eq!(cap_tries.len(), 5);
    assert_eq!(
        max_overlap(&cap_tries),
        1,
        "one `only` at a time across its 5 runs"
    );
    let spread: i64 = sqlx::query_scalar("SELECT count(DISTINCT worker) FROM task_tries")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(spread >= 2, "tries ran on {spread} worker(s)");
    for (stop, handle) in workers {
        stop.cancel();
        handle.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_365_day_backfill_never_delays_the_scheduled_run_that_becomes_due() {
    let db = fresh_db().await;
    let now = Utc::now();
    let text = format!(
        "dag_id = \"yearly\"\nschedule = \"@daily\"\nstart_date = \"{}\"\ncatchup = false\n\
         [[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"sleep\", \"0.2\"]\n\
         [[tasks]]\nid = \"b\"\nkind = \"command\"\ncommand = [\"sleep\", \"0.2\"]\nupstream = [\"a\"]\n",
        (now - chrono::Duration::days(400)).to_rfc3339()
    );
    let dir = dags_dir(&[("yearly.toml", &text)]);
    let dag = load(&dir, "yearly.toml");
    let mut scheduler = Scheduler::new(
        db.pool.clone(),
        upiflow_tasks::registry(),
        SchedulerConfig::new(dir.to_path_buf()),
    );
    scheduler.sync_files().await.unwrap();
    let mut cfg = fast_worker("one");
    cfg.concurrency = 4;
    let (stop, handle) = spawn_worker(&db.pool, cfg);
    let from = now - chrono::Duration::days(380);
    let b = backfill::start(
        &db.pool,
        &VersionCache::new(),
        &dag,
        &Request {
            from,
            to: from + chrono::Duration::days(364),
            rerun_failed: false,
            reset: false,
            created_by: "test".into(),
            max_active_runs: None,
            yield_to_scheduled: true,
        },
    )
    .await
    .unwrap();
    assert!(b.total >= 364, "{} intervals", b.total);
    // The worker is saturated by the backfill's runs. Its slots turn over
    // every 0.2 s, so one sample may fall between a task's end and the next
    // claim: wait until all four are seen busy at once.
    let saturated_by = Instant::now() + Duration::from_secs(10);
    let mut most = 0;
    while most < 4 && Instant::now() < saturated_by {
        let busy: i64 =
            sqlx::query_scalar("SELECT count(*) FROM task_instances WHERE state = 'running'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert!(busy <= 4, "{busy} tries on a worker of 4 slots");
        most = most.max(busy);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most, 4, "every slot of the worker runs the backfill");
    scheduler.schedule().await.unwrap();
    let (run_pk, created): (i64, DateTime<Utc>) = sqlx::query_as(
        "SELECT id, queued_at FROM dag_runs WHERE dag_id = 'yearly' AND run_type = 'scheduled'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("the scheduler created the due run");
    let deadline = Instant::now() + Duration::from_secs(10);
    let started: DateTime<Utc> = loop {
        let s: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT tr.started_at FROM task_tries tr JOIN task_instances ti ON ti.id = tr.ti_id
             WHERE ti.run_pk = $1 AND ti.task_id = 'a'",
        )
        .bind(run_pk)
        .fetch_optional(&db.pool)
        .await
        .unwrap();
        if let Some(s) = s {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduled run's first task never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waited = (started - created).to_std().unwrap_or_default();
    eprintln!("scheduled run created -> its first task started: {waited:?}");
    assert!(
        waited < Duration::from_secs(1),
        "the scheduled run's first task started {waited:?} after the run was created"
    );
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn unknown_pools_and_oversized_pool_slots_are_errors_with_their_lines() {
    let db = fresh_db().await;
    add_pool(&db, "api", 3).await;
    let dir = dags_dir(&[
        (
            "bad.toml",
            "dag_id = \"bad\"\n\
             [[tasks]]\nid = \"a\"\nkind = \"noop\"\npool = \"apii\"\n\
             [[tasks]]\nid = \"b\"\nkind = \"noop\"\npool = \"api\"\npool_slots = 4\n",
        ),
        (
            "good.toml",
            "dag_id = \"good\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\npool = \"api\"\n",
        ),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(["dags", "validate"])
        .arg(&dir)
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let bad = dir.join("bad.toml");
    assert!(
        stderr.contains(&format!(
            "{}:5: task `a` uses pool `apii`, which does not exist (did you mean `api`?",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:10: task `b` takes 4 slots of pool `api`, which has only 3",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok    good"));

    // The scheduler's DAG-file sync treats it as an invalid file, with the same lines.
    let mut scheduler = Scheduler::new(
        db.pool.clone(),
        upiflow_tasks::registry(),
        SchedulerConfig::new(dir.to_path_buf()),
    );
    scheduler.sync_files().await.unwrap();
    let errors: Vec<(i32, String)> =
        sqlx::query_as("SELECT line, message FROM import_errors ORDER BY line")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, 5);
    let known: Vec<String> = sqlx::query_scalar("SELECT dag_id FROM dags ORDER BY dag_id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(known, vec!["good".to_string()]);

    // A trigger or backfill from the CLI refuses it before recording anything.
    for args in [
        vec!["trigger", "bad"],
        vec![
            "backfill",
            "bad",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
            .args(&args)
            .env("DATABASE_URL", &db.url)
            .env("UPIFLOW_DAGS_FOLDER", &dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("uses pool `apii`, which does not exist"),
            "{stderr}"
        );
    }
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
    let _ = Path::new("");
}

/// `(task_id, state)` of a run's task instances, by task id.
async fn states(db: &TestDb, run_pk: i64) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT task_id, state::text FROM task_instances WHERE run_pk = $1 ORDER BY task_id",
    )
    .bind(run_pk)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

fn succeeded(c: &upiflow_engine::store::tis::Claimed, worker: &str) -> lifecycle::Finished {
    lifecycle::Finished {
        ti_id: c.id,
        run_pk: c.run_pk,
        dag_id: c.dag_id.clone(),
        dag_hash: c.dag_hash.clone(),
        task_id: c.task_id.clone(),
        try_id: c.try_id,
        try_number: c.try_number,
        max_tries: c.max_tries,
        worker: worker.into(),
        end: lifecycle::TryEnd::Succeeded,
    }
}

#[tokio::test]
async fn a_finish_claims_what_it_made_runnable_in_the_same_transaction() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "chain.toml",
        "dag_id = \"chain\"\n\
         [[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
         [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n\
         [[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"b\"]\n",
    )]);
    let dag = load(&dir, "chain.toml");
    let run_pk = trigger_at(&db, &dag, day(1)).await;
    let cache = VersionCache::new();
    let first = lifecycle::claim::claim(&db.pool, &cache, "w", 4)
        .await
        .unwrap();
    let ids: Vec<&str> = first
        .tries
        .iter()
        .map(|(c, _)| c.task_id.as_str())
        .collect();
    assert_eq!(ids, ["a"]);

    let mut wake = sqlx::postgres::PgListener::connect_with(&db.pool)
        .await
        .unwrap();
    wake.listen(upiflow_engine::store::WAKE_CHANNEL)
        .await
        .unwrap();

    // a's outcome makes b runnable, and the same transaction hands b to this worker.
    let done = [succeeded(&first.tries[0].0, "w")];
    let (res, claim) = lifecycle::finish_and_claim(&db.pool, &cache, &done, "w", 4)
        .await
        .unwrap();
    assert_eq!((res.recorded, res.scheduled), (1, 1));
    let ids: Vec<&str> = claim
        .tries
        .iter()
        .map(|(c, _)| c.task_id.as_str())
        .collect();
    assert_eq!(ids, ["b"]);
    assert!(claim.tries[0].1.is_some(), "b comes with its DAG version");
    let s = |t: &str, st: Option<&str>| (t.to_string(), st.map(String::from));
    assert_eq!(
        states(&db, run_pk).await,
        [
            s("a", Some("success")),
            s("b", Some("running")),
            s("c", None)
        ]
    );
    // It took everything runnable (fewer than it could hold), so nobody else is woken.
    let quiet = tokio::time::timeout(Duration::from_millis(500), wake.recv()).await;
    assert!(quiet.is_err(), "no wake-up expected, got {quiet:?}");

    // With no room to claim, c is left scheduled for any worker, and workers are woken.
    let done = [succeeded(&claim.tries[0].0, "w")];
    let (res, claim) = lifecycle::finish_and_claim(&db.pool, &cache, &done, "w", 0)
        .await
        .unwrap();
    assert_eq!((res.recorded, res.scheduled), (1, 1));
    assert!(claim.tries.is_empty());
    assert_eq!(states(&db, run_pk).await[2], s("c", Some("scheduled")));
    tokio::time::timeout(Duration::from_secs(5), wake.recv())
        .await
        .expect("workers are woken for c")
        .unwrap();
}
