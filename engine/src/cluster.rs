//! A private Postgres cluster for `upiflow standalone` when no `DATABASE_URL` is given:
//! created with the system's `initdb` under the data directory, started with `pg_ctl`
//! (as the `postgres` user when we are root, since the server refuses to run as root),
//! reachable over TCP on loopback only, and stopped on exit.
//!
//! A standalone killed with SIGKILL (or by the OOM killer, or with its terminal) cannot stop
//! its Postgres: `pg_ctl` daemonises the server, so it is not our child and no parent-death
//! signal can reach it. The next start in the same data directory therefore finds it (see
//! [`LocalCluster::start`]) and stops it cleanly before starting its own. [`DataDirLock`]
//! keeps a second live standalone from doing that to the first one.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::{EngineError, ErrorKind, Result};

/// Why the private cluster (or the data directory) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Another live standalone holds the data directory (`pid` if its lock file says).
    #[error("{}", in_use(.dir, *.pid))]
    DataDirInUse { dir: PathBuf, pid: Option<u32> },
    #[error(
        "running as root, and there is no `{0}` user to run Postgres as; run upiflow as a normal user or create that user"
    )]
    NoPostgresUser(String),
    #[error(
        "cannot stop the private Postgres (pid {pid}) that an earlier standalone left running in {}: {reason}",
        .pgdata.display()
    )]
    CannotStopLeftover {
        pid: u32,
        pgdata: PathBuf,
        reason: String,
    },
    #[error(
        "{} names pid {pid}, which is running but cannot be inspected; if it is not a Postgres of {}, remove that file",
        .pidfile.display(),
        .pgdata.display()
    )]
    Uninspectable {
        pidfile: PathBuf,
        pid: u32,
        pgdata: PathBuf,
    },
    #[error("`{program} {}` failed ({status}): {stderr}{stdout}", .args.join(" "))]
    CommandFailed {
        program: String,
        args: Vec<String>,
        status: std::process::ExitStatus,
        stderr: String,
        stdout: String,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterError {
    /// A data directory in use is a conflict; the rest is the environment's problem, shown to
    /// the user as it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::DataDirInUse { .. } => ErrorKind::Conflict,
            _ => ErrorKind::Invalid,
        }
    }
}

fn in_use(dir: &Path, pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(
            "another `upiflow standalone` (pid {pid}) is running with the data directory {}; \
                 stop it first (Ctrl-C in its terminal, or `kill {pid}`), or give this one its own --data-dir",
            dir.display()
        ),
        None => format!(
            "another `upiflow standalone` is running with the data directory {}; \
                 stop it first, or give this one its own --data-dir",
            dir.display()
        ),
    }
}

const SUPERUSER: &str = "upiflow";
const DATABASE: &str = "upiflow";

/// A running private cluster.
pub struct LocalCluster {
    pgdata: PathBuf,
    run_as: Option<String>,
    port: u16,
    recovered: Option<String>,
}

/// The file in the data directory that a live standalone holds locked.
pub const LOCK_FILE: &str = "standalone.lock";

/// Ownership of a data directory by one live `upiflow standalone`: an exclusive `flock` on
/// `LOCK_FILE`, which the kernel releases however the process ends (so a killed standalone
/// never leaves a stale lock, and a reused pid can never look like a live owner). The file
/// holds the owner's pid, only to say who it is.
pub struct DataDirLock {
    _file: nix::fcntl::Flock<File>,
}

impl DataDirLock {
    /// Takes the data directory, or says which live standalone has it.
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(io(format!("cannot create {}", data_dir.display())))?;
        let path = data_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        let mut file =
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(f) => f,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let dir = data_dir.canonicalize().unwrap_or_else(|_| data_dir.into());
                    return Err(ClusterError::DataDirInUse {
                        dir,
                        pid: text.trim().parse::<u32>().ok(),
                    }
                    .into());
                }
                Err((_, e)) => {
                    return Err(io(format!("cannot lock {}", path.display()))(e.into()));
                }
            };
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io(format!("cannot write {}", path.display())))?;
        Ok(Self { _file: file })
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }.into()
}

