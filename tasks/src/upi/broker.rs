//! A private Kafka-protocol broker for `upiflow standalone` and the tests: Tansu
//! (Apache-2.0, from crates.io) with in-memory storage on a free loopback port.
//!
//! The broker dies with the process that started it: it is spawned through util-linux's
//! `setpriv --pdeathsig KILL` (the workspace forbids `unsafe`, so no `pre_exec` prctl), so a
//! standalone killed with SIGKILL leaves no broker behind. Where `setpriv` is missing, or
//! for a broker started by an older upiflow, standalone records the broker in
//! `BROKER_FILE` under its data directory and the next start adopts it (see
//! [`LocalBroker::start_in`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};
use upiflow_engine::cluster::process;

/// The one command that installs the broker.
pub const INSTALL: &str = "cargo install tansu --version 0.6.0 --locked --features dynostore";

/// The file in standalone's data directory naming its broker: `PID PORT STATE`, where STATE
/// is `starting` until the caller has matched the ingest's stored offsets to this broker
/// ([`LocalBroker::mark_ready`]), then `ready`.
pub const BROKER_FILE: &str = "broker.pid";

/// A running private broker; a started one is stopped when dropped.
pub struct LocalBroker {
    process: Process,
    pub bootstrap: String,
    binary: PathBuf,
    /// Where it is recorded (standalone's data directory), if anywhere.
    record: Option<PathBuf>,
}

enum Process {
    /// Started by us.
    Child(Child),
    /// Left running by an earlier standalone of the same data directory.
    Adopted(u32),
}

/// How [`LocalBroker::start_in`] got its broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A new, empty broker: offsets stored for any earlier one mean nothing to it.
    Fresh {
        /// What was found of an earlier broker and stopped or discarded, in words.
        replaced: Option<String>,
    },
    /// The broker an earlier standalone left running: its topics and the ingest's stored
    /// offsets still belong together.
    Adopted { pid: u32 },
}

