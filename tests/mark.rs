//! Marking task instances and runs by hand, as Airflow's "mark", against a real Postgres and
//! real worker processes: downstream tasks follow their trigger rules afterwards, a marked
//! running try has its process killed at once and says it was marked, the selections
//! (upstream, downstream, past, future), the run marks, and the CLI, API and UI ways in.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_engine::ErrorKind;
use upiflow_engine::lifecycle::mark::{self, MarkTasks, RunMark, TiMark};
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::state::{RunState, TaskState, TryOutcome};
use upiflow_engine::store::dags::VersionCache;
use upiflow_engine::store::runs::RunRow;
use upiflow_web::auth::{self, Role};
use upiflow_web::ui::session;

/// `a` fails (no retries), `b` needs it to succeed.
const FAILS: &str = r#"dag_id = "f"
schedule = "@daily"
[[tasks]]
id = "a"
kind = "command"
command = ["sh", "-c", "exit 3"]
[[tasks]]
id = "b"
kind = "command"
upstream = ["a"]
command = ["sh", "-c", "echo b ran"]
"#;

/// A chain for the selections; nothing runs it.
const CHAIN: &str = r#"dag_id = "c"
schedule = "@daily"
[[tasks]]
id = "a"
kind = "noop"
[[tasks]]
id = "b"
kind = "noop"
upstream = ["a"]
[[tasks]]
id = "c"
kind = "noop"
upstream = ["b"]
"#;

/// A sleep that writes the pid of its `sleep` child, with retries left (a marked try must
/// not be retried), and a task after it.
fn sleeper(pid_file: &Path) -> String {
    format!(
        r#"dag_id = "s"
schedule = "@daily"
[defaults]
retries = 2
retry_delay = "100ms"
[[tasks]]
id = "sleep"
kind = "command"
command = ["sh", "-c", "sleep 30 & echo $! > {}; wait"]
[[tasks]]
id = "after"
kind = "noop"
upstream = ["sleep"]
"#,
        pid_file.display()
    )
}

fn day(d: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap()
}

async fn trigger_at(db: &TestDb, dag: &upiflow_engine::Dag, d: u32) -> RunRow {
    let req = Trigger {
        logical_date: Some(day(d)),
        ..Trigger::default()
    };
    ops::trigger(&db.pool, &VersionCache::new(), dag, &req)
        .await
        .expect("trigger")
}

