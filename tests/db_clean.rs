//! `upiflow db clean` through the real binary on a real database: the dry run changes
//! nothing, a clean deletes exactly the old finished runs (with their task instances, tries and
//! logs) except the latest run and the latest non-manual run of each DAG, `--tables` limits it, bad input changes
//! nothing, confirmation is asked as Airflow does, and batches delete everything.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use sqlx::PgPool;
use upiflow_engine::clean::{self, Table};

const TABLES: [&str; 13] = [
    "dags",
    "dag_versions",
    "dag_runs",
    "task_instances",
    "task_tries",
    "task_logs",
    "event_log",
    "notifications",
    "notification_attempts",
    "missed_intervals",
    "backfills",
    "scheduler_loops",
    "workers",
];

fn upiflow(db_url: &str, dags: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upiflow"));
    cmd.args(args)
        .env("DATABASE_URL", db_url)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("UPIFLOW_HOME", dags.join(".upiflow"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run upiflow");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().expect("upiflow output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Row counts per table; `event_log` without the audit rows `db clean` itself writes (checked
/// by [`audited`]).
async fn snapshot(pool: &PgPool) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for t in TABLES {
        let filter = if t == "event_log" {
            " WHERE event <> 'cli_cleanup_tables'"
        } else {
            ""
        };
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}{filter}"))
            .fetch_one(pool)
            .await
            .unwrap();
        out.insert(t, n);
    }
    out
}

/// The outcomes of the audit rows of `db clean`, oldest first.
async fn audited(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT outcome FROM event_log WHERE event = 'cli_cleanup_tables' AND source = 'cli'
         ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Registers a DAG of two tasks; returns its version hash.
async fn add_dag(pool: &PgPool, dag_id: &str) -> String {
    let toml = format!(
        "dag_id = \"{dag_id}\"\nschedule = \"@daily\"\nstart_date = \"2024-01-01\"\n\
         [[tasks]]\nid = \"t1\"\nkind = \"noop\"\n[[tasks]]\nid = \"t2\"\nkind = \"noop\"\nupstream = [\"t1\"]\n"
    );
    let dag =
        upiflow_engine::dag::load_dag_str(Path::new("x.toml"), &toml, &upiflow_tasks::registry())
            .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &dag)
        .await
        .unwrap()
}

/// A run `age_days` old (by its start, or its queued time if `started` is false) with two
/// task instances, one try each and two log lines per try.
#[allow(clippy::too_many_arguments)]
async fn add_run(
    pool: &PgPool,
    dag_id: &str,
    hash: &str,
    run_id: &str,
    run_type: &str,
    state: &str,
    age_days: f64,
    started: bool,
    backfill: Option<i64>,
) {
    sqlx::query(
        "WITH r AS (
           INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start,
                                 data_interval_end, run_type, state, dag_hash, queued_at,
                                 start_date, end_date, backfill_id)
           SELECT $1, $2, t, t, t, $3::run_type, $4::run_state, $5, t - interval '1 minute',
                  CASE WHEN $7 THEN t END,
                  CASE WHEN $7 AND $4 IN ('success', 'failed') THEN t + interval '1 minute' END,
                  $8
           FROM (SELECT now() - $6 * interval '1 day' AS t) x
           RETURNING id, dag_id, run_id, start_date),
         ti AS (
           INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, state, try_number,
                                       max_tries, worker, start_date, end_date)
           SELECT r.id, r.dag_id, r.run_id, k, 'success', 1, 1, 'w-old', r.start_date,
                  r.start_date
           FROM r, UNNEST(ARRAY['t1', 't2']) AS k
           RETURNING id),
         tr AS (
           INSERT INTO task_tries (ti_id, try_number, worker, started_at, ended_at, outcome)
           SELECT id, 1, 'w-old', now() - $6 * interval '1 day', now() - $6 * interval '1 day',
                  'success'
           FROM ti RETURNING id)
         INSERT INTO task_logs (try_id, at, stream, line)
         SELECT id, now(), 'stdout', 'line ' || n FROM tr, generate_series(1, 2) AS n",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(run_type)
    .bind(state)
    .bind(hash)
    .bind(age_days)
    .bind(started)
    .bind(backfill)
    .execute(pool)
    .await
    .unwrap();
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

/// The history every test starts from (ages in days; the cutoff is 30 days).
async fn fixture(pool: &PgPool) {
    let a = add_dag(pool, "a").await;
    let b = add_dag(pool, "b").await;
    let c = add_dag(pool, "c").await;
    exec(
        pool,
        "INSERT INTO backfills (id, dag_id, from_date, to_date, created_by, state, total,
                                created_at, completed_at)
         VALUES (1, 'b', now() - interval '68 days', now() - interval '68 days', 't', 'success',
                 1, now() - interval '69 days', now() - interval '68 days'),
                (2, 'a', now() - interval '90 days', now() - interval '89 days', 't', 'success',
                 2, now() - interval '91 days', now() - interval '88 days'),
                (3, 'a', now() - interval '5 days', now() - interval '4 days', 't', 'success',
                 2, now() - interval '5 days', now() - interval '4 days')",
    )
    .await;
    // a: old finished runs go; old running and queued runs and the young run stay.
    for (id, ty, state, age, started) in [
        ("a_old1", "scheduled", "success", 60.0, true),
        ("a_old2", "scheduled", "success", 59.0, true),
        ("a_old3", "scheduled", "success", 58.0, true),
        ("a_oldfail", "scheduled", "failed", 57.0, true),
        ("a_running", "scheduled", "running", 50.0, true),
        ("a_queued", "scheduled", "queued", 45.0, false),
        ("a_manual", "manual", "success", 40.0, true),
        ("a_young", "scheduled", "success", 1.0, true),
        // Finished without ever starting (marked while queued): aged by queued_at.
        ("a_marked", "scheduled", "failed", 33.0, false),
    ] {
        add_run(pool, "a", &a, id, ty, state, age, started, None).await;
    }
    // b: all old; the manual run is its newest run and the backfill run its newest non-manual
    // one (Airflow's keep-last ignores manual runs): both are kept.
    add_run(
        pool,
        "b",
        &b,
        "b_old1",
        "scheduled",
        "success",
        70.0,
        true,
        None,
    )
    .await;
    add_run(
        pool,
        "b",
        &b,
        "b_old2",
        "scheduled",
        "failed",
        69.0,
        true,
        None,
    )
    .await;
    add_run(
        pool,
        "b",
        &b,
        "b_bf",
        "backfill",
        "success",
        68.0,
        true,
        Some(1),
    )
    .await;
    add_run(
        pool, "b", &b, "b_manual", "manual", "success", 35.0, true, None,
    )
    .await;
    // c: only manual runs, all old: the newest (c_m2) is kept.
    add_run(pool, "c", &c, "c_m1", "manual", "success", 80.0, true, None).await;
    add_run(pool, "c", &c, "c_m2", "manual", "failed", 79.0, true, None).await;
    exec(
        pool,
        "INSERT INTO event_log (dttm, event, owner, source)
         SELECT now() - n * interval '10 days', 'trigger', 'u', 'cli' FROM generate_series(0, 5) n;
         INSERT INTO notifications (id, dedupe_key, event, notifier, spec, dag_id, run_id,
                                    payload, created_at, delivered_at, gave_up_at)
         VALUES ('00000000-0000-0000-0000-000000000001', 'k1', 'on_failure', 'n', '{}', 'a', 'r',
                 '{}', now() - interval '40 days', now() - interval '40 days', NULL),
                ('00000000-0000-0000-0000-000000000002', 'k2', 'on_failure', 'n', '{}', 'a', 'r',
                 '{}', now() - interval '40 days', NULL, now() - interval '39 days'),
                ('00000000-0000-0000-0000-000000000003', 'k3', 'on_failure', 'n', '{}', 'a', 'r',
                 '{}', now() - interval '40 days', NULL, NULL),
                ('00000000-0000-0000-0000-000000000004', 'k4', 'on_failure', 'n', '{}', 'a', 'r',
                 '{}', now() - interval '2 days', now() - interval '2 days', NULL);
         INSERT INTO notification_attempts (notification_id, attempt, at, ok)
         SELECT id, n, created_at, n = 2 FROM notifications, generate_series(1, 2) n;
         INSERT INTO missed_intervals (dag_id, logical_date, data_interval_start,
                                       data_interval_end, reason, recorded_at)
         VALUES ('a', '2020-01-01', '2020-01-01', '2020-01-02', 'paused', now() - interval '40 days'),
                ('a', '2020-01-02', '2020-01-02', '2020-01-03', 'paused', now() - interval '3 days');
         INSERT INTO scheduler_loops VALUES ('old', now() - interval '40 days', 0.1),
                                            ('new', now(), 0.1);
         INSERT INTO workers (worker_id, hostname, pid, started_at, heartbeat_at, stopped_at)
         VALUES ('w-old', 'h', 1, now() - interval '90 days', now() - interval '40 days',
                 now() - interval '40 days'),
                ('w-new', 'h', 2, now(), now(), NULL);",
    )
    .await;
}

