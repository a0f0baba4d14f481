//! The `upiflow` binary: validation output, trigger --wait, history, and a worker process
//! killed with SIGKILL mid-task.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use upiflow_engine::state::TryOutcome;

fn upiflow(db_url: Option<&str>, dags: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upiflow"));
    cmd.args(args)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("UPIFLOW_HOME", dags.join(".upiflow"))
        .env("RUST_LOG", "warn");
    match db_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env_remove("DATABASE_URL"),
    };
    cmd.output().expect("run upiflow")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn dags_validate_names_file_line_and_problem_and_exits_1() {
    let dir = dags_dir(&[
        (
            "good.toml",
            "dag_id = \"good\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
        ),
        (
            "bad.toml",
            "dag_id = \"bad\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\nupstream = [\"b\"]\n\
             [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n",
        ),
    ]);
    let out = upiflow(None, &dir, &["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:5: dependency cycle: a -> b -> a"),
        "{err}"
    );
    assert!(text(&out.stdout).contains("ok    good"));

    let out = upiflow(
        None,
        &dir,
        &["dags", "validate", dir.join("good.toml").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `upiflow dags validate ARGS` run from `cwd`, with no database and no DAGs folder set.
fn validate_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .arg("dags")
        .arg("validate")
        .args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("UPIFLOW_DAGS_FOLDER")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run upiflow")
}

#[test]
fn dags_validate_accepts_any_relative_or_absolute_path() {
    let dir = dags_dir(&[
        (
            "mydag.toml",
            "dag_id = \"mine\"\n\
             [[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"true\"]\n\
             [[tasks]]\nid = \"b\"\nkind = \"command\"\ncommand = [\"true\"]\ncwd = \"sql\"\nupstream = [\"a\"]\n\
             [[tasks]]\nid = \"c\"\nkind = \"sql\"\nsql = \"sql/c.sql\"\nupstream = [\"b\"]\n",
        ),
        ("sql/c.sql", "SELECT :ds::date;\n"),
    ]);
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let absolute = dir.join("mydag.toml");
    let up = format!("../{name}/mydag.toml");
    let up_folder = format!("../{name}");
    let sql_dir = dir.join("sql");
    let cases: [(&Path, &str); 7] = [
        (&dir, "mydag.toml"),
        (&dir, "./mydag.toml"),
        (&dir, &up),
        (&dir, absolute.to_str().unwrap()),
        (&dir, "."),
        (&dir, &up_folder),
        (&sql_dir, "../mydag.toml"),
    ];
    for (cwd, arg) in cases {
        let out = validate_in(cwd, &[arg]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "validate {arg} in {}: {}",
            cwd.display(),
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert!(stdout.contains("ok    mine (3 tasks)"), "{arg}: {stdout}");
        assert!(stdout.contains("1 DAG(s) valid"), "{arg}: {stdout}");
    }
    // The bare name used to resolve the folder as the empty path; the folder form too.
    let out = validate_in(&dir, &["nope.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error nope.toml:1: cannot read the file:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dags_validate_reports_every_mistake_of_a_file_in_one_pass() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = validate_in(&fixture, &["many_mistakes.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = upiflow_engine::dag::load_dag_file(
        &fixture.join("many_mistakes.toml"),
        &upiflow_tasks::registry(),
    )
    .expect_err("the fixture is invalid");
    assert_eq!(lines.len(), expected.len() + 1, "{stderr}");
    for (line, e) in lines.iter().zip(&expected) {
        let want = format!("error many_mistakes.toml:{}: {}", e.line, e.message);
        assert_eq!(*line, want);
    }
    assert_eq!(
        lines.last(),
        Some(&format!("{} error(s)", expected.len()).as_str())
    );
    let wanted_lines = [2, 3, 4, 5, 6, 9, 10, 13, 19, 20, 21, 24, 25, 31, 32, 37];
    let got: Vec<usize> = expected.iter().map(|e| e.line).collect();
    assert_eq!(got, wanted_lines, "{stderr}");
    assert!(!stderr.contains("0 0 24 * * *"), "{stderr}");
    assert!(!stderr.contains("working directory ''"), "{stderr}");
}

#[tokio::test]
async fn trigger_wait_exits_by_the_runs_outcome_and_history_shows_tries() {
    let db = fresh_db().await;
    let dir = dags_dir(&[
        (
            "ok.toml",
            "dag_id = \"ok\"\n[params]\nn = 1\n[[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"echo\", \"hello\"]\n",
        ),
        (
            "ko.toml",
            "dag_id = \"ko\"\n[[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo oops >&2; exit 3\"]\n",
        ),
    ]);
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let url = db.url.clone();
    let d = dir.clone();
    let (ok, ko, bad_conf, history, runs) = tokio::task::spawn_blocking(move || {
        (
            upiflow(Some(&url), &d, &["trigger", "ok", "--wait"]),
            upiflow(Some(&url), &d, &["trigger", "ko", "--wait"]),
            upiflow(
                Some(&url),
                &d,
                &["trigger", "ok", "--conf", "{\"n\": \"one\"}"],
            ),
            upiflow(Some(&url), &d, &["history", "ko", "a"]),
            upiflow(Some(&url), &d, &["runs", "ok"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("success"));
    assert_eq!(ko.status.code(), Some(1));
    assert_eq!(bad_conf.status.code(), Some(1));
    assert!(
        text(&bad_conf.stderr).contains("conf param `n` must be an integer"),
        "{}",
        text(&bad_conf.stderr)
    );
    let h = text(&history.stdout);
    assert!(
        h.contains("failed") && h.contains("command exited with"),
        "{h}"
    );
    assert!(
        text(&runs.stdout).contains("manual__"),
        "{}",
        text(&runs.stdout)
    );
    // A run triggered from the CLI names the OS user who triggered it, as the audit log does.
    let who: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT triggering_user_name FROM dag_runs WHERE dag_id = 'ok' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        !who.is_empty()
            && who
                .iter()
                .all(|w| w.as_deref().is_some_and(|w| !w.is_empty())),
        "{who:?}"
    );
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_worker_killed_mid_task_has_its_try_failed_and_retried() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "k.toml",
        "dag_id = \"k\"\n[[tasks]]\nid = \"slow\"\nkind = \"command\"\nretries = 1\nretry_delay = \"0s\"\n\
         command = [\"sh\", \"-c\", \"if [ $UPIFLOW_TRY_NUMBER = 1 ]; then sleep 2; fi\"]\n",
    )]);
    let mut victim = Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(["worker", "--heartbeat", "200ms"])
        .env("DATABASE_URL", &db.url)
        .env("UPIFLOW_DAGS_FOLDER", &dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dag = load(&dir, "k.toml");
    let run = upiflow_engine::ops::trigger(
        &db.pool,
        &upiflow_engine::store::dags::VersionCache::new(),
        &dag,
        &Default::default(),
    )
    .await
    .unwrap();
    // Wait until the victim runs the task, then kill it without warning.
    let mut running = false;
    for _ in 0..200 {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state::text FROM task_instances WHERE run_pk = $1")
                .bind(run.id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if state.as_deref() == Some("running") {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running, "the worker process never started the task");
    victim.kill().unwrap();
    victim.wait().unwrap();

    let (stop, handle) = spawn_worker(&db.pool, fast_worker("survivor"));
    let state = tokio::time::timeout(
        Duration::from_secs(30),
        upiflow_engine::ops::wait_for_run(&db.pool, run.id, |_| {}),
    )
    .await
    .expect("the run recovers")
    .unwrap();
    assert_eq!(state, upiflow_engine::state::RunState::Success);
    let tries: Vec<(i32, Option<TryOutcome>, Option<String>, String)> = sqlx::query_as(
        "SELECT try_number, outcome, error, worker FROM task_tries ORDER BY try_number",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[0].1, Some(TryOutcome::Zombie));
    assert!(
        tries[0]
            .2
            .as_deref()
            .unwrap()
            .contains("stopped heart-beating")
    );
    assert_eq!(tries[1].1, Some(TryOutcome::Success));
    assert!(tries[1].3.starts_with("survivor"));
    assert_ne!(tries[0].3, tries[1].3);
    stop.cancel();
    handle.await.unwrap();
}

/// Child processes that are killed when the test ends, whatever happens.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn spawn_part(url: &str, dags: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn two_schedulers_and_two_worker_processes_make_exactly_one_run_per_interval() {
    use chrono::{DurationRound, Utc};
    let db = fresh_db().await;
    let hour = chrono::Duration::hours(1);
    let start = Utc::now().duration_trunc(hour).unwrap() - hour * 220;
    let dir = dags_dir(&[(
        "ha.toml",
        &format!(
            "dag_id = \"ha\"\nschedule = \"@hourly\"\nstart_date = \"{}\"\ncatchup = true\nmax_active_runs = 16\n\
             [[tasks]]\nid = \"a\"\nkind = \"noop\"\n[[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n",
            start.to_rfc3339()
        ),
    )]);
    let _procs = Procs(vec![
        spawn_part(&db.url, &dir, &["scheduler"]),
        spawn_part(&db.url, &dir, &["scheduler"]),
        spawn_part(&db.url, &dir, &["worker", "--heartbeat", "500ms"]),
        spawn_part(&db.url, &dir, &["worker", "--heartbeat", "500ms"]),
    ]);
    let expected = || (Utc::now().duration_trunc(hour).unwrap() - start).num_hours();
    let mut done = false;
    for _ in 0..1200 {
        let (succeeded, unfinished): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'success'), count(*) FILTER (WHERE state <> 'success') FROM dag_runs",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if succeeded == expected() && unfinished == 0 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "the catch-up did not finish");
    let (runs, first, last): (i64, chrono::DateTime<Utc>, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT count(*), min(logical_date), max(logical_date) FROM dag_runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(runs >= 220);
    assert_eq!(first, start);
    assert_eq!(
        last,
        start + hour * (runs as i32 - 1),
        "one run per interval, no gaps"
    );
    let (tis, not_once, tries, workers): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM task_instances),
                (SELECT count(*) FROM task_instances WHERE state <> 'success' OR try_number <> 1),
                (SELECT count(*) FROM task_tries),
                (SELECT count(DISTINCT worker) FROM task_tries)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (tis, not_once, tries),
        (runs * 2, 0, runs * 2),
        "each task instance ran exactly once"
    );
    assert_eq!(workers, 2, "both workers took part");
}

#[tokio::test]
async fn backfill_wait_shows_progress_and_exits_by_the_outcome() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "bf.toml",
        "dag_id = \"bf\"\nschedule = \"@daily\"\n[[tasks]]\nid = \"a\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"test $UPIFLOW_DS != 2024-01-04\"]\n",
    )]);
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let url = db.url.clone();
    let d = dir.clone();
    let (ok, ko, missed) = tokio::task::spawn_blocking(move || {
        (
            upiflow(
                Some(&url),
                &d,
                &[
                    "backfill",
                    "bf",
                    "--from",
                    "2024-01-01",
                    "--to",
                    "2024-01-03",
                    "--wait",
                ],
            ),
            upiflow(
                Some(&url),
                &d,
                &[
                    "backfill",
                    "bf",
                    "--from",
                    "2024-01-03",
                    "--to",
                    "2024-01-05",
                    "--wait",
                ],
            ),
            upiflow(Some(&url), &d, &["dags", "missed", "bf"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("3 succeeded, 0 failed"),
        "{}",
        text(&ok.stdout)
    );
    assert_eq!(ko.status.code(), Some(1));
    assert!(
        text(&ko.stdout).contains("2 succeeded, 1 failed"),
        "{}",
        text(&ko.stdout)
    );
    assert!(text(&missed.stdout).contains("0 missed interval(s)"));
    stop.cancel();
    handle.await.unwrap();
}

/// Issue #10: the database is the one source of truth for the version new runs use. A CLI
/// trigger or backfill from a folder holding an older file used to rewrite
/// `dags.latest_hash`, so the next scheduled runs ran the old version.
#[tokio::test]
async fn a_trigger_from_a_stale_dags_folder_never_moves_the_current_version_backwards() {
    use chrono::{TimeZone, Utc};
    use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};

    let db = fresh_db().await;
    let v_a = "dag_id = \"v\"\nschedule = \"@daily\"\nstart_date = \"2024-01-01\"\ncatchup = true\n\
               [[tasks]]\nid = \"a\"\nkind = \"noop\"\n";
    let v_b = format!("{v_a}[[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n");
    let current = dags_dir(&[("v.toml", v_b.as_str())]);
    let stale = dags_dir(&[("v.toml", v_a)]);
    let hash_a = load(&stale, "v.toml").version_hash();
    let hash_b = load(&current, "v.toml").version_hash();
    assert_ne!(hash_a, hash_b);

    // The scheduler's DAG-file sync records version B.
    let mut s = Scheduler::new(
        db.pool.clone(),
        upiflow_tasks::registry(),
        SchedulerConfig::new(current.clone()),
    );
    s.sync_files().await.unwrap();
    let latest = || async {
        sqlx::query_scalar::<_, String>("SELECT latest_hash FROM dags WHERE dag_id = 'v'")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    assert_eq!(latest().await, hash_b);

    // A user triggers and backfills from a folder that still holds version A.
    let url = db.url.clone();
    let d = stale.clone();
    let (trigger, backfill) = tokio::task::spawn_blocking(move || {
        (
            upiflow(
                Some(&url),
                &d,
                &["trigger", "v", "--logical-date", "2024-01-05"],
            ),
            upiflow(
                Some(&url),
                &d,
                &[
                    "backfill",
                    "v",
                    "--from",
                    "2024-01-08",
                    "--to",
                    "2024-01-09",
                ],
            ),
        )
    })
    .await
    .unwrap();
    for (what, out) in [("trigger", &trigger), ("backfill", &backfill)] {
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("warning:")
                && err.contains("differs from the version of `v` the database holds")
                && err.contains(&hash_b[..12])
                && err.contains(&hash_a[..12]),
            "{what} warns that the local file is not the current version: {err}"
        );
    }
    assert_eq!(
        latest().await,
        hash_b,
        "the CLI moved latest_hash backwards"
    );
    // The CLI's file is kept as a version (content-addressed), just not made current.
    let versions: Vec<String> =
        sqlx::query_scalar("SELECT hash FROM dag_versions WHERE dag_id = 'v' ORDER BY hash")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut both = vec![hash_a.clone(), hash_b.clone()];
    both.sort();
    assert_eq!(versions, both);

    // The next scheduled run uses B, and so did the manual and backfill runs.
    let pass = s
        .schedule_at(Utc.with_ymd_and_hms(2024, 1, 2, 1, 0, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(pass.created, 1);
    let runs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT r.run_type::text, r.dag_hash, count(ti.id) FROM dag_runs r
         JOIN task_instances ti ON ti.run_pk = r.id
         GROUP BY r.id ORDER BY r.logical_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let want = |kind: &str| (kind.to_string(), hash_b.clone(), 2);
    assert_eq!(
        runs,
        [
            want("scheduled"),
            want("manual"),
            want("backfill"),
            want("backfill")
        ]
    );
    assert_eq!(latest().await, hash_b);
}

/// `backfill --max-active-runs N` (Airflow's flag): the backfill keeps its own limit, under
/// the DAG's, and never has more than N runs running at once; 0 is refused.
#[tokio::test]
async fn backfill_max_active_runs_caps_its_runs_at_once() {
    let db = fresh_db().await;
    let dir = dags_dir(&[(
        "cap.toml",
        "dag_id = \"cap\"\nschedule = \"@daily\"\nmax_active_runs = 8\n[[tasks]]\nid = \"a\"\n\
         kind = \"command\"\ncommand = [\"sleep\", \"0.3\"]\n",
    )]);
    let (stop, handle) = spawn_worker(&db.pool, fast_worker("w"));
    let url = db.url.clone();
    let d = dir.clone();
    let (zero, ok) = tokio::task::spawn_blocking(move || {
        let args = |n: &'static str| {
            [
                "backfill",
                "cap",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-06",
                "--max-active-runs",
                n,
                "--wait",
            ]
        };
        (
            upiflow(Some(&url), &d, &args("0")),
            upiflow(Some(&url), &d, &args("2")),
        )
    })
    .await
    .unwrap();
    assert_eq!(zero.status.code(), Some(2), "{}", text(&zero.stderr));
    assert!(
        text(&zero.stderr).contains("--max-active-runs"),
        "{}",
        text(&zero.stderr)
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("6 interval(s)")
            && text(&ok.stdout).contains("at most 2 at once"),
        "{}",
        text(&ok.stdout)
    );
    assert!(text(&ok.stdout).contains("6 succeeded, 0 failed"));
    let limit: Option<i32> = sqlx::query_scalar("SELECT max_active_runs FROM backfills")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(limit, Some(2));
    // The most runs running at once, from their recorded start and end.
    let most: i64 = sqlx::query_scalar(
        "SELECT max(n) FROM (SELECT (SELECT count(*) FROM dag_runs o
                                     WHERE o.start_date <= r.start_date AND o.end_date > r.start_date) AS n
                             FROM dag_runs r) x",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(most, 2, "runs at once");
    stop.cancel();
    handle.await.unwrap();
}
