//! Existing Airflow tooling keeps working: Apache Airflow's official Python client
//! (apache-airflow-client 3.x from PyPI, installed by scripts/test.sh into
//! `target/airflow-client-venv`) drives a real upiflow server, scheduler and worker through
//! `tests/airflow_client/check.py`. The client validates every answer with Airflow's own
//! models, so a missing field or a wrong type fails here.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_web::auth::{self, Role};

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("UPIFLOW_AIRFLOW_CLIENT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/airflow-client-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: scripts/test.sh installs apache-airflow-client there",
        venv.display()
    );
    venv
}

/// Serves upiflow's web on a free local port until the script ends, runs
/// `tests/airflow_client/SCRIPT` with the client's environment (`UPIFLOW_URL`, the `airflow`
/// admin, and `env`) and fails with its output unless it printed `ok` last.
async fn run_client_script(db: &TestDb, script: &str, env: &[(&str, String)], within: Duration) {
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    let listener = upiflow_web::listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(upiflow_web::serve(listener, state, async move {
        s.cancelled().await
    }));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/airflow_client")
        .join(script);
    let out = tokio::time::timeout(
        within,
        tokio::process::Command::new(python())
            .arg(&path)
            .env("UPIFLOW_URL", &url)
            .env("UPIFLOW_USER", "airflow")
            .env("UPIFLOW_PASSWORD", "airflow-password")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client script finishes")
    .expect("python runs");
    stop.cancel();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "Airflow's client failed ({script}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

#[tokio::test]
async fn airflows_python_client_drives_upiflow() {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "airflow", "airflow-password", Role::Admin)
        .await
        .unwrap();
    let dags = dags_dir(&[(
        "hello.toml",
        "dag_id = \"hello\"\nschedule = \"@daily\"\nstart_date = \"2026-01-01\"\ncatchup = false\n\
         max_active_runs = 4\n\
         [params]\nwho = \"world\"\n\
         [[tasks]]\nid = \"greet\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo hello from $UPIFLOW_DAG_ID\"]\n\
         [[tasks]]\nid = \"after\"\nkind = \"noop\"\nupstream = [\"greet\"]\n",
    )]);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut cfg = SchedulerConfig::new(dags.clone());
    cfg.poll = Duration::from_millis(200);
    tokio::spawn(Scheduler::new(db.pool.clone(), upiflow_tasks::registry(), cfg).run(stop.clone()));
    let (worker_stop, _) = spawn_worker(&db.pool, fast_worker("airflow-client"));
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dags")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_client_script(&db, "check.py", &[], Duration::from_secs(240)).await;
    stop.cancel();
    worker_stop.cancel();
}

/// Pools through the client (`tests/airflow_client/pools.py`): create, duplicate, get,
/// patch with `update_mask`, resize `default_pool`, list with filters, delete and refusals.
#[tokio::test]
async fn airflows_python_client_manages_pools() {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "airflow", "airflow-password", Role::Admin)
        .await
        .unwrap();
    run_client_script(&db, "pools.py", &[], Duration::from_secs(120)).await;
}

/// Connections and variables through the client (`tests/airflow_client/connections.py`): create,
/// refusals, get with the password redacted, patch (a redacted password sent back keeps the
/// stored one), test against this Postgres and a closed port, list, delete; variables with a
/// sensitive key redacted.
#[tokio::test]
async fn airflows_python_client_manages_connections_and_variables() {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "airflow", "airflow-password", Role::Admin)
        .await
        .unwrap();
    // The connection under test is this test's own database (the dev cluster trusts it).
    let pg = url::Url::parse(&db.url).unwrap();
    let env = [
        ("PG_HOST", pg.host_str().unwrap().to_string()),
        ("PG_PORT", pg.port().unwrap_or(5432).to_string()),
        ("PG_USER", pg.username().to_string()),
        ("PG_DB", pg.path().trim_start_matches('/').to_string()),
    ];
    run_client_script(&db, "connections.py", &env, Duration::from_secs(120)).await;
}

/// The audit log through the client (`tests/airflow_client/event_logs.py`): changes made with
/// the client read back with `EventLogApi` (filters, paging, order, one by id, refusals).
#[tokio::test]
async fn airflows_python_client_reads_the_event_log() {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "airflow", "airflow-password", Role::Admin)
        .await
        .unwrap();
    run_client_script(&db, "event_logs.py", &[], Duration::from_secs(120)).await;
}

/// The breadth of the API through the client (`tests/airflow_client/breadth.py`): tags, DAG
/// stats, import errors, warnings, plugins, providers, assets, tasks, batch run lists, clear
/// and delete of a run, dependencies, try details, backfill dry runs, and a 501 for XComs.
#[tokio::test]
async fn airflows_python_client_covers_each_served_tag() {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "airflow", "airflow-password", Role::Admin)
        .await
        .unwrap();
    let dags = dags_dir(&[
        (
            "hello.toml",
            "dag_id = \"hello\"\nschedule = \"@daily\"\nstart_date = \"2026-01-01\"\n\
             catchup = false\ntags = [\"upi\", \"cli\"]\n\
             [[tasks]]\nid = \"greet\"\nkind = \"noop\"\n\
             [[tasks]]\nid = \"after\"\nkind = \"noop\"\nupstream = [\"greet\"]\n",
        ),
        ("broken.toml", "dag_id = \"broken\"\nschedule = \n"),
    ]);
    let mut scheduler = Scheduler::new(
        db.pool.clone(),
        upiflow_tasks::registry(),
        SchedulerConfig::new(dags.clone()),
    );
    scheduler.sync_files().await.unwrap();
    let dag = load(&dags, "hello.toml");
    let run = upiflow_engine::ops::trigger(
        &db.pool,
        &upiflow_engine::store::dags::VersionCache::new(),
        &dag,
        &upiflow_engine::ops::Trigger {
            logical_date: Some("2026-03-01T00:00:00Z".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (worker_stop, _) = spawn_worker(&db.pool, fast_worker("airflow-client-breadth"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        scheduler.schedule().await.unwrap();
        let state: String = sqlx::query_scalar("SELECT state::text FROM dag_runs WHERE id = $1")
            .bind(run.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if state == "success" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run ended {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run_id: String = sqlx::query_scalar("SELECT run_id FROM dag_runs WHERE id = $1")
        .bind(run.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    run_client_script(
        &db,
        "breadth.py",
        &[("UPIFLOW_RUN_ID", run_id)],
        Duration::from_secs(120),
    )
    .await;
    worker_stop.cancel();
}