async fn run_state(db: &TestDb, run: &RunRow) -> RunState {
    sqlx::query_scalar("SELECT state FROM dag_runs WHERE id = $1")
        .bind(run.id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn wait_run(db: &TestDb, run: &RunRow, want: RunState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = run_state(db, run).await;
        if s == want {
            return;
        }
        assert!(Instant::now() < deadline, "run is {s}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ti_state(db: &TestDb, run: &RunRow, task: &str) -> Option<TaskState> {
    sqlx::query_scalar("SELECT state FROM task_instances WHERE run_pk = $1 AND task_id = $2")
        .bind(run.id)
        .bind(task)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn wait_ti(db: &TestDb, run: &RunRow, task: &str, want: TaskState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = ti_state(db, run, task).await;
        if s == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{task} is {s:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

fn req<'a>(run_id: &'a str, dag_id: &'a str, task_id: &'a str, state: TiMark) -> MarkTasks<'a> {
    MarkTasks {
        dag_id,
        run_id,
        task_id,
        state,
        upstream: false,
        downstream: false,
        past: false,
        future: false,
        dry_run: false,
        by: "tester",
    }
}

/// A real `upiflow worker` process, killed when dropped.
struct WorkerProc(std::process::Child);

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker process whose heartbeat (the fallback that notices marked tries) is slow, so
/// only the prompt stop path can stop a try within seconds.
fn worker_process(url: &str) -> WorkerProc {
    WorkerProc(
        Command::new(env!("CARGO_BIN_EXE_upiflow"))
            .args(["worker", "--heartbeat", "20s", "--zombie-threshold", "120s"])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start upiflow worker"),
    )
}

fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by its parent) is gone for our purpose.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn marking_a_failed_task_success_lets_its_downstream_run_and_the_run_succeed() {
    let db = fresh_db().await;
    let dir = dags_dir(&[("f.toml", FAILS)]);
    let dag = load(&dir, "f.toml");
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let run = trigger_at(&db, &dag, 1).await;
    wait_run(&db, &run, RunState::Failed).await;
    assert_eq!(ti_state(&db, &run, "a").await, Some(TaskState::Failed));
    assert_eq!(
        ti_state(&db, &run, "b").await,
        Some(TaskState::UpstreamFailed)
    );

    let changed = mark::mark_tasks(
        &db.pool,
        &VersionCache::new(),
        &req(&run.run_id, "f", "a", TiMark::Success),
    )
    .await
    .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].task_id.as_str(), changed[0].from, changed[0].to),
        ("a", Some(TaskState::Failed), TaskState::Success)
    );
    // The run reopened, b ran for real, and the run finished in success.
    wait_run(&db, &run, RunState::Success).await;
    assert_eq!(ti_state(&db, &run, "b").await, Some(TaskState::Success));
    let b = tries(&db, &run, "b").await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].1, Some(TryOutcome::Success));
    // a's own try keeps its real outcome: it was not running when marked.
    assert_eq!(tries(&db, &run, "a").await[0].1, Some(TryOutcome::Failed));

    // Marking it success again changes nothing: a conflict, as Airflow's 409.
    let again = mark::mark_tasks(
        &db.pool,
        &VersionCache::new(),
        &req(&run.run_id, "f", "a", TiMark::Success),
    )
    .await
    .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);
    assert!(
        again.to_string().contains("already in state success"),
        "{again}"
    );

    // Marking the leaf failed reopens the finished run, which ends failed: a run's state
    // follows its task instances.
    mark::mark_tasks(
        &db.pool,
        &VersionCache::new(),
        &req(&run.run_id, "f", "b", TiMark::Failed),
    )
    .await
    .unwrap();
    wait_run(&db, &run, RunState::Failed).await;
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_running_sleep_failed_kills_its_process_within_two_seconds_and_the_try_says_so() {
    let db = fresh_db().await;
    let pid_file = std::env::temp_dir().join(format!("upiflow-mark-{}.pid", uuid::Uuid::new_v4()));
    let dir = dags_dir(&[("s.toml", &sleeper(&pid_file))]);
    let dag = load(&dir, "s.toml");
    let _worker = worker_process(&db.url);
    let run = trigger_at(&db, &dag, 1).await;
    wait_ti(&db, &run, "sleep", TaskState::Running).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the command never wrote its pid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(alive(pid), "the sleep runs");

    let marked_at = Instant::now();
    let changed = mark::mark_tasks(
        &db.pool,
        &VersionCache::new(),
        &req(&run.run_id, "s", "sleep", TiMark::Failed),
    )
    .await
    .unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].stopped);
    while alive(pid) {
        assert!(
            marked_at.elapsed() < Duration::from_secs(2),
            "the sleep (pid {pid}) still runs 2 s after the mark"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gone_after = marked_at.elapsed();
    eprintln!("the marked try's process was gone {gone_after:?} after the mark");

    // The try says it was marked, and the worker's own report of it (stopped) was dropped:
    // nothing overwrote the mark, no retry was made although retries were left, and the
    // downstream task could not run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = tries(&db, &run, "sleep").await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].1, Some(TryOutcome::Marked));
    assert_eq!(t[0].2.as_deref(), Some("marked failed by tester"));
    assert_eq!(ti_state(&db, &run, "sleep").await, Some(TaskState::Failed));
    assert_eq!(
        ti_state(&db, &run, "after").await,
        Some(TaskState::UpstreamFailed)
    );
    assert_eq!(run_state(&db, &run).await, RunState::Failed);
    let last_line: String = sqlx::query_scalar(
        "SELECT l.line FROM task_logs l JOIN task_tries tr ON tr.id = l.try_id
         JOIN task_instances ti ON ti.id = tr.ti_id
         WHERE ti.run_pk = $1 AND ti.task_id = 'sleep' AND l.line LIKE 'marked%'",
    )
    .bind(run.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(last_line, "marked failed by tester");
    let _ = std::fs::remove_file(&pid_file);
}

/// Task ids (with the day of their run) a dry run of `m` would mark.
async fn selected(db: &TestDb, runs: &[RunRow], m: MarkTasks<'_>) -> Vec<(u32, String)> {
    let m = MarkTasks { dry_run: true, ..m };
    let mut out: Vec<(u32, String)> = mark::mark_tasks(&db.pool, &VersionCache::new(), &m)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let d = runs.iter().position(|r| r.id == c.run_pk).unwrap() as u32 + 1;
            (d, c.task_id)
        })
        .collect();
    out.sort();
    out
}

