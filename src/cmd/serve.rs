//! The long-running parts: `standalone`, `scheduler`, `worker`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;
use upiflow_engine::cluster::{DataDirLock, LocalCluster};
use upiflow_engine::executor::{Worker, WorkerConfig};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_tasks::upi::broker::{LocalBroker, Origin};
use upiflow_tasks::upi::supervisor::{self, LocalIngest};
use upiflow_tasks::upi::{generator, ingest};

use super::{URL_FILE, connect};
use crate::Global;

#[derive(Args, Clone)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Also run a generator that sends payments at a steady rate, so data flows at once.
    #[arg(long)]
    pub demo: bool,
    /// Payments per second sent by --demo.
    #[arg(long, default_value_t = 50.0)]
    pub demo_rate: f64,
    /// Address of the web UI and API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    #[command(flatten)]
    pub transport: super::web::TransportArgs,
}

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
    /// How often an idle worker looks for work when no wake-up arrives (runs, finished
    /// upstream tasks and retries wake it at once; this bounds how late it notices anything
    /// else, such as a pool slot another worker freed).
    #[arg(long, default_value = "1s", value_parser = positive_duration)]
    pub poll_interval: Duration,
}

/// A duration greater than zero (a zero poll interval would spin).
fn positive_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

impl WorkerArgs {
    fn config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            zombie_threshold: self.zombie_threshold,
            heartbeat: self.heartbeat,
            poll: self.poll_interval,
            ..WorkerConfig::default()
        }
    }
}

/// Cancels the token on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());
    token
}

/// Cancels `t` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(t: CancellationToken) {
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
}

pub async fn standalone(g: &Global, a: StandaloneArgs) -> Result<ExitCode> {
    let mut g = g.clone();
    // Bad certificate files are refused before any server of ours starts.
    let tls = a.transport.tls()?;
    // The private servers live in the data directory, so it belongs to one live standalone
    // at a time; the lock also tells the recovery below that whatever it finds there was left
    // by a standalone that is dead, never one that is running.
    let _lock = if g.database_url.is_none() || g.kafka_bootstrap_servers.is_none() {
        Some(DataDirLock::acquire(&g.data_dir)?)
    } else {
        None
    };
    let cluster = match &g.database_url {
        Some(_) => None,
        None => {
            // pg_ctl daemonises Postgres, so no parent-death signal can take it down with us:
            // after a crash it is the next start that finds and stops it (LocalCluster::start).
            let c = LocalCluster::start(&g.data_dir)
                .await
                .context("cannot start the private Postgres cluster")?;
            if let Some(what) = c.recovered() {
                eprintln!("upiflow standalone: {what}");
            }
            g.database_url = Some(c.url());
            std::fs::write(g.data_dir.join(URL_FILE), c.url())?;
            Some(c)
        }
    };
    let result = match super::secrets::ensure_standalone_key(&g.data_dir) {
        Ok(said) => {
            eprintln!("upiflow standalone: {said}");
            serve_all(&g, a, tls).await
        }
        Err(e) => Err(e),
    };
    if let Some(c) = cluster {
        let _ = std::fs::remove_file(g.data_dir.join(URL_FILE));
        if let Err(e) = c.stop().await {
            tracing::error!(error = %e, "could not stop the private Postgres cluster");
        }
    }
    result
}

async fn serve_all(
    g: &Global,
    a: StandaloneArgs,
    tls: Option<upiflow_web::tls::TlsConfig>,
) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let listener = upiflow_web::listen(a.bind).await?;
    let web_state = super::web::app_state(g, pool.clone())
        .await?
        .with_transport(a.transport.transport());
    let first_password = upiflow_web::auth::ensure_first_admin(&pool)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let shutdown = shutdown_on_signal();
    let registry = upiflow_tasks::registry();
    let (broker, ingest, demo) = start_stream(g, &a, &pool, &shutdown).await;
    let worker = Worker::new(pool.clone(), registry.clone(), a.worker.config());
    let scheduler = Scheduler::new(
        pool.clone(),
        registry,
        SchedulerConfig::new(g.dags_folder.clone()),
    );
    eprintln!(
        "upiflow standalone: scheduler + worker + web on {} (DAGs from {}); Ctrl-C stops",
        redact(&super::database_url(g)?),
        g.dags_folder.display()
    );
    eprintln!(
        "upiflow standalone: web UI at {}",
        super::web::url(&listener, &tls)?
    );
    if let Some(p) = first_password {
        eprintln!(
            "upiflow standalone: first start, so a user was created: `admin` with password `{p}`\n  \
             (shown only this once; change it with `upiflow users set-password --username admin --password ...`)"
        );
    }
    let (w, s, web) = tokio::join!(
        worker.run(shutdown.clone()),
        scheduler.run(shutdown.clone()),
        super::web::serve(listener, tls, web_state, shutdown.clone()),
    );
    if let Some(d) = demo {
        d.abort();
    }
    if let Some(i) = ingest {
        i.join().await;
    }
    if let Some(b) = broker {
        b.stop().await;
    }
    w?;
    s?;
    web?;
    Ok(ExitCode::SUCCESS)
}

