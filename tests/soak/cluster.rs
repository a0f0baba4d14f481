//! The soak's own servers: a Postgres cluster (initdb/pg_ctl, as the `postgres` user when we
//! are root, since the server refuses root) that it restarts with `pg_ctl restart -m fast`,
//! and a Tansu broker. Never the shared dev/test server: other tests run against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A private cluster under `dir/pg`; stopped (immediately) when dropped.
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
    pub url: String,
}

impl PrivatePostgres {
    pub fn start(work: &Path) -> Self {
        let dir = work.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let u = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("running as root: a `postgres` user must exist to run the soak's Postgres");
            nix::unistd::chown(&dir, Some(u.uid), Some(u.gid)).unwrap();
        }
        let port = free_port();
        let pg = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            port,
        };
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed (is the Postgres server installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Durability is not under test (the OS never crashes here; `-m fast` shuts down
        // cleanly), so skip fsync for speed. Errors, deadlocks and serialization failures are
        // logged with their statement, for the report.
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
             -c max_connections=400 -c shared_buffers=128MB -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off \
             -c log_line_prefix='%m [%p] %a ' -c log_min_error_statement=error \
             -c deadlock_timeout=200ms"
        );
        let log = pg.log().display().to_string();
        let out = pg.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            super::tail(&pg.log(), 30)
        );
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        c.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// `pg_ctl restart -m fast`: every connection is cut, the server is down for a moment.
    /// Returns how long it took.
    pub fn restart(&self) -> Duration {
        let started = Instant::now();
        let log = self.log().display().to_string();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-m",
                "fast",
                "restart",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            super::tail(&self.log(), 30)
        );
        started.elapsed()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// A private in-memory Tansu broker; killed when dropped.
pub struct Tansu {
    child: Child,
    binary: PathBuf,
    pub bootstrap: String,
}

impl Tansu {
    pub fn start(work: &Path) -> Self {
        let binary = upiflow_tasks::upi::broker::find_tansu().unwrap_or_else(|| {
            panic!(
                "the Kafka-compatible broker `tansu` is not installed; install it with:\n  {}",
                upiflow_tasks::upi::broker::INSTALL
            )
        });
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(work.join("tansu.log")).unwrap();
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let t = Self {
            child,
            binary,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(&self.binary)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.bootstrap)])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