impl LocalCluster {
    /// Creates (first time) and starts the cluster under `data_dir/postgres`.
    pub async fn start(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(io(format!("cannot create {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io(format!("cannot resolve {}", data_dir.display())))?;
        let pgdata = data_dir.join("postgres");
        let run_as = nix::unistd::geteuid()
            .is_root()
            .then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let u = nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .ok_or_else(|| ClusterError::NoPostgresUser(user.clone()))?;
            std::fs::create_dir_all(&pgdata)
                .map_err(io(format!("cannot create {}", pgdata.display())))?;
            nix::unistd::chown(&pgdata, Some(u.uid), Some(u.gid))
                .map_err(|e| io(format!("cannot hand {} to {user}", pgdata.display()))(e.into()))?;
        }
        let mut cluster = Self {
            pgdata,
            run_as,
            port: 0,
            recovered: None,
        };
        if !cluster.pgdata.join("PG_VERSION").exists() {
            tracing::info!(pgdata = %cluster.pgdata.display(), "creating a private Postgres cluster");
            cluster
                .run(
                    "initdb",
                    &[
                        "-D",
                        &cluster.pgdata.display().to_string(),
                        "-U",
                        SUPERUSER,
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C",
                    ],
                )
                .await?;
        }
        cluster.recovered = cluster.clear_leftover().await?;
        cluster.port = free_port()?;
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200",
            cluster.port
        );
        let log = cluster.pgdata.join("server.log").display().to_string();
        cluster
            .run(
                "pg_ctl",
                &[
                    "-D",
                    &cluster.pgdata.display().to_string(),
                    "-o",
                    &opts,
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
            .await?;
        let admin = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", cluster.port);
        let pool = crate::store::connect(&admin, 1).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&pool)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
                .execute(&pool)
                .await?;
        }
        pool.close().await;
        tracing::info!(port = cluster.port, pgdata = %cluster.pgdata.display(), "private Postgres started");
        Ok(cluster)
    }

    /// What was left by an earlier life of the data directory and has been dealt with, in
    /// words for the user.
    pub fn recovered(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    /// Deals with a `postmaster.pid` left in the data directory by an earlier standalone that
    /// did not exit cleanly. The caller holds the [`DataDirLock`], so that standalone is dead.
    ///
    /// Its server, if still running, is stopped (`pg_ctl stop -m fast`: open sessions end,
    /// committed data is safe) rather than adopted: a server we start ourselves always has
    /// the settings we choose (loopback port, no socket, connections), whatever started the
    /// old one (an older upiflow, other flags), and there is one code path; it costs a second.
    /// A pid file whose process is gone, or is now some other program (pids are reused after
    /// a reboot or in a fresh container), is removed: Postgres refuses to start while the pid
    /// in it belongs to any live process, which is the "another server might be running"
    /// users got stuck on. A live process we cannot inspect is never assumed dead.
    async fn clear_leftover(&self) -> Result<Option<String>> {
        let pidfile = self.pgdata.join("postmaster.pid");
        let text = match std::fs::read_to_string(&pidfile) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(format!("cannot read {}", pidfile.display()))(e)),
        };
        let pid = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .filter(|&p| p != 0);
        let live = pid.filter(|&p| process::alive(p));
        if let Some(pid) = live {
            match process::cwd(pid) {
                // The postmaster works in its data directory.
                Some(cwd)
                    if cwd == self.pgdata && process::comm(pid).as_deref() == Some("postgres") =>
                {
                    tracing::warn!(pid, pgdata = %self.pgdata.display(), "an earlier standalone did not exit cleanly and left its Postgres running; stopping it");
                    self.stop()
                        .await
                        .map_err(|e| ClusterError::CannotStopLeftover {
                            pid,
                            pgdata: self.pgdata.clone(),
                            reason: e.to_string(),
                        })?;
                    return Ok(Some(format!(
                        "an earlier standalone in this folder did not exit cleanly; stopped the Postgres (pid {pid}) it left running"
                    )));
                }
                Some(_) => {}
                None => {
                    return Err(ClusterError::Uninspectable {
                        pidfile,
                        pid,
                        pgdata: self.pgdata.clone(),
                    }
                    .into());
                }
            }
        }
        std::fs::remove_file(&pidfile)
            .map_err(io(format!("cannot remove the stale {}", pidfile.display())))?;
        let why = match (pid, live) {
            (Some(p), Some(_)) => format!("pid {p} is now another program"),
            (Some(p), None) => format!("pid {p} is not running"),
            (None, _) => "it names no pid".to_string(),
        };
        tracing::warn!(pidfile = %pidfile.display(), %why, "removed a stale postmaster.pid");
        Ok(Some(format!(
            "an earlier standalone in this folder did not exit cleanly; its Postgres was gone, removed its stale postmaster.pid ({why})"
        )))
    }

    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Stops the server (fast shutdown: open sessions are ended, data is safe).
    pub async fn stop(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.pgdata.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
        .await?;
        tracing::info!("private Postgres stopped");
        Ok(())
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args).current_dir("/");
        let out = cmd.output().await.map_err(io(format!(
            "cannot run `{program}` (are the Postgres server binaries installed and on PATH?)"
        )))?;
        if !out.status.success() {
            return Err(ClusterError::CommandFailed {
                program: program.into(),
                args: args.iter().map(|a| a.to_string()).collect(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
                stdout: String::from_utf8_lossy(&out.stdout).trim().into(),
            }
            .into());
        }
        Ok(())
    }
}

fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io("cannot find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("cannot find a free port"))?
        .port())
}

/// What `/proc` says about a process (Linux); `None` when it cannot be read.
pub mod process {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// The process exists and is not a zombie (a killed process whose parent has not reaped it
    /// yet keeps its pid but is dead).
    pub fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().next().map(|s| s != "Z" && s != "X")
            })
            .unwrap_or(false)
    }

    /// Its command name (the executable's file name, at most 15 bytes).
    pub fn comm(pid: u32) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim_end().to_string())
    }

    /// Its working directory.
    pub fn cwd(pid: u32) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
    }

    /// Its arguments.
    pub fn cmdline(pid: u32) -> Option<Vec<String>> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        )
    }

    /// Waits until the process is gone; false if it is still alive after `timeout`.
    pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
        let started = Instant::now();
        while alive(pid) {
            if started.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}
