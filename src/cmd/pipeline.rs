//! `upiflow generate` and `upiflow ingest`: the UPI event stream's producer and loader.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;
use upiflow_tasks::upi::{generator, ingest, supervisor};

use super::connect;
use crate::Global;

fn bootstrap(g: &Global) -> Result<String> {
    g.kafka_bootstrap_servers
        .clone()
        .context("no Kafka: set KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers)")
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Messages to send (resolutions of PENDING payments and bad events included).
    #[arg(long)]
    pub count: u64,
    /// Messages per second (default: as fast as the broker takes them).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Share of bad events (broken JSON, missing field, bad amount, unknown status, bad timestamp).
    #[arg(long, default_value_t = 0.0)]
    pub invalid_fraction: f64,
    /// Spread event times over the past D days (0: the time of sending).
    #[arg(long, default_value_t = 0)]
    pub days: u32,
    /// Seed: the same seed sends the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = supervisor::DEFAULT_TOPIC)]
    pub topic: String,
}

pub async fn generate(g: &Global, a: GenerateArgs) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.invalid_fraction) {
        anyhow::bail!("--invalid-fraction must be between 0 and 1");
    }
    let opts = generator::Options {
        bootstrap_servers: bootstrap(g)?,
        topic: a.topic,
        count: a.count,
        rate: a.rate,
        invalid_fraction: a.invalid_fraction,
        days: a.days,
        seed: a.seed,
        progress: true,
    };
    let started = std::time::Instant::now();
    let s = generator::generate(&opts).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {} messages to `{}` in {secs:.1}s ({:.0}/s): {} valid ({} PENDING), {} resolutions, {} invalid {:?}",
        s.sent,
        opts.topic,
        s.sent as f64 / secs,
        s.valid,
        s.pending,
        s.resolutions,
        s.invalid.values().sum::<u64>(),
        s.invalid
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct IngestArgs {
    #[arg(long, default_value = supervisor::DEFAULT_TOPIC)]
    pub topic: String,
    #[arg(long, default_value = supervisor::DEFAULT_GROUP)]
    pub group: String,
    /// Most messages per transaction.
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
    /// A partition whose reader has not renewed its lease for this long goes to another process.
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    pub lease_ttl: std::time::Duration,
    /// How far out of event-time order events may arrive: each partition's event-time
    /// watermark is its largest event time stored minus this (Flink's bounded
    /// out-of-orderness).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_out_of_orderness: std::time::Duration,
}

pub async fn ingest(g: &Global, a: IngestArgs) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let mut cfg = ingest::Config::new(&bootstrap(g)?, &a.topic, &a.group);
    cfg.batch_size = a.batch_size.max(1);
    cfg.lease_ttl = a.lease_ttl.max(std::time::Duration::from_millis(300));
    cfg.out_of_orderness = a.max_out_of_orderness;
    let shutdown = CancellationToken::new();
    super::serve::cancel_on_signal(shutdown.clone());
    ingest::run(pool, cfg, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