/// The event stream of standalone: the given Kafka or a private broker, the in-process
/// ingest, and with --demo a steady generator. Without a broker the orchestrator still runs.
async fn start_stream(
    g: &Global,
    a: &StandaloneArgs,
    pool: &sqlx::PgPool,
    shutdown: &CancellationToken,
) -> (
    Option<LocalBroker>,
    Option<std::sync::Arc<LocalIngest>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let (topic, group) = (supervisor::DEFAULT_TOPIC, supervisor::DEFAULT_GROUP);
    let (broker, bootstrap) = match &g.kafka_bootstrap_servers {
        Some(b) => (None, b.clone()),
        None => match LocalBroker::start_in(&g.data_dir).await {
            Ok((b, origin)) => {
                if let Err(e) = b.create_topic(topic, 3).await {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot create the topic; ingest is off"
                    );
                    return (Some(b), None, None);
                }
                match origin {
                    // Its topics are the ones the stored offsets point into: keep both.
                    Origin::Adopted { pid } => eprintln!(
                        "upiflow standalone: an earlier standalone in this folder did not exit cleanly; \
                         adopted the Kafka broker (pid {pid}) it left running, with its topics"
                    ),
                    Origin::Fresh { replaced } => {
                        if let Some(what) = replaced {
                            eprintln!("upiflow standalone: {what}");
                        }
                        // A fresh in-memory broker starts at offset 0: offsets stored for an
                        // earlier one would make the ingest skip its messages as already seen.
                        match ingest::writer::retire_broker_epoch(pool, group, topic).await {
                            Ok(true) => eprintln!(
                                "upiflow standalone: a new Kafka broker starts empty, so the ingest reads it from its beginning; \
                                 everything ingested from the earlier one is kept (its raw rows under a retired topic name)"
                            ),
                            Ok(false) => {}
                            Err(e) => {
                                tracing::error!(error = %e, "cannot retire the previous broker's offsets; ingest is off");
                                return (Some(b), None, None);
                            }
                        }
                        // Only now may a later start adopt it (see LocalBroker::start_in).
                        if let Err(e) = b.mark_ready() {
                            tracing::warn!(
                                error = format!("{e:#}"),
                                "cannot record the broker; a later start will replace it"
                            );
                        }
                    }
                }
                let bootstrap = b.bootstrap.clone();
                (Some(b), bootstrap)
            }
            Err(e) => {
                eprintln!("warning: no Kafka broker, so no ingest: {e:#}");
                return (None, None, None);
            }
        },
    };
    let local = LocalIngest::start(
        pool.clone(),
        ingest::Config::new(&bootstrap, topic, group),
        shutdown.clone(),
    );
    eprintln!("upiflow standalone: ingesting `{topic}` from Kafka at {bootstrap}");
    let demo = a.demo.then(|| {
        let opts = generator::Options {
            bootstrap_servers: bootstrap.clone(),
            topic: topic.to_string(),
            count: u64::MAX,
            rate: Some(a.demo_rate.max(0.1)),
            invalid_fraction: 0.01,
            days: 0,
            seed: std::process::id() as u64 ^ chrono::Utc::now().timestamp() as u64,
            progress: false,
        };
        eprintln!(
            "upiflow standalone: --demo sends {} payments/s",
            a.demo_rate
        );
        tokio::spawn(async move {
            if let Err(e) = generator::generate(&opts).await {
                tracing::error!(error = format!("{e:#}"), "demo generator stopped");
            }
        })
    });
    (broker, Some(local), demo)
}

pub async fn scheduler(g: &Global) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let shutdown = shutdown_on_signal();
    Scheduler::new(
        pool,
        upiflow_tasks::registry(),
        SchedulerConfig::new(g.dags_folder.clone()),
    )
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
