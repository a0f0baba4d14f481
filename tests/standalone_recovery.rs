//! `upiflow standalone` as real processes: killed with SIGKILL, it comes back in the same
//! folder with its data, stops or adopts what its first life left running, and leaves no
//! process of that life behind; a second one in a folder that is in use is refused.
//! Needs Postgres's server binaries (initdb, pg_ctl) and tansu; no DATABASE_URL is used.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::PgPool;
use upiflow_engine::cluster::process;

const TOPIC: &str = "upi_transactions";

/// A folder with one DAG, where standalone keeps `.upiflow`.
fn folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upiflow-sa-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("dags")).unwrap();
    std::fs::write(
        dir.join("dags/hello.toml"),
        "dag_id = \"hello\"\nschedule = \"none\"\n[[tasks]]\nid = \"say\"\nkind = \"command\"\ncommand = [\"echo\", \"hello\"]\n",
    )
    .unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One life of `upiflow standalone` in `dir`.
struct Standalone {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn upiflow(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upiflow"));
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("UPIFLOW_HOME")
        .env_remove("UPIFLOW_DAGS_FOLDER")
        .env("RUST_LOG", "warn");
    cmd
}

impl Standalone {
    fn start(dir: &Path, life: &str, extra: &[&str], path: Option<&str>) -> Self {
        let port = free_port();
        let log = dir.join(format!("standalone-{life}.log"));
        let mut cmd = upiflow(dir);
        cmd.args(["standalone", "--bind", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        Self {
            child: cmd.spawn().expect("start upiflow standalone"),
            port,
            log,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its web answers the health check.
    fn wait_healthy(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("standalone exited ({status}):\n{}", self.stderr());
            }
            if health(self.port) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "standalone not healthy within 90 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sigkill(&mut self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, as systemd or `kill` sends it; returns whether it exited 0 in time.
    fn sigterm(&mut self) -> bool {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM).unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Standalone {
    /// A failed test must not leave it running (its servers go with `Cleanup`).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn health(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /api/v2/monitor/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// Kills whatever a failed test left running in `dir` (its own processes only); declared
/// before the `Standalone`s so that it runs after they are dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in processes_in(&self.0.join(".upiflow")) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for pid in processes_in(&self.0.join(".upiflow/postgres")) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Live processes whose working directory is `dir` (Postgres works in its data directory,
/// standalone's broker in standalone's).
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process::alive(pid) && process::cwd(pid).as_deref() == Some(&dir))
        .collect()
}

fn named(pids: &[u32], comm: &str) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|&p| process::comm(p).as_deref() == Some(comm))
        .collect()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn postmaster_pid(dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dir.join(".upiflow/postgres/postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// (pid, port, state) of the recorded broker.
fn broker_record(dir: &Path) -> (u32, u16, String) {
    let text = std::fs::read_to_string(dir.join(".upiflow/broker.pid")).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].to_string(),
    )
}

async fn db(dir: &Path) -> PgPool {
    let url = std::fs::read_to_string(dir.join(".upiflow/database_url")).unwrap();
    upiflow_engine::store::connect(url.trim(), 2).await.unwrap()
}

/// Raw rows per partition of `topic`: (count, distinct offsets, min, max).
async fn raw_offsets(pool: &PgPool, topic: &str) -> BTreeMap<i32, (i64, i64, i64, i64)> {
    let rows: Vec<(i32, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT kafka_partition, count(*), count(DISTINCT kafka_offset), min(kafka_offset), max(kafka_offset)
         FROM raw_upi_transactions WHERE kafka_topic = $1 GROUP BY 1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(p, n, d, lo, hi)| (p, (n, d, lo, hi)))
        .collect()
}

async fn raw_count(pool: &PgPool, topic_like: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM raw_upi_transactions WHERE kafka_topic LIKE $1")
        .bind(topic_like)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn clean_txns(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT txn_id FROM clean_upi_transactions")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn wait_for_rows(pool: &PgPool, topic_like: &str, n: i64, s: &Standalone) {
    let started = Instant::now();
    while raw_count(pool, topic_like).await < n {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "fewer than {n} rows of {topic_like} ingested within 90 s:\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every partition of `topic` holds offsets 0..n with none missing and none twice, and the
/// stored next offset is just past them (read in one snapshot).
async fn assert_contiguous(pool: &PgPool, topic: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rows: Vec<(i32, i64, i64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT r.kafka_partition, count(*), count(DISTINCT r.kafka_offset), min(r.kafka_offset),
                max(r.kafka_offset), max(o.next_offset)
         FROM raw_upi_transactions r
         LEFT JOIN ingest_offsets o ON o.kafka_topic = r.kafka_topic AND o.kafka_partition = r.kafka_partition
         WHERE r.kafka_topic = $1 GROUP BY 1",
    )
    .bind(topic)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(!rows.is_empty(), "no rows of {topic}");
    for (p, n, distinct, lo, hi, next) in rows {
        assert_eq!(
            (lo, distinct, hi),
            (0, n, n - 1),
            "partition {p}: a gap or a duplicate"
        );
        assert_eq!(next, Some(n), "partition {p}: stored offset");
    }
}

fn require_tansu() {
    assert!(
        upiflow_tasks::upi::broker::find_tansu().is_some(),
        "tansu is not installed: {}",
        upiflow_tasks::upi::broker::INSTALL
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_killed_with_sigkill_comes_back_with_its_data_and_leaves_nothing_behind() {
    require_tansu();
    let dir = folder();
    let _cleanup = Cleanup(dir.clone());
    let demo = ["--demo", "--demo-rate", "200"];

    // First life: a run and some ingested payments.
    let mut first = Standalone::start(&dir, "1", &demo, None);
    first.wait_healthy();
    let out = upiflow(&dir)
        .args(["trigger", "hello", "--wait"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trigger --wait: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        first.stderr()
    );
    let pool = db(&dir).await;
    wait_for_rows(&pool, TOPIC, 300, &first).await;
    let old_postmaster = postmaster_pid(&dir);
    let (old_broker, _, state) = broker_record(&dir);
    assert_eq!(state, "ready");

    first.sigkill();
    // Its broker dies with it (parent-death signal); its Postgres cannot (pg_ctl daemonised
    // it), which is the case the next start must handle.
    assert!(
        process::wait_gone(old_broker, Duration::from_secs(5)).await,
        "the first life's broker outlived it"
    );
    assert!(
        process::alive(old_postmaster),
        "the first life's Postgres is gone"
    );
    // What the first life stored, read once nothing writes any more.
    let before_rows = raw_count(&pool, TOPIC).await;
    let before_clean = clean_txns(&pool).await;
    assert!(before_rows >= 300);
    pool.close().await;

    // Second life, same folder.
    let mut second = Standalone::start(&dir, "2", &demo, None);
    second.wait_healthy();
    let err = second.stderr();
    assert!(
        err.contains(&format!(
            "an earlier standalone in this folder did not exit cleanly; stopped the Postgres (pid {old_postmaster}) it left running"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "the Kafka broker of an earlier standalone is gone (pid {old_broker} is not running)"
        )),
        "{err}"
    );
    assert!(err.contains("a new Kafka broker starts empty"), "{err}");
    assert!(
        !process::alive(old_postmaster),
        "the old Postgres still runs"
    );

    // The first life's data is intact.
    let pool = db(&dir).await;
    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT run_type::text, state::text FROM dag_runs WHERE dag_id = 'hello'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(runs, vec![("manual".to_string(), "success".to_string())]);
    // Its broker's messages are kept, every one, under the retired topic name.
    assert_eq!(
        raw_count(&pool, &format!("{TOPIC}@retired-%")).await,
        before_rows
    );
    let retired: String = sqlx::query_scalar(
        "SELECT DISTINCT kafka_topic FROM raw_upi_transactions WHERE kafka_topic LIKE $1",
    )
    .bind(format!("{TOPIC}@retired-%"))
    .fetch_one(&pool)
    .await
    .unwrap();
    let old = raw_offsets(&pool, &retired).await;
    for (p, (n, distinct, lo, hi)) in &old {
        assert_eq!(
            (*lo, *distinct, *hi),
            (0, *n, n - 1),
            "first life, partition {p}"
        );
    }
    // Ingest goes on from the new broker's first offset: no gap, nothing twice.
    wait_for_rows(&pool, TOPIC, 300, &second).await;
    assert_contiguous(&pool, TOPIC).await;
    let after_clean: std::collections::HashSet<String> =
        clean_txns(&pool).await.into_iter().collect();
    let missing: Vec<&String> = before_clean
        .iter()
        .filter(|t| !after_clean.contains(*t))
        .collect();
    assert!(missing.is_empty(), "clean transactions lost: {missing:?}");
    assert!(after_clean.len() > before_clean.len());

    // Nothing of the first life is left: one postmaster (the new one, with its children),
    // one broker (the new one).
    let new_postmaster = postmaster_pid(&dir);
    let (new_broker, _, _) = broker_record(&dir);
    assert_ne!(new_postmaster, old_postmaster);
    assert_ne!(new_broker, old_broker);
    let pg = named(&processes_in(&dir.join(".upiflow/postgres")), "postgres");
    assert!(pg.contains(&new_postmaster), "{pg:?}");
    for p in &pg {
        assert!(
            *p == new_postmaster || parent(*p) == Some(new_postmaster),
            "postgres {p} is not of the new server {new_postmaster}"
        );
    }
    assert_eq!(
        named(&processes_in(&dir.join(".upiflow")), "tansu"),
        vec![new_broker]
    );

    // A clean stop still stops both.
    pool.close().await;
    assert!(second.sigterm(), "no clean exit:\n{}", second.stderr());
    assert!(process::wait_gone(new_broker, Duration::from_secs(5)).await);
    assert!(process::wait_gone(new_postmaster, Duration::from_secs(30)).await);
    assert!(!dir.join(".upiflow/broker.pid").exists());
    assert!(!dir.join(".upiflow/database_url").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_left_running_is_adopted_so_no_message_is_lost_or_doubled() {
    require_tansu();
    let dir = folder();
    let _cleanup = Cleanup(dir.clone());
    let demo = ["--demo", "--demo-rate", "200"];
    // Without `setpriv` on PATH the broker cannot be tied to its parent (as on a system
    // without util-linux, or a broker of an older upiflow): it outlives a SIGKILL.
    let no_setpriv = format!(
        "/usr/local/bin:/usr/sbin:{}",
        std::env::var("HOME")
            .map(|h| format!("{h}/.cargo/bin"))
            .unwrap_or_default()
    );
    assert!(
        !Path::new("/usr/local/bin/setpriv").exists() && !Path::new("/usr/sbin/setpriv").exists()
    );
    let mut first = Standalone::start(&dir, "1", &demo, Some(&no_setpriv));
    first.wait_healthy();
    let pool = db(&dir).await;
    wait_for_rows(&pool, TOPIC, 300, &first).await;
    let (broker, port, state) = broker_record(&dir);
    assert_eq!(state, "ready");
    first.sigkill();
    assert!(
        process::alive(broker),
        "the broker died with the standalone"
    );
    let before_rows = raw_count(&pool, TOPIC).await;
    pool.close().await;

    // The second life adopts it, and with it the messages the first life had not ingested.
    let mut second = Standalone::start(&dir, "2", &demo, None);
    second.wait_healthy();
    let err = second.stderr();
    assert!(
        err.contains(&format!(
            "adopted the Kafka broker (pid {broker}) it left running, with its topics"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "ingesting `{TOPIC}` from Kafka at 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert_eq!(broker_record(&dir).0, broker);
    let pool = db(&dir).await;
    // Nothing retired: one topic, one log, read on from where the first life stopped.
    assert_eq!(raw_count(&pool, &format!("{TOPIC}@%")).await, 0);
    wait_for_rows(&pool, TOPIC, before_rows + 300, &second).await;
    assert_contiguous(&pool, TOPIC).await;
    assert_eq!(
        named(&processes_in(&dir.join(".upiflow")), "tansu"),
        vec![broker]
    );

    // A clean stop stops the adopted broker too.
    pool.close().await;
    assert!(second.sigterm(), "no clean exit:\n{}", second.stderr());
    assert!(process::wait_gone(broker, Duration::from_secs(10)).await);
    assert!(!dir.join(".upiflow/broker.pid").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_standalone_in_the_same_folder_is_refused_and_the_first_keeps_running() {
    require_tansu();
    let dir = folder();
    let _cleanup = Cleanup(dir.clone());
    let mut first = Standalone::start(&dir, "1", &[], None);
    first.wait_healthy();
    let postmaster = postmaster_pid(&dir);
    let (broker, _, _) = broker_record(&dir);

    // Bounded: a second one that is not refused runs on (and would hang the test).
    let mut second = Standalone::start(&dir, "2", &[], None);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second standalone was not refused:\n{}",
            second.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = second.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    let home = dir.join(".upiflow").canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "error: another `upiflow standalone` (pid {}) is running with the data directory {}; \
             stop it first (Ctrl-C in its terminal, or `kill {}`), or give this one its own --data-dir",
            first.pid(),
            home.display(),
            first.pid()
        )),
        "{err}"
    );
    // The first one and its servers are untouched.
    assert!(health(first.port));
    assert_eq!(postmaster_pid(&dir), postmaster);
    assert!(process::alive(postmaster) && process::alive(broker));
    assert_eq!(broker_record(&dir).0, broker);
    assert!(first.sigterm(), "no clean exit:\n{}", first.stderr());
    assert!(process::wait_gone(postmaster, Duration::from_secs(30)).await);
    assert!(process::wait_gone(broker, Duration::from_secs(5)).await);
}