async fn run_ids(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT run_id FROM dag_runs ORDER BY run_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The tokens of the output line that starts with `table`.
fn row<'a>(out: &'a str, table: &str) -> Vec<&'a str> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|t| t.first() == Some(&table))
        .unwrap_or_else(|| panic!("no line for {table} in:\n{out}"))
}

#[tokio::test]
async fn dry_run_changes_nothing_and_prints_the_counts_per_table() {
    let db = fresh_db().await;
    fixture(&db.pool).await;
    let dir = dags_dir(&[]);
    let before = snapshot(&db.pool).await;
    let out = upiflow(
        &db.url,
        &dir,
        &["db", "clean", "--older-than", "30d", "--dry-run"],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(
        snapshot(&db.pool).await,
        before,
        "a dry run changes nothing"
    );
    // a: old1-3, oldfail, manual, marked; b: old1, old2; c: c_m1.
    assert_eq!(
        row(&stdout, "dag_runs")[1..9],
        [
            "9",
            "task_instances",
            "18,",
            "task_tries",
            "18,",
            "task_logs",
            "36",
            "start_date"
        ]
    );
    assert_eq!(row(&stdout, "event_log")[1], "3", "{stdout}");
    assert_eq!(
        row(&stdout, "notifications")[1..4],
        ["2", "notification_attempts", "4"]
    );
    assert_eq!(row(&stdout, "missed_intervals")[1], "1");
    assert_eq!(
        row(&stdout, "backfills")[1],
        "1",
        "only the one without runs"
    );
    assert_eq!(row(&stdout, "scheduler_loops")[1], "1");
    assert_eq!(row(&stdout, "workers")[1], "1");
    assert!(stdout.contains("nothing was deleted"), "{stdout}");
    assert!(
        audited(&db.pool).await.is_empty(),
        "a dry run is not audited"
    );
}

#[tokio::test]
async fn clean_deletes_exactly_the_old_finished_runs_and_keeps_the_latest_and_the_young() {
    let db = fresh_db().await;
    fixture(&db.pool).await;
    let dir = dags_dir(&[]);
    let out = upiflow(
        &db.url,
        &dir,
        &["db", "clean", "--older-than", "30d", "--yes"],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(
        run_ids(&db.pool).await,
        [
            "a_queued",
            "a_running",
            "a_young",
            "b_bf",
            "b_manual",
            "c_m2"
        ],
        "queued/running runs, the young run, each DAG's latest run and latest non-manual run stay"
    );
    let after = snapshot(&db.pool).await;
    // Each remaining run keeps its 2 instances, 2 tries and 4 log lines; nothing orphaned.
    assert_eq!(after["task_instances"], 12);
    assert_eq!(after["task_tries"], 12);
    assert_eq!(after["task_logs"], 24);
    assert_eq!(after["event_log"], 3, "the rows of 0, 10 and 20 days stay");
    assert_eq!(audited(&db.pool).await, ["success"], "the clean is audited");
    let notifications: Vec<String> =
        sqlx::query_scalar("SELECT dedupe_key FROM notifications ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        notifications,
        ["k3", "k4"],
        "undelivered and young notifications stay"
    );
    assert_eq!(after["notification_attempts"], 4);
    assert_eq!(after["missed_intervals"], 1);
    let backfills: Vec<i64> = sqlx::query_scalar("SELECT id FROM backfills ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        backfills,
        [1, 3],
        "a backfill with a kept run stays, so does a young one"
    );
    let loops: Vec<String> = sqlx::query_scalar("SELECT scheduler_id FROM scheduler_loops")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(loops, ["new"]);
    let workers: Vec<String> = sqlx::query_scalar("SELECT worker_id FROM workers")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(workers, ["w-new"]);
    assert_eq!(after["dags"], 3);
    assert_eq!(after["dag_versions"], 3);
    // The summary names what went.
    assert_eq!(
        row(&stdout, "dag_runs")[1..8],
        [
            "9",
            "task_instances",
            "18,",
            "task_tries",
            "18,",
            "task_logs",
            "36"
        ]
    );
    // A second clean finds nothing.
    let again = upiflow(
        &db.url,
        &dir,
        &["db", "clean", "--older-than", "30d", "--yes"],
        None,
    );
    assert!(again.status.success());
    assert!(
        text(&again.stdout).contains("nothing to clean"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(snapshot(&db.pool).await, after);
}

#[tokio::test]
async fn tables_limits_what_is_touched() {
    let db = fresh_db().await;
    fixture(&db.pool).await;
    let dir = dags_dir(&[]);
    let before = snapshot(&db.pool).await;
    let out = upiflow(
        &db.url,
        &dir,
        &[
            "db",
            "clean",
            "--older-than",
            "30d",
            "--yes",
            "--tables",
            "event_log,workers",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = snapshot(&db.pool).await;
    for t in TABLES {
        let want = match t {
            "event_log" => before[t] - 3,
            "workers" => before[t] - 1,
            _ => before[t],
        };
        assert_eq!(after[t], want, "{t}");
    }
    // --clean-before-timestamp (Airflow's flag) works the same way.
    let ts = (chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339();
    let out = upiflow(
        &db.url,
        &dir,
        &[
            "db",
            "clean",
            "--clean-before-timestamp",
            &ts,
            "-y",
            "--tables",
            "dag_runs",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(run_ids(&db.pool).await.len(), 6);
    assert_eq!(
        snapshot(&db.pool).await["notifications"],
        before["notifications"]
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    let db = fresh_db().await;
    fixture(&db.pool).await;
    let dir = dags_dir(&[]);
    let before = snapshot(&db.pool).await;
    for (args, want) in [
        (
            &["--older-than", "abc", "--yes"][..],
            "invalid value 'abc' for '--older-than",
        ),
        (&["--yes"][..], "--older-than"),
        (
            &["--older-than", "30d", "--tables", "dag_runs,nope", "--yes"][..],
            "no table `nope` to clean; valid tables: dag_runs, event_log, notifications, missed_intervals, backfills, scheduler_loops, workers",
        ),
        (
            &[
                "--older-than",
                "30d",
                "--clean-before-timestamp",
                "2020-01-01",
                "--yes",
            ][..],
            "cannot be used with",
        ),
        (
            &["--clean-before-timestamp", "yesterday", "--yes"][..],
            "--clean-before-timestamp",
        ),
        (
            &["--older-than", "30d", "--batch-size", "0", "--yes"][..],
            "--batch-size",
        ),
    ] {
        let mut full = vec!["db", "clean"];
        full.extend_from_slice(args);
        let out = upiflow(&db.url, &dir, &full, None);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(snapshot(&db.pool).await, before, "{args:?} changed rows");
    }
    // Refused attempts are audited as failed, where they got as far as parsing (clap's own
    // refusals never reach the command).
    let audits = audited(&db.pool).await;
    assert!(!audits.is_empty(), "failed cleans are audited");
    assert!(audits.iter().all(|o| o == "failed"), "{audits:?}");
}

#[tokio::test]
async fn without_yes_it_asks_and_deletes_only_on_delete_rows() {
    let db = fresh_db().await;
    fixture(&db.pool).await;
    let dir = dags_dir(&[]);
    let before = snapshot(&db.pool).await;
    let args = [
        "db",
        "clean",
        "--older-than",
        "30d",
        "--tables",
        "event_log",
    ];
    for answer in [None, Some("yes\n")] {
        let out = upiflow(&db.url, &dir, &args, answer);
        assert!(!out.status.success(), "{answer:?}");
        assert!(
            text(&out.stdout).contains("Enter 'delete rows'"),
            "{}",
            text(&out.stdout)
        );
        assert!(text(&out.stderr).contains("User did not confirm"));
        assert_eq!(snapshot(&db.pool).await, before);
    }
    let out = upiflow(&db.url, &dir, &args, Some("delete rows\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        snapshot(&db.pool).await["event_log"],
        before["event_log"] - 3
    );
}

async fn hundred_old_runs(pool: &PgPool) {
    let h = add_dag(pool, "many").await;
    for i in 0..100 {
        let id = format!("old{i:03}");
        add_run(
            pool,
            "many",
            &h,
            &id,
            "manual",
            "success",
            40.0 + f64::from(i),
            true,
            None,
        )
        .await;
    }
    add_run(
        pool,
        "many",
        &h,
        "young",
        "scheduled",
        "success",
        1.0,
        true,
        None,
    )
    .await;
}

#[tokio::test]
async fn a_clean_in_batches_of_10_deletes_all_100_old_runs() {
    let db = fresh_db().await;
    hundred_old_runs(&db.pool).await;
    let dir: PathBuf = dags_dir(&[]);
    let out = upiflow(
        &db.url,
        &dir,
        &[
            "db",
            "clean",
            "--older-than",
            "30d",
            "--yes",
            "--batch-size",
            "10",
            "--tables",
            "dag_runs",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(run_ids(&db.pool).await, ["young"]);
    let s = snapshot(&db.pool).await;
    assert_eq!(
        (s["task_instances"], s["task_tries"], s["task_logs"]),
        (2, 2, 4)
    );
}

#[tokio::test]
async fn each_batch_is_at_most_batch_size_rows_and_reports_its_progress() {
    let db = fresh_db().await;
    hundred_old_runs(&db.pool).await;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
    let counted = clean::count(&db.pool, cutoff, &[Table::DagRuns])
        .await
        .unwrap();
    assert_eq!(counted[0].rows, 100);
    let mut batches = Vec::new();
    let done = clean::clean(
        &db.pool,
        cutoff,
        &[Table::DagRuns],
        NonZeroU32::new(7).unwrap(),
        |b| batches.push(b.rows),
    )
    .await
    .unwrap();
    assert_eq!(batches.len(), 15, "{batches:?}");
    assert!(batches.iter().all(|&n| n <= 7), "{batches:?}");
    assert_eq!(batches.iter().sum::<u64>(), 100);
    assert_eq!(done[0].rows, 100);
    assert_eq!(
        done[0].dependents,
        [
            ("task_instances", 200),
            ("task_tries", 200),
            ("task_logs", 400)
        ]
    );
    assert_eq!(run_ids(&db.pool).await, ["young"]);
}
