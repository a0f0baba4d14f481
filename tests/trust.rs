//! Trust under contention and faults: overlapping backfills racing the scheduler's catch-up
//! never fail a command or double a run; slow task SQL never starves a worker's heartbeat;
//! a connection dropped mid-transaction is retried, not reported.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use common::*;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::state::RunState;
use upiflow_engine::store::dags::VersionCache;

/// Processes that are stopped (SIGTERM, then waited for) when the test ends, even on failure.
struct Procs(Vec<tokio::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn part(url: &str, dags: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start upiflow")
}

fn chain(dag_id: &str, schedule: &str, start: DateTime<Utc>) -> String {
    format!(
        "dag_id = \"{dag_id}\"\nschedule = \"{schedule}\"\nstart_date = \"{}\"\ncatchup = true\nmax_active_runs = 16\n\
         [[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
         [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n\
         [[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"b\"]\n",
        start.to_rfc3339()
    )
}

/// Counts that must hold for a DAG whose every interval ran exactly once.
async fn exactly_once(db: &TestDb, dag_id: &str) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM dag_runs WHERE dag_id = $1),
                (SELECT count(DISTINCT logical_date) FROM dag_runs WHERE dag_id = $1),
                (SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state = 'success'),
                (SELECT count(*) FROM task_instances WHERE dag_id = $1),
                (SELECT count(*) FROM task_instances ti WHERE ti.dag_id = $1 AND ti.state = 'success'
                   AND (SELECT count(*) FROM task_tries t WHERE t.ti_id = ti.id) = 1
                   AND (SELECT count(*) FROM task_tries t WHERE t.ti_id = ti.id AND t.outcome = 'success') = 1)",
    )
    .bind(dag_id)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_backfills_racing_the_catch_up_never_fail_a_command_nor_double_a_run() {
    let db = fresh_db().await;
    let hour = chrono::Duration::hours(1);
    let day = chrono::Duration::days(1);
    let now_hour = Utc::now().duration_trunc(hour).unwrap();
    let today = Utc::now().duration_trunc(day).unwrap();
    let first_day = today - day * 300;
    let dir = dags_dir(&[(
        "hourly.toml",
        &chain("hourly", "@hourly", now_hour - hour * 300),
    )]);
    let _procs = Procs(vec![
        part(&db.url, &dir, &["scheduler"]),
        part(&db.url, &dir, &["scheduler"]),
        part(&db.url, &dir, &["worker", "--heartbeat", "500ms"]),
        part(&db.url, &dir, &["worker", "--heartbeat", "500ms"]),
    ]);
    let ranges = [(0, 199), (50, 249), (100, 299)];
    let mut commands = 0;
    for rep in 0..10 {
        // A DAG the schedulers also catch up on, over the very days the backfills cover:
        // both create runs for the same logical dates at the same time.
        let dag_id = format!("daily{rep}");
        std::fs::write(
            dir.join(format!("{dag_id}.toml")),
            chain(&dag_id, "@daily", first_day),
        )
        .unwrap();
        let started = Instant::now();
        let backfills: Vec<_> = ranges
            .iter()
            .map(|(from, to)| {
                let from = (first_day + day * *from).format("%Y-%m-%d").to_string();
                let to = (first_day + day * *to).format("%Y-%m-%d").to_string();
                let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
                    .args(["backfill", &dag_id, "--from", &from, "--to", &to, "--wait"])
                    .env("DATABASE_URL", &db.url)
                    .env("UPIFLOW_DAGS_FOLDER", &dir)
                    .env("RUST_LOG", "warn")
                    .kill_on_drop(true)
                    .output();
                tokio::spawn(out)
            })
            .collect();
        for out in backfills {
            let out = out.await.unwrap().unwrap();
            commands += 1;
            assert_eq!(
                out.status.code(),
                Some(0),
                "rep {rep}: a backfill command failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (runs, dates, ok, tis, once) = exactly_once(&db, &dag_id).await;
        assert_eq!(
            (runs, dates, ok),
            (300, 300, 300),
            "rep {rep}: one successful run per day"
        );
        assert_eq!(
            (tis, once),
            (900, 900),
            "rep {rep}: every task instance has exactly one try, and it succeeded"
        );
        eprintln!(
            "rep {rep}: 3 backfills of 300 days done in {:?}",
            started.elapsed()
        );
    }
    // The catch-up that ran all along is intact as well.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (runs, dates, ok, tis, once) = exactly_once(&db, "hourly").await;
        if ok >= 300 && runs == ok {
            assert_eq!(runs, dates);
            assert_eq!(tis, once, "every hourly task instance ran exactly once");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hourly catch-up did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{commands} backfill commands, all exited 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_task_sql_never_starves_the_heartbeat_of_its_worker() {
    let db = fresh_db().await;
    // 32 at once in one run: above Airflow's default per-run max_active_tasks (16).
    let mut toml = String::from("dag_id = \"slow\"\nschedule = \"none\"\nmax_active_tasks = 32\n");
    for i in 0..32 {
        toml.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\nkind = \"sql\"\nsql = \"sql/sleep.sql\"\n"
        ));
    }
    let dir = dags_dir(&[
        ("slow.toml", &toml),
        ("sql/sleep.sql", "SELECT pg_sleep(40);\n"),
    ]);
    // The worker as users run it: default concurrency (32) and database pool, 30 s threshold.
    let _procs = Procs(vec![part(
        &db.url,
        &dir,
        &["worker", "--zombie-threshold", "30s", "--heartbeat", "2s"],
    )]);
    let dag = load(&dir, "slow.toml");
    let run = ops::trigger(&db.pool, &VersionCache::new(), &dag, &Trigger::default())
        .await
        .unwrap();
    // Another process reaping zombies all along, as a second worker would.
    let cache = VersionCache::new();
    let started = Instant::now();
    let mut last_beat: Option<DateTime<Utc>> = None;
    let mut last_change = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut most_running = 0;
    loop {
        upiflow_engine::lifecycle::reap::reap_zombies(&db.pool, &cache, Duration::from_secs(30))
            .await
            .unwrap();
        let beat: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT max(heartbeat_at) FROM workers WHERE stopped_at IS NULL")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if beat.is_some() && beat != last_beat {
            if last_beat.is_some() {
                longest_gap = longest_gap.max(last_change.elapsed());
            }
            last_beat = beat;
            last_change = Instant::now();
        }
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM task_instances WHERE run_pk = $1 AND state = 'running'",
        )
        .bind(run.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        most_running = most_running.max(running);
        let state: RunState = sqlx::query_scalar("SELECT state FROM dag_runs WHERE id = $1")
            .bind(run.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if state.is_terminal() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (tries, zombies, ok): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE t.outcome = 'zombie'),
                count(*) FILTER (WHERE t.outcome = 'success')
         FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id WHERE ti.run_pk = $1",
    )
    .bind(run.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    eprintln!(
        "32 x pg_sleep(40): {most_running} ran at once, {tries} tries, {zombies} zombies, longest heartbeat gap {longest_gap:?}, run took {:?}",
        started.elapsed()
    );
    assert_eq!(most_running, 32, "all 32 ran at once");
    assert_eq!(
        (tries, zombies, ok),
        (32, 0, 32),
        "no try was taken for a zombie"
    );
    assert!(
        longest_gap < Duration::from_secs(5),
        "the heartbeat kept its 2 s period (longest gap {longest_gap:?})"
    );
}

#[tokio::test]
async fn a_trigger_whose_connection_is_killed_mid_transaction_is_retried_and_succeeds() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "k.toml",
        "dag_id = \"k\"\nschedule = \"none\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let dag = load(&dir, "k.toml");
    // Hold a lock the trigger's transaction needs, so it is caught mid-transaction.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE dag_runs IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let pool = db.pool.clone();
    let trigger = tokio::spawn(async move {
        ops::trigger(&pool, &VersionCache::new(), &dag, &Trigger::default()).await
    });
    // Wait until the trigger waits for the lock, then kill its connection.
    let killed = kill_waiting(&mut blocker).await;
    assert_eq!(
        killed, 1,
        "the trigger was caught waiting inside its transaction"
    );
    blocker.rollback().await.unwrap();
    let run = tokio::time::timeout(Duration::from_secs(30), trigger)
        .await
        .expect("the trigger finished")
        .unwrap()
        .expect("a killed connection is retried, not reported");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE dag_id = 'k'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 1, "exactly one run, despite the retry");
    assert_eq!(run.dag_id, "k");
}

/// Kills the connections of this database's sessions that wait for a lock (the test holds
/// one, so only the operation under test can be waiting), once there are some; returns how
/// many were killed. A statement blocks already while it is parsed (sqlx prepares every
/// statement), when `pg_stat_activity.query` still shows the previous one, so this matches
/// on the wait, not on the text.
async fn kill_waiting(conn: &mut sqlx::PgConnection) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // The caller polls inside its transaction (it holds the lock), and Postgres keeps one
        // snapshot of pg_stat_activity per transaction: without clearing it, a session that
        // starts waiting after the first poll is never seen.
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut *conn)
            .await
            .unwrap();
        let killed = sqlx::query_scalar::<_, i64>(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if killed > 0 {
            return killed;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    let seen: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT state, wait_event_type, left(query, 120) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    eprintln!("no session waited for a lock within 60 s; the others: {seen:?}");
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_request_whose_connection_is_killed_is_replayed_and_answers_200() {
    use tower::ServiceExt;
    let db = fresh_db().await;
    upiflow_web::auth::create_user(
        &db.pool,
        "ada",
        "admin-password",
        upiflow_web::auth::Role::Admin,
    )
    .await
    .unwrap();
    let dir = dags_dir(&[(
        "k.toml",
        "dag_id = \"k\"\nschedule = \"none\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &load(&dir, "k.toml"))
        .await
        .unwrap();
    drop(conn);
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    // A bearer token, so no password hashing (slow on a loaded machine) stands between the
    // request and its query.
    let token = upiflow_web::auth::issue_token(
        &state.token_key,
        "ada",
        upiflow_web::auth::Grant {
            role: upiflow_web::auth::Role::Admin,
            version: 0,
        },
    )
    .unwrap();
    let app = upiflow_web::app(state);
    // The handler reads `dags` itself (no engine retry in between): only the web's replay
    // of the whole request can turn the killed connection into a 200.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE dags IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let req = axum::http::Request::get("/api/v2/dags/k")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let call = tokio::spawn(app.oneshot(req));
    assert_eq!(kill_waiting(&mut blocker).await, 1);
    blocker.rollback().await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the request finished")
        .unwrap()
        .unwrap();
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status, axum::http::StatusCode::OK, "{text}");
    assert!(text.contains("\"dag_id\":\"k\""), "{text}");
}
