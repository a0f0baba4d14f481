//! Scheduling in time against a real Postgres: catch-up, the missed-interval ledger,
//! backfills, pause, DAG files edited while running.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use upiflow_engine::backfill::{self, Request};
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_engine::state::{RunState, RunType};
use upiflow_engine::store::dags as store_dags;
use upiflow_engine::store::dags::VersionCache;

fn t(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, d, h, 0, 0).unwrap()
}

fn scheduler(db: &TestDb, dir: &std::path::Path) -> Scheduler {
    Scheduler::new(
        db.pool.clone(),
        upiflow_tasks::registry(),
        SchedulerConfig::new(dir.to_path_buf()),
    )
}

async fn runs_of(db: &TestDb, dag: &str) -> Vec<(DateTime<Utc>, RunType, RunState)> {
    sqlx::query_as("SELECT logical_date, run_type, state FROM dag_runs WHERE dag_id = $1 ORDER BY logical_date")
        .bind(dag)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

async fn wait_all_done(db: &TestDb, dag: &str, expected: i64) {
    for _ in 0..600 {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state IN ('success', 'failed')",
        )
        .bind(dag)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if done >= expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("runs of {dag} did not finish");
}

#[tokio::test]
async fn catch_up_creates_exactly_the_missed_intervals_oldest_first_within_max_active_runs() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "h.toml",
        "dag_id = \"h\"\nschedule = \"@hourly\"\nstart_date = \"2024-01-01T00:00:00Z\"\ncatchup = true\nmax_active_runs = 2\n\
         [[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"sleep\", \"0.2\"]\n",
    )]);
    let mut s = scheduler(&db, &dir);
    s.sync_files().await.unwrap();
    let pass = s
        .schedule_at(t(1, 5) + chrono::Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(pass.created, 5);
    // The same pass again, later in the same hour, creates nothing more.
    assert_eq!(
        s.schedule_at(t(1, 5) + chrono::Duration::minutes(59))
            .await
            .unwrap()
            .created,
        0
    );
    let runs = runs_of(&db, "h").await;
    assert_eq!(
        runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..5).map(|h| t(1, h)).collect::<Vec<_>>()
    );
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE state = 'running'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(running, 2, "max_active_runs = 2");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    wait_all_done(&db, "h", 5).await;
    // Started oldest first, never more than two at once.
    let spans: Vec<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT logical_date, start_date, end_date FROM dag_runs ORDER BY logical_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // Runs started together share a start time; no run started before an older one.
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].1), "{spans:?}");
    for (_, start, _) in &spans {
        let overlapping = spans
            .iter()
            .filter(|(_, s, e)| s <= start && e > start)
            .count();
        assert!(overlapping <= 2, "{overlapping} runs at once at {start}");
    }
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn without_catch_up_skipped_intervals_go_to_the_ledger_and_can_be_backfilled() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "n.toml",
        "dag_id = \"n\"\nschedule = \"@hourly\"\nstart_date = \"2024-01-01\"\ncatchup = false\n\
         [[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let mut s = scheduler(&db, &dir);
    s.sync_files().await.unwrap();
    // First pass: only the latest complete interval; history before it is not "missed".
    let first = s
        .schedule_at(t(1, 3) + chrono::Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!((first.created, first.missed), (1, 0));
    // Five hours later: 03:00..06:00 were skipped, 07:00 runs.
    let later = s
        .schedule_at(t(1, 8) + chrono::Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!((later.created, later.missed), (1, 4));
    assert_eq!(
        runs_of(&db, "n")
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        [t(1, 2), t(1, 7)]
    );
    let ledger: Vec<(DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT logical_date, reason::text FROM missed_intervals ORDER BY logical_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        ledger.iter().map(|l| l.0).collect::<Vec<_>>(),
        (3..=6).map(|h| t(1, h)).collect::<Vec<_>>()
    );
    assert!(ledger.iter().all(|l| l.1 == "catchup_disabled"));

    let dag = load(&dir, "n.toml");
    let b = backfill::start(
        &db.pool,
        &VersionCache::new(),
        &dag,
        &Request {
            from: t(1, 3),
            to: t(1, 6),
            rerun_failed: false,
            reset: false,
            created_by: "test".into(),
            max_active_runs: None,
            yield_to_scheduled: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(b.total, 4);
    let runs = runs_of(&db, "n").await;
    assert_eq!(runs.len(), 6);
    assert_eq!(runs.iter().filter(|r| r.1 == RunType::Backfill).count(), 4);
}

#[tokio::test]
async fn backfill_has_inclusive_bounds_skips_successes_and_reruns_failures_on_request() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "b.toml",
        "dag_id = \"b\"\nschedule = \"@daily\"\ntimezone = \"Asia/Kolkata\"\nmax_active_runs = 3\n\
         [[tasks]]\nid = \"a\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"test $UPIFLOW_DS != 2024-01-03 || test -f fixed\"]\n",
    )]);
    let dag = load(&dir, "b.toml");
    let cache = VersionCache::new();
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let kolkata = |d: u32| {
        upiflow_engine::dag::parse_datetime_in(&format!("2024-01-{d:02}"), dag.tz()).unwrap()
    };
    let req = |from, to, rerun_failed, reset| Request {
        from: kolkata(from),
        to: kolkata(to),
        rerun_failed,
        reset,
        created_by: "test".into(),
        max_active_runs: None,
        yield_to_scheduled: true,
    };

    let b = backfill::start(&db.pool, &cache, &dag, &req(1, 5, false, false))
        .await
        .unwrap();
    assert_eq!(b.total, 5, "both bounds are inclusive");
    wait_all_done(&db, "b", 5).await;
    let p = backfill::progress(&db.pool, &b).await.unwrap();
    assert_eq!((p.success, p.failed, p.total), (4, 1, 5));
    assert_eq!(backfill::close_finished(&db.pool).await.unwrap(), 1);
    assert_eq!(backfill::get(&db.pool, b.id).await.unwrap().state, "failed");

    // Asked again: successes and failures are left alone.
    let again = backfill::start(&db.pool, &cache, &dag, &req(1, 5, false, false))
        .await
        .unwrap();
    assert_ne!(again.id, b.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tries: i64 = sqlx::query_scalar("SELECT count(*) FROM task_tries")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tries, 5);

    // --rerun-failed: only the failed day runs again, and now succeeds.
    std::fs::write(dir.join("fixed"), "").unwrap();
    backfill::start(&db.pool, &cache, &dag, &req(1, 5, true, false))
        .await
        .unwrap();
    for _ in 0..200 {
        let p = backfill::progress(&db.pool, &b).await.unwrap();
        if p.success == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_day: Vec<(DateTime<Utc>, i32)> = sqlx::query_as(
        "SELECT r.logical_date, ti.try_number FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        per_day.iter().map(|d| d.1).collect::<Vec<_>>(),
        [1, 1, 2, 1, 1]
    );

    // --reset re-runs successes too.
    backfill::start(&db.pool, &cache, &dag, &req(1, 2, false, true))
        .await
        .unwrap();
    for _ in 0..200 {
        let tries: i64 =
            sqlx::query_scalar("SELECT count(*) FROM task_tries WHERE ended_at IS NOT NULL")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if tries == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_all_done(&db, "b", 5).await;
    let tries: i64 = sqlx::query_scalar("SELECT count(*) FROM task_tries")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tries, 8);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn an_interrupted_backfill_resumes_without_duplicates() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "r.toml",
        "dag_id = \"r\"\nschedule = \"@daily\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let dag = load(&dir, "r.toml");
    let cache = VersionCache::new();
    let req = Request {
        from: t(1, 0),
        to: t(10, 0),
        rerun_failed: false,
        reset: false,
        created_by: "test".into(),
        max_active_runs: None,
        yield_to_scheduled: true,
    };
    // Created while no worker runs, then "interrupted"; the same command again continues it.
    let first = backfill::start(&db.pool, &cache, &dag, &req).await.unwrap();
    let second = backfill::start(&db.pool, &cache, &dag, &req).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(runs_of(&db, "r").await.len(), 10);
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    wait_all_done(&db, "r", 10).await;
    assert_eq!(
        backfill::progress(&db.pool, &first).await.unwrap().success,
        10
    );
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_paused_dag_gets_no_new_runs_and_its_manual_runs_wait() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "p.toml",
        "dag_id = \"p\"\nschedule = \"@hourly\"\nstart_date = \"2024-01-01\"\ncatchup = true\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let mut s = scheduler(&db, &dir);
    s.sync_files().await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    store_dags::set_paused(&mut conn, "p", true).await.unwrap();
    assert_eq!(s.schedule_at(t(1, 3)).await.unwrap().created, 0);
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let dag = load(&dir, "p.toml");
    let run = ops::trigger(
        &db.pool,
        &VersionCache::new(),
        &dag,
        &Trigger {
            logical_date: Some(t(5, 0)),
            ..Trigger::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        runs_of(&db, "p").await,
        [(t(5, 0), RunType::Manual, RunState::Queued)]
    );
    store_dags::set_paused(&mut conn, "p", false).await.unwrap();
    let pass = s.schedule_at(t(1, 3)).await.unwrap();
    assert_eq!(pass.created, 3);
    let state = ops::wait_for_run(&db.pool, run.id, |_| {}).await.unwrap();
    assert_eq!(state, RunState::Success);
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn an_edited_dag_file_is_picked_up_and_a_broken_one_keeps_its_last_good_version() {
    let db = fresh_db().await;
    let v1 = "dag_id = \"e\"\nschedule = \"@daily\"\nstart_date = \"2024-01-01\"\ncatchup = true\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n";
    let dir = dags_dir(&[("e.toml", v1)]);
    let mut s = scheduler(&db, &dir);
    s.sync_files().await.unwrap();
    s.schedule_at(t(2, 1)).await.unwrap();
    let v2 = format!("{v1}[[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n");
    std::fs::write(dir.join("e.toml"), &v2).unwrap();
    s.sync_files().await.unwrap();
    s.schedule_at(t(3, 1)).await.unwrap();
    std::fs::write(
        dir.join("e.toml"),
        format!("{v2}[[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"zzz\"]\n"),
    )
    .unwrap();
    s.sync_files().await.unwrap();
    s.schedule_at(t(4, 1)).await.unwrap();

    let tasks_per_run: Vec<(DateTime<Utc>, i64, String)> = sqlx::query_as(
        "SELECT r.logical_date, count(ti.id), r.dag_hash FROM dag_runs r JOIN task_instances ti ON ti.run_pk = r.id
         GROUP BY r.id ORDER BY r.logical_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        tasks_per_run.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(t(1, 0), 1), (t(2, 0), 2), (t(3, 0), 2)]
    );
    assert_ne!(
        tasks_per_run[0].2, tasks_per_run[1].2,
        "each run records the version it ran"
    );
    assert_eq!(tasks_per_run[1].2, tasks_per_run[2].2);
    let errors: Vec<(String, i32, String)> =
        sqlx::query_as("SELECT fileloc, line, message FROM import_errors")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].0.ends_with("e.toml") && errors[0].2.contains("unknown upstream `zzz`"),
        "{errors:?}"
    );
    let active: bool = sqlx::query_scalar("SELECT is_active FROM dags WHERE dag_id = 'e'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(active);
}

#[tokio::test]
async fn a_backfill_with_its_own_max_active_runs_never_runs_more_at_once() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "lim.toml",
        "dag_id = \"lim\"\nschedule = \"@daily\"\nmax_active_runs = 16\n\
         [[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"sleep\", \"0.3\"]\n",
    )]);
    let dag = load(&dir, "lim.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let b = backfill::start(
        &db.pool,
        &VersionCache::new(),
        &dag,
        &Request {
            from: t(1, 0),
            to: t(10, 0),
            rerun_failed: false,
            reset: false,
            created_by: "test".into(),
            max_active_runs: Some(2),
            yield_to_scheduled: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(b.max_active_runs, Some(2));
    let mut most = 0;
    for _ in 0..1500 {
        let (running, done): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'success')
             FROM dag_runs WHERE backfill_id = $1",
        )
        .bind(b.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        most = most.max(running);
        if done == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backfill::progress(&db.pool, &b).await.unwrap().success, 10);
    assert_eq!(
        most, 2,
        "two at a time, as the backfill asked, below the DAG's 16"
    );
    stop.cancel();
    handle.await.unwrap();
}
