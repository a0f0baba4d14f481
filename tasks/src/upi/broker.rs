//! A private Kafka-protocol broker for `upiflow standalone` and the tests: Tansu
//! (Apache-2.0, from crates.io) with in-memory storage on a free loopback port.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// The one command that installs the broker.
pub const INSTALL: &str = "cargo install tansu --version 0.6.0 --locked --features dynostore";

/// A running private broker; stopped when dropped.
pub struct LocalBroker {
    child: Child,
    pub bootstrap: String,
    binary: PathBuf,
}

/// `tansu` on PATH or in ~/.cargo/bin.
pub fn find_tansu() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(home.join("bin").join("tansu")).filter(|p| p.is_file())
    })
}

impl LocalBroker {
    /// Starts Tansu and waits until it accepts connections.
    pub async fn start() -> Result<Self> {
        let binary = find_tansu()
            .with_context(|| format!("the Kafka-compatible broker `tansu` is not installed; install it with:\n  {INSTALL}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let broker = Self {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            binary,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("tansu did not start listening on port {port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(bootstrap = %broker.bootstrap, "private Kafka broker (tansu, in memory) started");
        Ok(broker)
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
            .output()
            .await
            .context("cannot run `tansu topic create`")?;
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !text.to_lowercase().contains("exist") {
            bail!("`tansu topic create {topic}` failed: {}", text.trim());
        }
        Ok(())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
