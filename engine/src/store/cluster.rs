//! A private Postgres cluster for `upiflow standalone` when no `DATABASE_URL` is given:
//! created with the system's `initdb` under the data directory, started with `pg_ctl`
//! (as the `postgres` user when we are root, since the server refuses to run as root),
//! reachable over TCP on loopback only, and stopped on exit.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::{EngineError, Result};

const SUPERUSER: &str = "upiflow";
const DATABASE: &str = "upiflow";

/// A running private cluster.
pub struct LocalCluster {
    pgdata: PathBuf,
    run_as: Option<String>,
    port: u16,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let context = context.into();
    move |source| EngineError::Io { context, source }
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
                .ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "running as root, and there is no `{user}` user to run Postgres as; run upiflow as a normal user or create that user"
                    ))
                })?;
            std::fs::create_dir_all(&pgdata)
                .map_err(io(format!("cannot create {}", pgdata.display())))?;
            nix::unistd::chown(&pgdata, Some(u.uid), Some(u.gid))
                .map_err(|e| io(format!("cannot hand {} to {user}", pgdata.display()))(e.into()))?;
        }
        let mut cluster = Self {
            pgdata,
            run_as,
            port: 0,
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
            return Err(EngineError::Invalid(format!(
                "`{program} {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            )));
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
