//! Notifications end to end, with real processes and real receivers: `upiflow scheduler` and
//! `upiflow worker` against a fresh database, a webhook receiver (axum) on 127.0.0.1, a real
//! SMTP server (aiosmtpd, installed by scripts/test.sh into target/aiosmtpd-venv) and a
//! command notifier; and `upiflow dags validate` on bad notifier and deadline keys.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use common::{dags_dir, fresh_db};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One POST as the receiver got it.
#[derive(Debug, Clone)]
struct Post {
    idempotency_key: Option<String>,
    authorization: Option<String>,
    body: Value,
}

#[derive(Clone)]
struct Hook {
    got: Arc<Mutex<Vec<Post>>>,
    /// Answer 500 to everything (a receiver that is up but broken).
    failing: bool,
}

async fn receive(
    State(h): State<Hook>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, &'static str) {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    h.got.lock().unwrap().push(Post {
        idempotency_key: header("idempotency-key"),
        authorization: header("authorization"),
        body,
    });
    if h.failing {
        (StatusCode::INTERNAL_SERVER_ERROR, "receiver broken")
    } else {
        (StatusCode::OK, "ok")
    }
}

/// A webhook receiver on 127.0.0.1:`port`, recording every POST to /hook into `got`.
struct Receiver {
    port: u16,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// On `port`, or (0) on a port of the system's choosing.
    async fn start(port: u16, got: Arc<Mutex<Vec<Post>>>, failing: bool) -> Self {
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(Hook { got, failing });
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await
                .unwrap();
        });
        Self { port, stop, handle }
    }

    /// Stops listening and closes every connection (kept-alive ones included).
    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap();
    }
}

/// Child processes, killed when the test ends, even on failure.
struct Procs(Vec<tokio::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.start_kill();
        }
    }
}

