//! Deadlines (Airflow 3.1's deadline alerts) against a real Postgres, real schedulers and a
//! real worker: a run unfinished past its deadline fires `on_deadline_miss` exactly once, also
//! across a scheduler restart and with two schedulers; a run finishing in time fires none;
//! the UI marks a late run.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{dags_dir, fast_worker, fresh_db, load, spawn_worker};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_engine::state::RunState;
use upiflow_engine::store::dags::VersionCache;
use upiflow_engine::store::runs;
use upiflow_web::auth::Role;
use upiflow_web::ui::session;

/// A DAG whose one task sleeps `sleep` seconds, with a deadline `interval` after the run was
/// queued, notifying a command that appends each notification to `out`.
fn dag_text(dag_id: &str, interval: &str, sleep: u32, out: &Path) -> String {
    format!(
        r#"dag_id = "{dag_id}"
schedule = "none"
deadline = {{ reference = "queued_at", interval = "{interval}" }}
on_deadline_miss = ["late"]

[[notifiers]]
name = "late"
kind = "command"
command = ["sh", "-c", "cat >> '{out}'; echo >> '{out}'"]

[[tasks]]
id = "slow"
kind = "command"
command = ["sleep", "{sleep}"]
"#,
        out = out.display()
    )
}

fn scheduler(pool: &sqlx::PgPool, dir: &Path) -> CancellationToken {
    let stop = CancellationToken::new();
    let mut cfg = SchedulerConfig::new(dir.to_path_buf());
    cfg.poll = Duration::from_millis(200);
    tokio::spawn(Scheduler::new(pool.clone(), upiflow_tasks::registry(), cfg).run(stop.clone()));
    stop
}