/// `tansu` on PATH or in ~/.cargo/bin.
pub fn find_tansu() -> Option<PathBuf> {
    on_path("tansu").or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(home.join("bin").join("tansu")).filter(|p| p.is_file())
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl LocalBroker {
    /// Starts Tansu and waits until it accepts connections.
    pub async fn start() -> Result<Self> {
        Self::spawn(None).await
    }

    /// Standalone's broker, kept in `data_dir`: adopts the broker an earlier standalone of
    /// this data directory left running and recorded as ready, else starts a fresh one
    /// (recorded as `starting`; call [`LocalBroker::mark_ready`] once the ingest's stored
    /// offsets fit it). The caller must hold the data directory's lock.
    ///
    /// Adopting rather than replacing is what keeps data: the broker stores in memory, so a
    /// replacement starts with empty topics, and every message the old one held but the
    /// ingest had not yet written would be lost.
    pub async fn start_in(data_dir: &Path) -> Result<(Self, Origin)> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
        let file = data_dir.join(BROKER_FILE);
        let replaced = match Leftover::read(&file)? {
            None => None,
            Some(old) => match old.check(&data_dir).await {
                Check::Adoptable => {
                    let binary = find_tansu().unwrap_or_else(|| PathBuf::from("tansu"));
                    let broker = Self {
                        process: Process::Adopted(old.pid),
                        bootstrap: format!("127.0.0.1:{}", old.port),
                        binary,
                        record: Some(file),
                    };
                    tracing::warn!(pid = old.pid, bootstrap = %broker.bootstrap, "an earlier standalone did not exit cleanly; adopted the Kafka broker it left running (its topics are kept)");
                    return Ok((broker, Origin::Adopted { pid: old.pid }));
                }
                Check::Kill(why) => {
                    terminate(old.pid).await;
                    tracing::warn!(pid = old.pid, %why, "stopped the Kafka broker an earlier standalone left running");
                    Some(format!(
                        "stopped the Kafka broker (pid {}) that an earlier standalone left running ({why})",
                        old.pid
                    ))
                }
                Check::Gone(why) => Some(format!(
                    "the Kafka broker of an earlier standalone is gone ({why})"
                )),
            },
        };
        let _ = std::fs::remove_file(&file);
        let broker = Self::spawn(Some(&data_dir)).await?;
        Ok((broker, Origin::Fresh { replaced }))
    }

    /// Starts a new broker; with `home`, runs it there and records it as `starting`.
    async fn spawn(home: Option<&Path>) -> Result<Self> {
        let binary = find_tansu()
            .with_context(|| format!("the Kafka-compatible broker `tansu` is not installed; install it with:\n  {INSTALL}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        // The parent-death signal fires when the THREAD that spawned the child ends, so this
        // must run on a thread that lives as long as the process (the main thread or a
        // runtime worker, as async code does), never inside `spawn_blocking`.
        let mut cmd = match on_path("setpriv") {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]).arg(&binary);
                c
            }
            None => {
                tracing::warn!(
                    "util-linux `setpriv` is missing, so the broker will not die with us; the next start adopts it"
                );
                Command::new(&binary)
            }
        };
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
        // Its working directory marks whose broker it is (see `Leftover::check`).
        if let Some(home) = home {
            cmd.current_dir(home);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut broker = Self {
            bootstrap: format!("127.0.0.1:{port}"),
            binary,
            record: home.map(|h| h.join(BROKER_FILE)),
            process: Process::Child(child),
        };
        broker.write_record("starting")?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Process::Child(c) = &mut broker.process
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!("tansu exited at start ({status})");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("tansu did not start listening on port {port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(bootstrap = %broker.bootstrap, "private Kafka broker (tansu, in memory) started");
        Ok(broker)
    }

    /// Records that the ingest's stored offsets now belong to this broker, so a later start
    /// may adopt it.
    pub fn mark_ready(&self) -> Result<()> {
        self.write_record("ready")
    }

    fn write_record(&self, state: &str) -> Result<()> {
        let Some(file) = &self.record else {
            return Ok(());
        };
        let port = self.bootstrap.rsplit(':').next().unwrap_or_default();
        let tmp = file.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{} {port} {state}\n", self.pid()))
            .and_then(|_| std::fs::rename(&tmp, file))
            .with_context(|| format!("cannot write {}", file.display()))
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Child(c) => c.id().unwrap_or(0),
            Process::Adopted(pid) => *pid,
        }
    }

    /// Creates a topic (no error if it exists).
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let out = Command::new(&self.binary)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.bootstrap)])
            // It reports errors (an existing topic too) only as log lines, on stdout.
            .env("RUST_LOG", "error")
            .output()
            .await
            .context("cannot run `tansu topic create`")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        if !out.status.success() && !text.to_lowercase().contains("already exists") {
            bail!("`tansu topic create {topic}` failed: {}", text.trim());
        }
        Ok(())
    }

    pub async fn stop(mut self) {
        match &mut self.process {
            Process::Child(c) => {
                let _ = c.kill().await;
            }
            Process::Adopted(pid) => terminate(*pid).await,
        }
        if let Some(file) = &self.record {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// What `BROKER_FILE` says.
struct Leftover {
    pid: u32,
    port: u16,
    ready: bool,
}

enum Check {
    Adoptable,
    /// Ours, but not to be adopted: stop it.
    Kill(String),
    /// No broker of ours runs under that pid.
    Gone(String),
}

impl Leftover {
    fn read(file: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let mut f = text.split_whitespace();
        let parsed = (|| {
            Some(Self {
                pid: f.next()?.parse().ok().filter(|&p| p != 0)?,
                port: f.next()?.parse().ok()?,
                ready: f.next()? == "ready",
            })
        })();
        if parsed.is_none() {
            tracing::warn!(file = %file.display(), "ignoring an unreadable broker record");
        }
        Ok(parsed)
    }

    /// Whether the recorded process is still our broker: alive, `tansu`, running in our data
    /// directory and listening where recorded (a reused pid is some other program).
    async fn check(&self, data_dir: &Path) -> Check {
        let pid = self.pid;
        if !process::alive(pid) {
            return Check::Gone(format!("pid {pid} is not running"));
        }
        let ours = process::comm(pid).as_deref() == Some("tansu")
            && process::cwd(pid).as_deref() == Some(data_dir)
            && process::cmdline(pid).is_some_and(|args| {
                let url = format!("tcp://127.0.0.1:{}", self.port);
                args.contains(&url)
            });
        if !ours {
            return Check::Gone(format!("pid {pid} is now another program"));
        }
        if !self.ready {
            // Killed before the ingest's offsets were matched to it: they may be another
            // broker's, so its offsets and ours cannot be trusted together.
            return Check::Kill("it was still starting".into());
        }
        let answers = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        if answers {
            Check::Adoptable
        } else {
            Check::Kill(format!("it does not answer on port {}", self.port))
        }
    }
}

/// Stops a broker that is not our child: SIGTERM, then SIGKILL if it lingers.
async fn terminate(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    // Not our child, so its pid could have been reused once it died: check again.
    if process::comm(pid).as_deref() != Some("tansu") {
        return;
    }
    let target = nix::unistd::Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    if !process::wait_gone(pid, Duration::from_secs(5)).await {
        let _ = kill(target, Signal::SIGKILL);
        let _ = process::wait_gone(pid, Duration::from_secs(5)).await;
    }
}
