//! Test support: a fresh database per test (on the Postgres that scripts/test.sh starts),
//! DAG folders written to temp dirs, and in-process workers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use upiflow_engine::Dag;
use upiflow_engine::executor::{Worker, WorkerConfig};
use upiflow_engine::store;

pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
}

/// A new, migrated database of its own for one test.
pub async fn fresh_db() -> TestDb {
    let admin = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a Postgres superuser (scripts/test.sh starts one)");
    let (_, url) = store::create_scratch_database(&admin, "t")
        .await
        .expect("create test database");
    let pool = store::connect(&url, 20)
        .await
        .expect("connect to test database");
    store::migrate(&pool).await.expect("migrate");
    TestDb { pool, url }
}

/// The web's state as the binary builds it: the UPI product plugged in (the payments
/// dashboard and the ingest metrics).
pub async fn web_state(pool: &PgPool) -> upiflow_web::AppState {
    upiflow_web::AppState::new(pool.clone())
        .await
        .expect("web state")
        .with_product(upiflow_tasks::upi::product::UpiProduct::shared())
}

/// A temp folder with the given files (paths relative to it).
pub fn dags_dir(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upiflow-test-{}", uuid::Uuid::new_v4().simple()));
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

pub fn load(dir: &Path, file: &str) -> Dag {
    upiflow_engine::dag::load_dag_file(&dir.join(file), &upiflow_tasks::registry())
        .unwrap_or_else(|e| panic!("DAG should be valid: {e:?}"))
}

pub fn fast_worker(name: &str) -> WorkerConfig {
    WorkerConfig {
        worker_id: format!("{name}-{}", uuid::Uuid::new_v4().simple()),
        concurrency: 16,
        heartbeat: Duration::from_millis(200),
        zombie_threshold: Duration::from_secs(2),
        poll: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Starts an in-process worker; cancel the token to stop it.
pub fn spawn_worker(
    pool: &PgPool,
    cfg: WorkerConfig,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let worker = Worker::new(pool.clone(), upiflow_tasks::registry(), cfg);
    let t = token.clone();
    let handle = tokio::spawn(async move {
        worker.run(t).await.expect("worker runs cleanly");
    });
    (token, handle)
}

/// An HTTP Basic `Authorization` header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
