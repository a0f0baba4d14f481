//! The long-running parts: `standalone`, `scheduler`, `worker`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;
use upiflow_engine::executor::{Worker, WorkerConfig};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_engine::store::cluster::LocalCluster;

use super::{URL_FILE, connect};
use crate::Global;

#[derive(Args, Clone)]
pub struct WorkerArgs {
    /// Task instances one worker runs at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// After this long without a heartbeat, a worker's running tries are failed and retried.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub zombie_threshold: Duration,
    /// How often a worker proves it is alive.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
}

impl WorkerArgs {
    fn config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            zombie_threshold: self.zombie_threshold,
            heartbeat: self.heartbeat,
            ..WorkerConfig::default()
        }
    }
}

fn scheduler_config(g: &Global) -> SchedulerConfig {
    SchedulerConfig {
        dags_folder: g.dags_folder.clone(),
        parse_interval: Duration::from_secs(2),
        poll: Duration::from_secs(1),
    }
}

/// Cancels the token on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

pub async fn standalone(g: &Global, a: WorkerArgs) -> Result<ExitCode> {
    let mut g = g.clone();
    let cluster = match &g.database_url {
        Some(_) => None,
        None => {
            let c = LocalCluster::start(&g.data_dir)
                .await
                .context("cannot start the private Postgres cluster")?;
            g.database_url = Some(c.url());
            std::fs::write(g.data_dir.join(URL_FILE), c.url())?;
            Some(c)
        }
    };
    let result = serve_all(&g, a).await;
    if let Some(c) = cluster {
        let _ = std::fs::remove_file(g.data_dir.join(URL_FILE));
        if let Err(e) = c.stop().await {
            tracing::error!(error = %e, "could not stop the private Postgres cluster");
        }
    }
    result
}

async fn serve_all(g: &Global, a: WorkerArgs) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let shutdown = shutdown_on_signal();
    let registry = upiflow_tasks::registry();
    let worker = Worker::new(pool.clone(), registry.clone(), a.config());
    let scheduler = Scheduler::new(pool.clone(), registry, scheduler_config(g));
    eprintln!(
        "upiflow standalone: scheduler + worker on {} (DAGs from {}); Ctrl-C stops",
        redact(&super::database_url(g)?),
        g.dags_folder.display()
    );
    let (w, s) = tokio::join!(
        worker.run(shutdown.clone()),
        scheduler.run(shutdown.clone())
    );
    w?;
    s?;
    Ok(ExitCode::SUCCESS)
}

pub async fn scheduler(g: &Global) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let shutdown = shutdown_on_signal();
    Scheduler::new(pool, upiflow_tasks::registry(), scheduler_config(g))
        .run(shutdown)
        .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(g: &Global, a: WorkerArgs) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let shutdown = shutdown_on_signal();
    Worker::new(pool, upiflow_tasks::registry(), a.config())
        .run(shutdown)
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