fn sel(v: &[(u32, &str)]) -> Vec<(u32, String)> {
    v.iter().map(|(d, t)| (*d, t.to_string())).collect()
}

#[tokio::test]
async fn upstream_downstream_past_and_future_select_as_airflows_mark() {
    let db = fresh_db().await;
    let dir = dags_dir(&[("c.toml", CHAIN)]);
    let dag = load(&dir, "c.toml");
    let runs = vec![
        trigger_at(&db, &dag, 1).await,
        trigger_at(&db, &dag, 2).await,
        trigger_at(&db, &dag, 3).await,
    ];
    let mid = runs[1].run_id.clone();
    let base = req(&mid, "c", "b", TiMark::Success);
    assert_eq!(selected(&db, &runs, base.clone()).await, sel(&[(2, "b")]));
    assert_eq!(
        selected(
            &db,
            &runs,
            MarkTasks {
                downstream: true,
                ..base.clone()
            }
        )
        .await,
        sel(&[(2, "b"), (2, "c")])
    );
    assert_eq!(
        selected(
            &db,
            &runs,
            MarkTasks {
                upstream: true,
                ..base.clone()
            }
        )
        .await,
        sel(&[(2, "a"), (2, "b")])
    );
    assert_eq!(
        selected(
            &db,
            &runs,
            MarkTasks {
                past: true,
                ..base.clone()
            }
        )
        .await,
        sel(&[(1, "b"), (2, "b")])
    );
    assert_eq!(
        selected(
            &db,
            &runs,
            MarkTasks {
                future: true,
                ..base.clone()
            }
        )
        .await,
        sel(&[(2, "b"), (3, "b")])
    );
    let all = MarkTasks {
        past: true,
        future: true,
        downstream: true,
        ..base.clone()
    };
    assert_eq!(
        selected(&db, &runs, all.clone()).await,
        sel(&[(1, "b"), (1, "c"), (2, "b"), (2, "c"), (3, "b"), (3, "c")])
    );
    // The dry runs changed nothing.
    for r in &runs {
        assert_eq!(ti_state(&db, r, "b").await, None);
    }
    // For real, with the future and downstream: b and c of days 2 and 3 succeed; a is
    // still to run, so the runs stay running.
    let changed = mark::mark_tasks(
        &db.pool,
        &VersionCache::new(),
        &MarkTasks {
            future: true,
            downstream: true,
            ..base.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(changed.len(), 4);
    for (r, want) in runs
        .iter()
        .zip([None, Some(TaskState::Success), Some(TaskState::Success)])
    {
        assert_eq!(ti_state(&db, r, "b").await, want);
        assert_eq!(ti_state(&db, r, "c").await, want);
        assert_eq!(ti_state(&db, r, "a").await, Some(TaskState::Scheduled));
        assert_eq!(run_state(&db, r).await, RunState::Running);
    }
    // Marking a (the last one) success finishes day 2's run in success at once.
    mark::mark_tasks(
        &db.pool,
        &VersionCache::new(),
        &req(&mid, "c", "a", TiMark::Success),
    )
    .await
    .unwrap();
    assert_eq!(run_state(&db, &runs[1]).await, RunState::Success);
    // Skipped is a state too: a skipped root skips its all_success downstream.
    mark::mark_tasks(
        &db.pool,
        &VersionCache::new(),
        &req(&runs[0].run_id, "c", "a", TiMark::Skipped),
    )
    .await
    .unwrap();
    assert_eq!(ti_state(&db, &runs[0], "b").await, Some(TaskState::Skipped));
    assert_eq!(ti_state(&db, &runs[0], "c").await, Some(TaskState::Skipped));
    assert_eq!(run_state(&db, &runs[0]).await, RunState::Success);

    // Bad input: unknown DAG, run and task are not-found errors naming them.
    for (dag_id, run_id, task_id, what) in [
        ("nope", mid.as_str(), "b", "no DAG `nope`"),
        ("c", "manual__nope", "b", "no run `manual__nope` of DAG `c`"),
        ("c", mid.as_str(), "zz", "DAG `c` has no task `zz`"),
    ] {
        let e = mark::mark_tasks(
            &db.pool,
            &VersionCache::new(),
            &req(run_id, dag_id, task_id, TiMark::Failed),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(e.to_string(), what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_run_failed_success_and_queued_does_what_airflow_3_does() {
    let db = fresh_db().await;
    let pid_file = std::env::temp_dir().join(format!("upiflow-mark-{}.pid", uuid::Uuid::new_v4()));
    let dir = dags_dir(&[("s.toml", &sleeper(&pid_file))]);
    let dag = load(&dir, "s.toml");
    let _worker = worker_process(&db.url);
    let run = trigger_at(&db, &dag, 1).await;
    wait_ti(&db, &run, "sleep", TaskState::Running).await;
    let cache = VersionCache::new();

    // failed: the running task fails (its try stopped), the unfinished one is skipped.
    let changed = mark::mark_run(
        &db.pool,
        &cache,
        "s",
        &run.run_id,
        RunMark::Failed,
        "tester",
    )
    .await
    .unwrap();
    let mut what: Vec<(String, TaskState, bool)> = changed
        .iter()
        .map(|c| (c.task_id.clone(), c.to, c.stopped))
        .collect();
    what.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        what,
        [
            ("after".to_string(), TaskState::Skipped, false),
            ("sleep".to_string(), TaskState::Failed, true)
        ]
    );
    assert_eq!(run_state(&db, &run).await, RunState::Failed);
    let t = tries(&db, &run, "sleep").await;
    assert_eq!(t[0].1, Some(TryOutcome::Marked));
    assert_eq!(t[0].2.as_deref(), Some("marked failed by tester"));

    // success: every task instance not in success becomes success.
    mark::mark_run(
        &db.pool,
        &cache,
        "s",
        &run.run_id,
        RunMark::Success,
        "tester",
    )
    .await
    .unwrap();
    assert_eq!(run_state(&db, &run).await, RunState::Success);
    assert_eq!(ti_state(&db, &run, "sleep").await, Some(TaskState::Success));
    assert_eq!(ti_state(&db, &run, "after").await, Some(TaskState::Success));

    // queued: back in the queue, waiting while the DAG is paused, neither started nor ended.
    {
        let mut conn = db.pool.acquire().await.unwrap();
        ops::set_paused(&mut conn, &cache, "s", true).await.unwrap();
    }
    mark::mark_run(
        &db.pool,
        &cache,
        "s",
        &run.run_id,
        RunMark::Queued,
        "tester",
    )
    .await
    .unwrap();
    let (state, start, end): (
        RunState,
        Option<chrono::DateTime<Utc>>,
        Option<chrono::DateTime<Utc>>,
    ) = sqlx::query_as("SELECT state, start_date, end_date FROM dag_runs WHERE id = $1")
        .bind(run.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((state, start, end), (RunState::Queued, None, None));
    // Unpaused, it starts again and, every task instance being final, finishes at once.
    {
        let mut conn = db.pool.acquire().await.unwrap();
        ops::set_paused(&mut conn, &cache, "s", false)
            .await
            .unwrap();
    }
    assert_eq!(run_state(&db, &run).await, RunState::Success);

    // Unknown DAG and run.
    let e = mark::mark_run(&db.pool, &cache, "nope", &run.run_id, RunMark::Failed, "t")
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (ErrorKind::NotFound, "no DAG `nope`".into())
    );
    let e = mark::mark_run(&db.pool, &cache, "s", "nope", RunMark::Failed, "t")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let _ = std::fs::remove_file(&pid_file);
}

fn upiflow(db_url: &str, dags: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run upiflow")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn the_cli_marks_tasks_and_runs_and_refuses_bad_input_with_exit_1() {
    let db = fresh_db().await;
    let dir = dags_dir(&[("c.toml", CHAIN)]);
    let dag = load(&dir, "c.toml");
    let run = trigger_at(&db, &dag, 1).await;
    let rid = run.run_id.as_str();

    let out = upiflow(
        &db.url,
        &dir,
        &[
            "tasks",
            "mark",
            "c",
            rid,
            "b",
            "--state",
            "success",
            "--downstream",
            "--dry-run",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("would mark 2 task instance(s) success"),
        "{stdout}"
    );
    assert_eq!(ti_state(&db, &run, "b").await, None);

    let out = upiflow(
        &db.url,
        &dir,
        &[
            "tasks",
            "mark",
            "c",
            rid,
            "b",
            "--state",
            "success",
            "--downstream",
            "--note",
            "done by hand",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("marked 2 task instance(s) success"),
        "{stdout}"
    );
    assert_eq!(ti_state(&db, &run, "c").await, Some(TaskState::Success));
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM task_instances WHERE run_pk = $1 AND task_id = 'b'")
            .bind(run.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(note.as_deref(), Some("done by hand"));

    for (args, msg) in [
        (
            vec!["tasks", "mark", "c", "nope", "b", "--state", "success"],
            "no run `nope` of DAG `c`",
        ),
        (
            vec!["tasks", "mark", "zz", rid, "b", "--state", "success"],
            "no DAG `zz`",
        ),
        (
            vec!["tasks", "mark", "c", rid, "zz", "--state", "success"],
            "DAG `c` has no task `zz`",
        ),
        (
            vec!["tasks", "mark", "c", rid, "b", "--state", "running"],
            "--state `running` is not a state a task instance may be marked with",
        ),
        (
            vec!["tasks", "mark", "c", rid, "b", "--state", "success"],
            "already in state success",
        ),
        (
            vec!["runs", "mark", "c", rid, "--state", "skipped"],
            "--state `skipped` is not a state a run may be marked with",
        ),
        (
            vec!["runs", "mark", "c", "nope", "--state", "failed"],
            "no run `nope` of DAG `c`",
        ),
    ] {
        let out = upiflow(&db.url, &dir, &args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    }

    let out = upiflow(
        &db.url,
        &dir,
        &[
            "runs", "mark", "c", rid, "--state", "failed", "--note", "gave up",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("it is failed now; 1 task instance(s) changed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(run_state(&db, &run).await, RunState::Failed);
    assert_eq!(ti_state(&db, &run, "a").await, Some(TaskState::Skipped));

    // `upiflow runs DAG_ID [RUN_ID]` still lists.
    let out = upiflow(&db.url, &dir, &["runs", "c"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(rid));
    let out = upiflow(&db.url, &dir, &["runs", "c", rid]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("skipped"));
}

struct Api {
    app: axum::Router,
    db: TestDb,
    dag: upiflow_engine::Dag,
}

async fn api() -> Api {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let dir = dags_dir(&[("c.toml", CHAIN)]);
    let dag = load(&dir, "c.toml");
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    Api {
        app: upiflow_web::app(state),
        db,
        dag,
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// The fields Airflow's document requires of its schema `name`.
fn airflow_required(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/airflow-v2-rest-api.yaml"
    ))
    .unwrap();
    let doc: Value = yaml_serde::from_str(&text).unwrap();
    doc["components"]["schemas"][name]["required"]
        .as_array()
        .unwrap_or_else(|| panic!("Airflow has a schema {name}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn assert_has_fields(v: &Value, schema: &str) {
    for f in airflow_required(schema) {
        assert!(v.get(&f).is_some(), "{schema} lacks `{f}`: {v}");
    }
}

#[tokio::test]
async fn the_patch_routes_mark_in_airflows_shape_and_refuse_bad_requests() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let viewer = basic("vic", "viewer-password");
    let run = trigger_at(&a.db, &a.dag, 1).await;
    let rid = &run.run_id;
    let ti = format!("/api/v2/dags/c/dagRuns/{rid}/taskInstances/b");

    // Without credentials, and as a viewer, nothing changes.
    for uri in [
        ti.clone(),
        format!("{ti}/dry_run"),
        format!("/api/v2/dags/c/dagRuns/{rid}"),
    ] {
        let body = json!({"new_state": "success"});
        let (s, b) = a.call("PATCH", &uri, None, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}: {b}");
        let (s, b) = a.call("PATCH", &uri, Some(&viewer), Some(body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {b}");
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .contains("(role viewer) may not"),
            "{b}"
        );
    }

    // A dry run lists what would change, in Airflow's shape, and changes nothing.
    let (s, b) = a
        .call(
            "PATCH",
            &format!("{ti}/dry_run"),
            Some(&admin),
            Some(json!({"new_state": "success", "include_downstream": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_has_fields(&b, "TaskInstanceCollectionResponse");
    assert_eq!(b["total_entries"], 2);
    let mut ids: Vec<&str> = b["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["b", "c"]);
    assert_eq!(ti_state(&a.db, &run, "b").await, None);

    // The real thing, with a note.
    let (s, b) = a
        .call(
            "PATCH",
            &ti,
            Some(&admin),
            Some(json!({"new_state": "failed", "note": "broken upstream feed"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_has_fields(&b, "TaskInstanceCollectionResponse");
    assert_eq!(b["total_entries"], 1);
    let t = &b["task_instances"][0];
    assert_has_fields(t, "TaskInstanceResponse");
    assert_eq!(
        (&t["task_id"], &t["state"], &t["note"]),
        (
            &json!("b"),
            &json!("failed"),
            &json!("broken upstream feed")
        )
    );
    assert_eq!(
        (&t["pool"], &t["pool_slots"]),
        (&json!("default_pool"), &json!(1))
    );
    // The downstream weight rule: b carries c's weight too.
    assert_eq!(t["priority_weight"], 2);
    // Its downstream follows the trigger rules.
    assert_eq!(
        ti_state(&a.db, &run, "c").await,
        Some(TaskState::UpstreamFailed)
    );

    // Again: nothing to change is a 409.
    let (s, b) = a
        .call(
            "PATCH",
            &ti,
            Some(&admin),
            Some(json!({"new_state": "failed"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("already in state failed"),
        "{b}"
    );

    // update_mask: only the note changes although a state is sent.
    let (s, b) = a
        .call(
            "PATCH",
            &format!("{ti}?update_mask=note"),
            Some(&admin),
            Some(json!({"new_state": "success", "note": "only this"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["task_instances"][0]["state"], "failed");
    assert_eq!(b["task_instances"][0]["note"], "only this");

    // Bad bodies and unknown things.
    for (uri, body, want, says) in [
        (
            ti.clone(),
            json!({"new_state": "running"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "'running' is not one of",
        ),
        (
            ti.clone(),
            json!({"new_state": null}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "should not be empty",
        ),
        (
            ti.clone(),
            json!({"new_state": "success", "surprise": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "surprise",
        ),
        (
            ti.clone(),
            json!({"note": "x".repeat(1001)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 1000",
        ),
        (
            format!("{ti}?update_mask=nonsense"),
            json!({"new_state": "success"}),
            StatusCode::BAD_REQUEST,
            "nonsense",
        ),
        (
            "/api/v2/dags/c/dagRuns/nope/taskInstances/b".to_string(),
            json!({"new_state": "success"}),
            StatusCode::NOT_FOUND,
            "The DagRun with dag_id: `c` and run_id: `nope` was not found",
        ),
        (
            format!("/api/v2/dags/c/dagRuns/{rid}/taskInstances/zz"),
            json!({"new_state": "success"}),
            StatusCode::NOT_FOUND,
            "task_id: `zz`",
        ),
        (
            "/api/v2/dags/c/dagRuns/nope/taskInstances/b/dry_run".to_string(),
            json!({"new_state": "success"}),
            StatusCode::NOT_FOUND,
            "was not found",
        ),
        (
            format!("/api/v2/dags/c/dagRuns/{rid}"),
            json!({"state": "skipped"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "'queued', 'success' or 'failed'",
        ),
        (
            "/api/v2/dags/c/dagRuns/nope".to_string(),
            json!({"state": "success"}),
            StatusCode::NOT_FOUND,
            "The DagRun with dag_id: `c` and run_id: `nope` was not found",
        ),
    ] {
        let (s, b) = a
            .call("PATCH", &uri, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(s, want, "{uri} {body}: {b}");
        assert!(b["detail"].to_string().contains(says), "{uri} {body}: {b}");
    }
    assert_eq!(ti_state(&a.db, &run, "b").await, Some(TaskState::Failed));

    // The run: failed, then success, with a note, in Airflow's DAGRunResponse.
    let ru = format!("/api/v2/dags/c/dagRuns/{rid}");
    let (s, b) = a
        .call(
            "PATCH",
            &ru,
            Some(&admin),
            Some(json!({"state": "failed", "note": "bad day"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_has_fields(&b, "DAGRunResponse");
    assert_eq!(
        (&b["state"], &b["note"]),
        (&json!("failed"), &json!("bad day"))
    );
    assert_eq!(ti_state(&a.db, &run, "a").await, Some(TaskState::Skipped));
    let (s, b) = a
        .call(
            "PATCH",
            &ru,
            Some(&admin),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["state"], &b["note"]),
        (&json!("success"), &json!("bad day"))
    );
    for t in ["a", "b", "c"] {
        assert_eq!(
            ti_state(&a.db, &run, t).await,
            Some(TaskState::Success),
            "{t}"
        );
    }
    // The GET shows the note too.
    let (_, b) = a.call("GET", &ru, Some(&viewer), None).await;
    assert_eq!(b["note"], "bad day");
}

struct Ui {
    app: axum::Router,
    db: TestDb,
    dag: upiflow_engine::Dag,
    admin: String,
    viewer: String,
}

impl Ui {
    async fn new() -> Ui {
        let db = fresh_db().await;
        let dir = dags_dir(&[("c.toml", CHAIN)]);
        let dag = load(&dir, "c.toml");
        let mut conn = db.pool.acquire().await.unwrap();
        upiflow_engine::store::dags::sync(&mut conn, &dag)
            .await
            .unwrap();
        drop(conn);
        let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
        // Sessions are checked against `users` on every request: the users exist.
        for (user, role) in [("ada", Role::Admin), ("vic", Role::Viewer)] {
            upiflow_web::auth::create_user(&db.pool, user, "a-password", role)
                .await
                .unwrap();
        }
        let cookie = |user: &str, role| {
            let c = session::start(
                &state.token_key,
                user,
                upiflow_web::auth::Grant { role, version: 0 },
                false,
            )
            .unwrap();
            format!("{}={}", c.name(), c.value())
        };
        let admin = cookie("ada", Role::Admin);
        let viewer = cookie("vic", Role::Viewer);
        Ui {
            app: upiflow_web::app(state),
            db,
            dag,
            admin,
            viewer,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Option<String>, String) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap();
        (status, location, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn get(&self, uri: &str, cookie: &str) -> (StatusCode, String) {
        let (s, _, b) = self
            .send(
                Request::get(uri)
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        (s, b)
    }

    async fn post(
        &self,
        uri: &str,
        cookie: &str,
        form: &str,
    ) -> (StatusCode, Option<String>, String) {
        self.send(
            Request::post(uri)
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn csrf(&self, cookie: &str) -> String {
        let (_, body) = self.get("/dags/c", cookie).await;
        let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        let end = body[at..].find('"').unwrap();
        body[at..at + end].to_string()
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_mark_buttons_of_the_run_and_task_pages_mark_for_admins_only() {
    let u = Ui::new().await;
    let run = trigger_at(&u.db, &u.dag, 1).await;
    let run_url = format!("/dags/c/runs/{}", enc(&run.run_id));
    let task_url = format!("{run_url}/tasks/b");

    // The task page shows pool, slots and priority weight, and admins get the buttons.
    let (s, page) = u.get(&task_url, &u.admin).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"ti-pool\">default_pool<"), "{page}");
    assert!(page.contains("id=\"ti-pool-slots\">1<"));
    assert!(page.contains("id=\"ti-priority\">2<"));
    assert!(page.contains("Mark success") && page.contains("Mark failed"));
    let (_, page) = u.get(&task_url, &u.viewer).await;
    assert!(!page.contains("Mark success"));
    let (_, page) = u.get(&run_url, &u.admin).await;
    assert!(
        page.contains("Mark success") && page.contains("Mark queued"),
        "{page}"
    );

    // A viewer, or a wrong CSRF token, changes nothing.
    let theirs = u.csrf(&u.viewer).await;
    let (s, _, _) = u
        .post(
            &format!("{task_url}/mark"),
            &u.viewer,
            &format!("csrf={theirs}&state=success"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = u
        .post(
            &format!("{task_url}/mark"),
            &u.admin,
            "csrf=forged-token-of-the-right-length-xxxxx&state=success",
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = u
        .post(
            &format!("{run_url}/mark"),
            &u.admin,
            &format!("csrf={theirs}&state=success"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(ti_state(&u.db, &run, "b").await, None);

    // The admin marks b and its downstream success.
    let csrf = u.csrf(&u.admin).await;
    let (s, loc, body) = u
        .post(
            &format!("{task_url}/mark"),
            &u.admin,
            &format!("csrf={csrf}&state=success&downstream=on"),
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let loc = loc.unwrap();
    assert!(loc.starts_with(&task_url), "{loc}");
    assert_eq!(ti_state(&u.db, &run, "b").await, Some(TaskState::Success));
    assert_eq!(ti_state(&u.db, &run, "c").await, Some(TaskState::Success));
    let (_, page) = u.get(&loc, &u.admin).await;
    assert!(page.contains("Marked: b, c success."), "{page}");

    // A bad state is a 400 page with the message.
    let (s, _, body) = u
        .post(
            &format!("{task_url}/mark"),
            &u.admin,
            &format!("csrf={csrf}&state=running"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("is not a state a task instance may be marked with"),
        "{body}"
    );
    // Marking an unknown run's task is a 404 page.
    let (s, _, body) = u
        .post(
            "/dags/c/runs/nope/tasks/b/mark",
            &u.admin,
            &format!("csrf={csrf}&state=failed"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("no run `nope` of DAG `c`"), "{body}");

    // The run: failed (a was still to run: skipped).
    let (s, loc, body) = u
        .post(
            &format!("{run_url}/mark"),
            &u.admin,
            &format!("csrf={csrf}&state=failed"),
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(run_state(&u.db, &run).await, RunState::Failed);
    assert_eq!(ti_state(&u.db, &run, "a").await, Some(TaskState::Skipped));
    let (_, page) = u.get(&loc.unwrap(), &u.admin).await;
    assert!(page.contains("Marked the run failed."), "{page}");
}