fn part(url: &str, dags: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("UPIFLOW_HOME", dags.join(".upiflow"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start upiflow")
}

/// Two schedulers (both deliver: each notification is claimed by one) and a worker for
/// `dags`, retrying deliveries fast.
fn cluster(url: &str, dags: &Path, env: &[(&str, &str)]) -> Procs {
    let mut env = env.to_vec();
    env.push(("UPIFLOW_NOTIFY_BACKOFF", "200ms"));
    env.push(("UPIFLOW_BASE_URL", "http://upiflow.test:8080/"));
    Procs(vec![
        part(url, dags, &["scheduler"], &env),
        part(url, dags, &["scheduler"], &env),
        part(
            url,
            dags,
            &["worker", "--heartbeat", "500ms", "--poll-interval", "200ms"],
            &env,
        ),
    ])
}

fn upiflow(db_url: Option<&str>, dags: &Path, args: &[&str]) -> std::process::Output {
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

async fn trigger(url: &str, dags: &Path, dag_id: &str) -> String {
    let (url, dags, dag_id) = (url.to_string(), dags.to_path_buf(), dag_id.to_string());
    let out =
        tokio::task::spawn_blocking(move || upiflow(Some(&url), &dags, &["trigger", &dag_id]))
            .await
            .unwrap();
    assert!(out.status.success(), "trigger: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

async fn run_state(pool: &PgPool, dag_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT state::text FROM dag_runs WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The run's (run_id, logical_date as stored).
async fn the_run(pool: &PgPool, dag_id: &str) -> (String, chrono::DateTime<chrono::Utc>) {
    sqlx::query_as("SELECT run_id, logical_date FROM dag_runs WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A task that fails twice, then succeeds (counting its tries in `counter`).
fn flaky_dag(counter: &Path, extra: &str) -> String {
    format!(
        r#"dag_id = "flaky"
{extra}
[defaults]
retries = 2
retry_delay = "1s"
on_retry = ["hook"]
on_success = ["hook"]
on_failure = ["hook"]

[[tasks]]
id = "t"
kind = "command"
command = ["sh", "-c", "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; [ $n -ge 2 ] || {{ echo try $n failed >&2; exit 3; }}"]
"#,
        c = counter.display()
    )
}

fn hook_notifiers(port: u16) -> String {
    format!(
        r#"[[notifiers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
timeout = "5s"
headers = {{ Authorization = "Bearer {{{{ conn.hooktoken.password }}}}" }}
"#
    )
}

fn encode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn retries_successes_and_failures_notify_once_each_with_their_fields() {
    let db = fresh_db().await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(0, got.clone(), false).await;
    let port = receiver.port;
    let scratch = dags_dir(&[]);
    std::fs::create_dir_all(&scratch).unwrap();
    let log = scratch.join("log.jsonl");
    let dir = dags_dir(&[
        // Shared notifiers: the webhook, authenticated from a connection.
        ("notifiers.toml", &hook_notifiers(port)),
        ("flaky.toml", &flaky_dag(&scratch.join("count"), "")),
        (
            "broken.toml",
            &format!(
                r#"dag_id = "broken"
on_failure = ["hook", "log"]

[[notifiers]]
name = "log"
kind = "command"
command = ["sh", "-c", "cat >> {log}"]

[[tasks]]
id = "boom"
kind = "command"
command = ["sh", "-c", "echo the disk is full >&2; exit 7"]
on_failure = ["hook"]
"#,
                log = log.display()
            ),
        ),
    ]);
    let _procs = cluster(
        &db.url,
        &dir,
        &[("UPIFLOW_CONN_HOOKTOKEN", "http://bot:s3cret@hooks.example")],
    );
    trigger(&db.url, &dir, "flaky").await;
    trigger(&db.url, &dir, "broken").await;
    wait_for(
        "both runs to finish and 6 notifications delivered",
        Duration::from_secs(60),
        || async {
            run_state(&db.pool, "flaky").await.as_deref() == Some("success")
                && run_state(&db.pool, "broken").await.as_deref() == Some("failed")
                && count(
                    &db.pool,
                    "SELECT count(*) FROM notifications WHERE delivered_at IS NOT NULL",
                )
                .await
                    == 6
        },
    )
    .await;
    // Nothing else is pending or was enqueued.
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM notifications").await,
        6
    );
    let posts = got.lock().unwrap().clone();
    receiver.stop().await;

    let (flaky_run, flaky_date) = the_run(&db.pool, "flaky").await;
    let of =
        |dag: &str| -> Vec<&Post> { posts.iter().filter(|p| p.body["dag_id"] == dag).collect() };
    // The flaky task: two retries then a success, each once, in try order.
    let flaky = of("flaky");
    let events: Vec<(String, i64)> = flaky
        .iter()
        .map(|p| {
            (
                p.body["event"].as_str().unwrap().to_string(),
                p.body["try_number"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("on_retry".to_string(), 1),
            ("on_retry".to_string(), 2),
            ("on_success".to_string(), 3)
        ]
    );
    let ti_url = format!(
        "http://upiflow.test:8080/dags/flaky/runs/{}/tasks/t",
        encode(&flaky_run)
    );
    for p in &flaky {
        let b = &p.body;
        assert_eq!(b["run_id"], flaky_run.as_str());
        assert_eq!(b["task_id"], "t");
        assert_eq!(b["url"], ti_url.as_str());
        assert_eq!(
            b["logical_date"].as_str().unwrap(),
            flaky_date.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        );
        assert!(b["data_interval_start"].is_string() && b["data_interval_end"].is_string());
        // The stable id is also the Idempotency-Key; the secret came from the connection.
        assert_eq!(p.idempotency_key.as_deref(), b["id"].as_str());
        assert_eq!(p.authorization.as_deref(), Some("Bearer s3cret"));
        assert!(b["text"].as_str().unwrap().ends_with(&ti_url), "{b}");
    }
    assert_eq!(flaky[0].body["state"], "up_for_retry");
    assert!(
        flaky[0].body["error"].as_str().unwrap().contains("exit"),
        "{}",
        flaky[0].body
    );
    let first = flaky[0].body["text"].as_str().unwrap();
    assert!(
        first.starts_with(&format!(
            ":large_orange_circle: Task t will be retried in flaky run {flaky_run}, try 1 failed: "
        )),
        "{first}"
    );
    assert_eq!(flaky[2].body["state"], "success");
    assert!(flaky[2].body["error"].is_null());

    // The failing run: the task's on_failure and the DAG's, once each.
    let (broken_run, _) = the_run(&db.pool, "broken").await;
    let broken = of("broken");
    assert_eq!(broken.len(), 2, "{broken:?}");
    let task = broken.iter().find(|p| p.body["task_id"] == "boom").unwrap();
    assert_eq!(task.body["event"], "on_failure");
    assert_eq!(task.body["try_number"], 1);
    assert_eq!(task.body["state"], "failed");
    assert!(
        task.body["error"].as_str().unwrap().contains("exit"),
        "{}",
        task.body
    );
    let run = broken.iter().find(|p| p.body["task_id"].is_null()).unwrap();
    assert_eq!(run.body["event"], "on_failure");
    assert_eq!(run.body["state"], "failed");
    assert_eq!(run.body["error"], "failed tasks: boom");
    assert_eq!(
        run.body["url"],
        format!(
            "http://upiflow.test:8080/dags/broken/runs/{}",
            encode(&broken_run)
        )
        .as_str()
    );
    // The command notifier got the DAG-level failure as JSON on its stdin, the same message.
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "on_failure");
    assert_eq!(lines[0]["dag_id"], "broken");
    assert!(lines[0]["task_id"].is_null());
    assert_eq!(lines[0]["run_id"], broken_run.as_str());
    // Every delivery was one attempt, recorded.
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM notification_attempts WHERE ok AND attempt = 1"
        )
        .await,
        6
    );
}

#[tokio::test]
async fn a_receiver_down_for_a_while_loses_no_notification() {
    let db = fresh_db().await;
    let got = Arc::new(Mutex::new(Vec::new()));
    // Up, then killed before anything is sent.
    let first = Receiver::start(0, got.clone(), false).await;
    let port = first.port;
    first.stop().await;
    let scratch = dags_dir(&[]);
    std::fs::create_dir_all(&scratch).unwrap();
    let dir = dags_dir(&[
        ("notifiers.toml", &hook_notifiers(port)),
        ("flaky.toml", &flaky_dag(&scratch.join("count"), "")),
    ]);
    let _procs = cluster(
        &db.url,
        &dir,
        &[("UPIFLOW_CONN_HOOKTOKEN", "http://bot:s3cret@hooks.example")],
    );
    trigger(&db.url, &dir, "flaky").await;
    wait_for("the run to finish", Duration::from_secs(60), || async {
        run_state(&db.pool, "flaky").await.as_deref() == Some("success")
    })
    .await;
    wait_for(
        "failed attempts of all three",
        Duration::from_secs(30),
        || async {
            count(
                &db.pool,
                "SELECT count(DISTINCT notification_id) FROM notification_attempts WHERE NOT ok",
            )
            .await
                == 3
        },
    )
    .await;
    // Down a little longer, then back on the same port.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(got.lock().unwrap().is_empty());
    let receiver = Receiver::start(port, got.clone(), false).await;
    wait_for("all three delivered", Duration::from_secs(30), || async {
        count(
            &db.pool,
            "SELECT count(*) FROM notifications WHERE delivered_at IS NOT NULL",
        )
        .await
            == 3
    })
    .await;
    receiver.stop().await;
    let ids: BTreeSet<String> = sqlx::query_scalar("SELECT id::text FROM notifications")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let received: BTreeSet<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.body["id"].as_str().unwrap().to_string())
        .collect();
    // At least once: every notification arrived (a duplicate would be allowed).
    assert_eq!(received, ids);
    let (failed, detail): (i64, String) =
        sqlx::query_as("SELECT count(*), min(detail) FROM notification_attempts WHERE NOT ok")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(failed >= 3);
    assert!(
        detail.contains("error sending request") || detail.contains("onnect"),
        "{detail}"
    );
    // Each notification's attempts are numbered 1..n, the last one the delivery.
    let bad: i64 = count(
        &db.pool,
        "SELECT count(*) FROM notifications n WHERE attempts <> (SELECT count(*) FROM notification_attempts a WHERE a.notification_id = n.id)
            OR NOT (SELECT ok FROM notification_attempts a WHERE a.notification_id = n.id ORDER BY attempt DESC LIMIT 1)
            OR last_error IS NULL",
    )
    .await;
    assert_eq!(bad, 0);
}

#[tokio::test]
async fn a_failing_receiver_never_fails_the_task_and_is_given_up_after_its_attempts() {
    let db = fresh_db().await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(0, got.clone(), true).await;
    let port = receiver.port;
    let dir = dags_dir(&[(
        "ok.toml",
        &format!(
            r#"dag_id = "ok"
on_success = ["hook", "secretless"]

[[notifiers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"

[[notifiers]]
name = "secretless"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
conn = "no_such_conn"

[[tasks]]
id = "a"
kind = "command"
command = ["true"]
on_success = ["hook"]
"#
        ),
    )]);
    let _procs = cluster(&db.url, &dir, &[("UPIFLOW_NOTIFY_MAX_ATTEMPTS", "3")]);
    trigger(&db.url, &dir, "ok").await;
    wait_for(
        "every notification given up",
        Duration::from_secs(60),
        || async {
            count(
                &db.pool,
                "SELECT count(*) FROM notifications WHERE gave_up_at IS NOT NULL",
            )
            .await
                == 3
        },
    )
    .await;
    receiver.stop().await;
    assert_eq!(run_state(&db.pool, "ok").await.as_deref(), Some("success"));
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM task_instances WHERE state = 'success'"
        )
        .await,
        1
    );
    let attempts: Vec<(String, i32, bool, String)> = sqlx::query_as(
        "SELECT n.notifier, a.attempt, a.ok, a.detail FROM notification_attempts a
         JOIN notifications n ON n.id = a.notification_id ORDER BY n.notifier, n.task_id NULLS LAST, a.attempt",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(attempts.len(), 9, "{attempts:?}");
    for (notifier, _, ok, detail) in &attempts {
        assert!(!ok);
        if notifier == "hook" {
            assert_eq!(detail, "HTTP 500 Internal Server Error: receiver broken");
        } else {
            assert!(
                detail.starts_with("connection `no_such_conn` does not exist"),
                "{detail}"
            );
        }
    }
    // The broken receiver saw each hook notification three times, never the secretless one.
    assert_eq!(got.lock().unwrap().len(), 6);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM notifications WHERE delivered_at IS NOT NULL OR last_error IS NULL").await,
        0
    );
}

/// Quoted-printable to text (soft line breaks joined, `=XX` bytes decoded); text that is not
/// quoted-printable comes back as it was.
fn qp_decode(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if b[i] == b'='
            && let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn aiosmtpd_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aiosmtpd-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test.sh (it installs aiosmtpd), or `source scripts/lib/aiosmtpd.sh; ensure_aiosmtpd`",
        venv.display()
    );
    venv
}

/// A task failure by email through a real SMTP server on loopback (aiosmtpd, writing a
/// maildir). Plain SMTP (`tls = "none"`): STARTTLS and SMTPS need a certificate the test
/// does not have, so they are not exercised here.
#[tokio::test]
async fn a_task_failure_is_emailed_with_its_subject_recipients_and_link() {
    let db = fresh_db().await;
    let port = free_port();
    let scratch = dags_dir(&[]);
    let maildir = scratch.join("mail");
    std::fs::create_dir_all(&scratch).unwrap();
    let _smtp = Procs(vec![
        tokio::process::Command::new(aiosmtpd_python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd"),
    ]);
    wait_for("aiosmtpd to listen", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let dir = dags_dir(&[(
        "mailed.toml",
        &format!(
            r#"dag_id = "mailed"

[[notifiers]]
name = "oncall_mail"
kind = "email"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "upiflow <upiflow@example.com>"
to = ["oncall@example.com", "lead@example.com"]

[[tasks]]
id = "daily_summary"
kind = "command"
command = ["sh", "-c", "exit 2"]
on_failure = ["oncall_mail"]
"#
        ),
    )]);
    let _procs = cluster(&db.url, &dir, &[]);
    trigger(&db.url, &dir, "mailed").await;
    wait_for("the email delivered", Duration::from_secs(60), || async {
        count(
            &db.pool,
            "SELECT count(*) FROM notifications WHERE delivered_at IS NOT NULL",
        )
        .await
            == 1
    })
    .await;
    let (run_id, _) = the_run(&db.pool, "mailed").await;
    let detail: String = sqlx::query_scalar("SELECT detail FROM notification_attempts WHERE ok")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(detail.starts_with("SMTP 250"), "{detail}");
    let files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(maildir.join(d)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    // Headers unfolded (continuation lines joined), the body's quoted-printable undone.
    let (head, body) = raw.split_once("\n\n").unwrap();
    let head = head
        .replace("\r\n", "\n")
        .replace("\n ", " ")
        .replace("\n\t", " ");
    let body = qp_decode(body);
    let header = |name: &str| -> String {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} header in {raw}"))
            .to_string()
    };
    assert_eq!(
        header("Subject"),
        format!("upiflow alert: daily_summary failed in mailed ({run_id})")
    );
    assert_eq!(header("To"), "oncall@example.com, lead@example.com");
    assert_eq!(header("X-RcptTo"), "oncall@example.com, lead@example.com");
    assert!(header("From").contains("upiflow@example.com"));
    let id: String = sqlx::query_scalar("SELECT id::text FROM notifications")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(header("Message-ID"), format!("<{id}@upiflow>"));
    let link = format!(
        "http://upiflow.test:8080/dags/mailed/runs/{}/tasks/daily_summary",
        encode(&run_id)
    );
    assert!(body.contains(&link), "{raw}");
    assert!(
        body.contains("error: command exited with status 2"),
        "{raw}"
    );
    assert!(body.contains(&format!("run_id: {run_id}")), "{raw}");
}

#[test]
fn dags_validate_names_file_and_line_of_every_bad_notifier_and_deadline() {
    let dir = dags_dir(&[
        (
            "notifiers.toml",
            "[[notifiers]]\nname = \"pager\"\nkind = \"pagerduty\"\n\n[[notifiers]]\nname = \"ok\"\nkind = \"command\"\ncommand = [\"true\"]\n",
        ),
        (
            "bad.toml",
            r#"dag_id = "bad"
on_failure = ["nobody"]
on_success = ["pager"]
on_retry = ["ok"]
deadline = { reference = "yesterday", interval = "0s", when = 1 }
on_deadline_miss = ["ok"]

[[notifiers]]
name = "ftp"
kind = "webhook"
url = "ftp://example.com/x"

[[notifiers]]
name = "ftp"
kind = "command"
command = []

[[notifiers]]
name = "mail"
kind = "email"
tls = "ssl"
colour = "red"

[[tasks]]
id = "a"
kind = "noop"
on_retry = ["ok", "ghost"]
"#,
        ),
        (
            "late.toml",
            "dag_id = \"late\"\ndeadline = { reference = \"queued_at\", interval = \"soon\" }\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
        ),
        (
            "unlate.toml",
            "dag_id = \"unlate\"\non_deadline_miss = [\"ok\"]\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
        ),
    ]);
    let out = upiflow(None, &dir, &["dags", "validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let f = |name: &str| dir.join(name).display().to_string();
    let want = [
        format!(
            "{}:3: unknown notifier kind `pagerduty` (known kinds: webhook, email, command)",
            f("notifiers.toml")
        ),
        format!(
            "{}:2: `on_failure` names unknown notifier `nobody` (known notifiers: ok)",
            f("bad.toml")
        ),
        format!(
            "{}:3: `on_success` names notifier `pager`, whose definition in {} has errors",
            f("bad.toml"),
            f("notifiers.toml")
        ),
        format!(
            "{}:4: `on_retry` at the top level: a run is not retried, its tasks are (put on_retry in [defaults] to apply it to every task)",
            f("bad.toml")
        ),
        format!(
            "{}:5: unknown deadline reference `yesterday` (expected one of data_interval_end, logical_date, queued_at)",
            f("bad.toml")
        ),
        format!(
            "{}:5: deadline `interval` must be more than zero",
            f("bad.toml")
        ),
        format!(
            "{}:5: unknown key `when` in `deadline` (known keys: reference, interval)",
            f("bad.toml")
        ),
        format!(
            "{}:11: notifier `ftp`: webhook url `ftp://example.com/x` must be an http(s) URL: the scheme is `ftp`, not http or https",
            f("bad.toml")
        ),
        format!(
            "{}:14: duplicate notifier name `ftp` (first defined at line 9)",
            f("bad.toml")
        ),
        format!(
            "{}:16: notifier `ftp`: `command` must be a non-empty argv (e.g. [\"sh\", \"-c\", \"cat >> /tmp/n\"])",
            f("bad.toml")
        ),
        format!(
            "{}:18: notifier `mail` of kind `email` needs `host`",
            f("bad.toml")
        ),
        format!(
            "{}:18: notifier `mail` of kind `email` needs `from`",
            f("bad.toml")
        ),
        format!(
            "{}:18: notifier `mail` of kind `email` needs `to`",
            f("bad.toml")
        ),
        format!(
            "{}:21: notifier `mail`: unknown tls mode `ssl` (expected one of starttls, tls, none)",
            f("bad.toml")
        ),
        format!(
            "{}:22: unknown key `colour` in notifier `mail` of kind `email` (known keys: name, kind, timeout, host, port, tls, from, to, conn)",
            f("bad.toml")
        ),
        format!(
            "{}:27: `on_retry` names unknown notifier `ghost` (known notifiers: ok)",
            f("bad.toml")
        ),
        format!(
            "{}:2: bad duration for `deadline.interval`: `soon`: expected number at 0 (write e.g. \"30s\", \"5m\", \"1h 30m\")",
            f("late.toml")
        ),
        format!(
            "{}:2: `on_deadline_miss` needs a `deadline` (e.g. deadline = {{ reference = \"data_interval_end\", interval = \"2h\" }})",
            f("unlate.toml")
        ),
    ];
    for w in &want {
        assert!(
            err.contains(&format!("error {w}\n")),
            "missing:\n{w}\nin:\n{err}"
        );
    }
    assert!(
        err.contains(&format!("{} error(s)", want.len())),
        "every problem, and only those:\n{err}"
    );
    // A notifiers.toml is not a DAG file.
    assert!(!err.contains("dag_id"), "{err}");
}

#[tokio::test]
async fn dags_validate_flags_a_notifier_connection_that_does_not_exist() {
    let db = fresh_db().await;
    let dir = dags_dir(&[
        (
            "notifiers.toml",
            "[[notifiers]]\nname = \"mail\"\nkind = \"email\"\nhost = \"smtp.example.com\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\nconn = \"smtp_creds\"\n",
        ),
        (
            "d.toml",
            "dag_id = \"d\"\n[[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://hooks.example/x\"\nheaders = { X-Token = \"{{ conn.slack.password }}\" }\n[defaults]\non_failure = [\"mail\", \"hook\"]\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
        ),
    ]);
    let url = db.url.clone();
    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        upiflow(Some(&url), &d, &["dags", "validate", d.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    let f = |name: &str| dir.join(name).display().to_string();
    for w in [
        format!(
            "error {}:6: notifier `hook`: connection `slack` does not exist",
            f("d.toml")
        ),
        format!(
            "error {}:7: notifier `mail`: connection `smtp_creds` does not exist",
            f("notifiers.toml")
        ),
    ] {
        assert!(err.contains(&w), "missing {w} in:\n{err}");
    }
    // Without the database the same files are valid (connections may come later, as in Airflow).
    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        upiflow(None, &d, &["dags", "validate", d.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_deadline_is_its_reference_time_plus_its_interval_and_absent_keys_keep_the_hash() {
    use chrono::TimeZone;
    use upiflow_engine::dag::{DeadlineReference, load_dag_str};
    let registry = upiflow_tasks::registry();
    let plain = "dag_id = \"d\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n";
    let with = "dag_id = \"d\"\ndeadline = { reference = \"data_interval_end\", interval = \"2h 30m\" }\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n";
    let d = load_dag_str(Path::new("d.toml"), plain, &registry).unwrap();
    let at = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(d.deadline_at(at, at, at), None);
    // Serialised without the new keys: existing DAG versions keep their hash.
    let json = d.to_json();
    for key in [
        "notifiers",
        "on_failure",
        "on_success",
        "on_deadline_miss",
        "deadline",
    ] {
        assert!(json.get(key).is_none(), "{key} in {json}");
    }
    assert!(json["tasks"][0].get("on_retry").is_none());
    let d = load_dag_str(Path::new("d.toml"), with, &registry).unwrap();
    let deadline = d.deadline.clone().unwrap();
    assert_eq!(deadline.reference, DeadlineReference::DataIntervalEnd);
    assert_eq!(deadline.interval, Duration::from_secs(9000));
    let end = at + chrono::Duration::days(1);
    assert_eq!(
        d.deadline_at(at, end, at),
        Some(end + chrono::Duration::minutes(150))
    );
    // The stored version reads back the same.
    let back = upiflow_engine::Dag::from_json(d.to_json()).unwrap();
    assert_eq!(back.deadline, d.deadline);
}
