//! Test support: a fresh database per test (on the Postgres that scripts/test.sh starts),
//! DAG folders written to temp dirs, and in-process workers.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

// ---- Real servers over real sockets ------------------------------------------------------

/// One HTTP answer, and how long the server took from the request's first byte to the
/// answer's last.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub took: Duration,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn retry_after(&self) -> u64 {
        self.header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {self:?}"))
            .parse()
            .unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one HTTP/1.1 request from `from` (a loopback address of the client's choosing, so
/// tests can be several clients) and reads the whole answer.
pub async fn send(to: SocketAddr, from: IpAddr, head: &str, body: &str) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = sock.connect(to).await.unwrap();
    let req = format!(
        "{head}\r\nHost: {to}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let start = Instant::now();
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let took = start.elapsed();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
        took,
    }
}

/// A `upiflow web` process on a port of its choosing (the address it prints), killed when
/// dropped.
pub struct WebProcess {
    child: std::process::Child,
    /// `http://ADDR`.
    pub base: String,
    pub addr: SocketAddr,
}

impl WebProcess {
    /// Starts `upiflow web --bind 127.0.0.1:0` on `db_url` with `envs` set.
    pub fn start(db_url: &str, envs: &[(&str, &std::ffi::OsStr)]) -> WebProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
            .args(["web", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", db_url)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start upiflow web");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("upiflow web said where it listens")
                .unwrap();
            if let Some(url) = line.strip_prefix("upiflow web: ") {
                break url.trim().to_string();
            }
        };
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("an address");
        WebProcess { child, base, addr }
    }
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod airflow_doc;
#[allow(unused_imports)]
pub use airflow_doc::*;

/// One request to `app` (an optional `Authorization` value and JSON body): its status and
/// its JSON answer (`null` when the answer is not JSON).
pub async fn call_app(
    app: &axum::Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;
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
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}