/// The notifications the command received (one JSON document per line).
fn received(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn out_file() -> PathBuf {
    std::env::temp_dir().join(format!(
        "upiflow-deadline-{}.jsonl",
        uuid::Uuid::new_v4().simple()
    ))
}

#[tokio::test]
async fn a_run_past_its_deadline_fires_once_across_a_restart_and_with_two_schedulers() {
    let db = fresh_db().await;
    let out = out_file();
    let dir = dags_dir(&[("late.toml", &dag_text("late", "2s", 5, &out))]);
    let dag = load(&dir, "late.toml");
    let first = scheduler(&db.pool, &dir);
    let (worker, _) = spawn_worker(&db.pool, fast_worker("deadline"));
    let run = ops::trigger(&db.pool, &VersionCache::new(), &dag, &Trigger::default())
        .await
        .unwrap();
    let deadline = run.deadline_at.expect("the run has a deadline");
    assert_eq!(
        deadline,
        run.queued_at + chrono::Duration::seconds(2),
        "queued_at + interval"
    );
    // The scheduler stops before the deadline and comes back (twice over) after it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.cancel();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(received(&out).is_empty(), "nobody was watching");
    let second = scheduler(&db.pool, &dir);
    let third = scheduler(&db.pool, &dir);
    let pool = db.pool.clone();
    wait_for("the run to finish", Duration::from_secs(30), async || {
        let mut c = pool.acquire().await.unwrap();
        runs::get_by_pk(&mut c, run.id).await.unwrap().state == RunState::Success
    })
    .await;
    wait_for("the notification", Duration::from_secs(20), async || {
        !received(&out).is_empty()
    })
    .await;
    // More passes of both schedulers must not fire it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = received(&out);
    assert_eq!(got.len(), 1, "exactly one on_deadline_miss: {got:#?}");
    let n = &got[0];
    assert_eq!(n["event"], "on_deadline_miss", "{n}");
    assert_eq!(n["dag_id"], "late", "{n}");
    assert_eq!(n["run_id"], run.run_id.as_str(), "{n}");
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE event = 'on_deadline_miss' AND run_id = $1",
    )
    .bind(&run.run_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows, 1, "one outbox row");
    let mut c = db.pool.acquire().await.unwrap();
    let after = runs::get_by_pk(&mut c, run.id).await.unwrap();
    let missed = after.deadline_missed_at.expect("recorded as late");
    assert!(missed >= deadline, "noticed after the deadline");
    assert!(after.is_late());
    drop(c);

    // The UI marks it late: on the run page and in the grid.
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    upiflow_web::auth::create_user(&db.pool, "vic", "a-password", Role::Viewer)
        .await
        .unwrap();
    let c = session::start(
        &state.token_key,
        "vic",
        upiflow_web::auth::Grant {
            role: Role::Viewer,
            version: 0,
        },
        false,
    )
    .unwrap();
    let cookie = format!("{}={}", c.name(), c.value());
    let app = upiflow_web::app(state);
    for (uri, needle) in [
        (format!("/dags/late/runs/{}", run.run_id), "id=\"run-late\""),
        ("/dags/late".to_string(), "data-late"),
    ] {
        let resp = app
            .clone()
            .oneshot(
                Request::get(&uri)
                    .header(header::COOKIE, &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(needle), "{uri} marks the run late");
    }
    second.cancel();
    third.cancel();
    worker.cancel();
}

/// No scheduler is watching at the deadline and the run finishes after it: the finishing
/// transaction records it late and enqueues the notification, which a scheduler started later
/// delivers, once.
#[tokio::test]
async fn a_run_finishing_after_its_deadline_unwatched_is_late_all_the_same() {
    let db = fresh_db().await;
    let out = out_file();
    let dir = dags_dir(&[("unwatched.toml", &dag_text("unwatched", "1s", 2, &out))]);
    let dag = load(&dir, "unwatched.toml");
    let (worker, _) = spawn_worker(&db.pool, fast_worker("deadline"));
    let run = ops::trigger(&db.pool, &VersionCache::new(), &dag, &Trigger::default())
        .await
        .unwrap();
    let state = tokio::time::timeout(
        Duration::from_secs(30),
        ops::wait_until_done(&db.pool, run.id, Duration::from_millis(50)),
    )
    .await
    .expect("finishes")
    .unwrap();
    assert_eq!(state, RunState::Success);
    let mut c = db.pool.acquire().await.unwrap();
    let after = runs::get_by_pk(&mut c, run.id).await.unwrap();
    drop(c);
    assert_eq!(
        after.deadline_missed_at, after.end_date,
        "recorded late when it finished"
    );
    assert!(after.end_date.unwrap() > after.deadline_at.unwrap());
    let sched = scheduler(&db.pool, &dir);
    wait_for("the notification", Duration::from_secs(20), async || {
        !received(&out).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = received(&out);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["event"], "on_deadline_miss");
    sched.cancel();
    worker.cancel();
}

#[tokio::test]
async fn a_run_finishing_in_time_fires_none_and_is_not_late() {
    let db = fresh_db().await;
    let out = out_file();
    let dir = dags_dir(&[("ontime.toml", &dag_text("ontime", "20s", 0, &out))]);
    let dag = load(&dir, "ontime.toml");
    let sched = scheduler(&db.pool, &dir);
    let (worker, _) = spawn_worker(&db.pool, fast_worker("deadline"));
    let run = ops::trigger(&db.pool, &VersionCache::new(), &dag, &Trigger::default())
        .await
        .unwrap();
    assert!(run.deadline_at.is_some());
    let state = tokio::time::timeout(
        Duration::from_secs(30),
        ops::wait_until_done(&db.pool, run.id, Duration::from_millis(50)),
    )
    .await
    .expect("finishes")
    .unwrap();
    assert_eq!(state, RunState::Success);
    // Passes go on past the run's end; nothing fires, also not once its deadline has passed
    // (a scheduling pass at a time after it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = Scheduler::new(
        db.pool.clone(),
        upiflow_tasks::registry(),
        SchedulerConfig::new(dir.clone()),
    );
    let pass = s
        .schedule_at(chrono::Utc::now() + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(pass.late, 0);
    let mut c = db.pool.acquire().await.unwrap();
    let after = runs::get_by_pk(&mut c, run.id).await.unwrap();
    assert_eq!(after.deadline_missed_at, None);
    assert!(!after.is_late());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    assert!(received(&out).is_empty());
    sched.cancel();
    worker.cancel();
}

/// A DAG without a deadline gives its runs none.
#[tokio::test]
async fn runs_without_a_deadline_have_none() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "plain.toml",
        "dag_id = \"plain\"\nschedule = \"none\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let dag = load(&dir, "plain.toml");
    assert!(dag.deadline.is_none());
    let run = ops::trigger(&db.pool, &VersionCache::new(), &dag, &Trigger::default())
        .await
        .unwrap();
    assert_eq!(run.deadline_at, None);
}
