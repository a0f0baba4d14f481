//! `upiflow backfill`: fill history with a progress bar and an exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use upiflow_engine::backfill::{self, Request};
use upiflow_engine::dag::parse_datetime_in;
use upiflow_engine::store::dags::{self as store_dags, VersionCache};

use super::{connect, find_dag};
use crate::Global;

#[derive(Args)]
pub struct BackfillArgs {
    pub dag_id: String,
    /// First logical date (inclusive): YYYY-MM-DD in the DAG's time zone, or RFC 3339.
    #[arg(long, required_unless_present = "missed")]
    pub from: Option<String>,
    /// Last logical date (inclusive).
    #[arg(long, required_unless_present = "missed")]
    pub to: Option<String>,
    /// Cover the intervals in the missed-interval ledger (`upiflow dags missed`).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub missed: bool,
    /// Re-run intervals whose run failed.
    #[arg(long)]
    pub rerun_failed: bool,
    /// Re-run every interval, successful ones included.
    #[arg(long)]
    pub reset: bool,
    /// Runs of this backfill active at once (Airflow's `--max-active-runs`). Default: the
    /// DAG's `max_active_runs`. Backfill runs never count against the scheduled runs' limit.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_active_runs: Option<u32>,
    /// Let its tasks compete with scheduled and manual runs' by priority weight; by default
    /// they wait behind them, so a long backfill never delays today's run.
    #[arg(long)]
    pub no_yield: bool,
    /// Follow it with a progress bar; exit 0 only if every run succeeds.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(g: &Global, a: BackfillArgs) -> Result<ExitCode> {
    let audit = super::Audit::new("cli_create_backfill")
        .dag(&a.dag_id)
        .extra("from", a.from.clone().unwrap_or_default())
        .extra("to", a.to.clone().unwrap_or_default())
        .extra("missed", a.missed)
        .extra("rerun_failed", a.rerun_failed);
    audit.around(g, create(g, a)).await
}

async fn create(g: &Global, a: BackfillArgs) -> Result<ExitCode> {
    let dag = find_dag(g, &a.dag_id)?;
    let pool = connect(g).await?;
    super::check_dag_pools(&pool, &dag).await?;
    let (from, to) = if a.missed {
        let mut conn = pool.acquire().await?;
        match upiflow_engine::timetable::missed_span(&mut conn, &a.dag_id).await? {
            Some(span) => span,
            None => {
                println!("{} has no missed intervals without a run", a.dag_id);
                return Ok(ExitCode::SUCCESS);
            }
        }
    } else {
        let parse = |flag: &str, v: &Option<String>| {
            parse_datetime_in(v.as_deref().unwrap_or_default(), dag.tz())
                .map_err(|e| anyhow!("--{flag}: {e}"))
        };
        (parse("from", &a.from)?, parse("to", &a.to)?)
    };
    let req = Request {
        from,
        to,
        rerun_failed: a.rerun_failed,
        reset: a.reset,
        created_by: std::env::var("USER").unwrap_or_else(|_| "cli".into()),
        max_active_runs: a.max_active_runs,
        yield_to_scheduled: !a.no_yield,
    };
    let b = backfill::start(&pool, &VersionCache::new(), &dag, &req).await?;
    let mut conn = pool.acquire().await?;
    if let Some(current) = store_dags::get(&mut conn, &dag.dag_id)
        .await?
        .and_then(|row| row.latest_hash)
    {
        super::warn_if_not_current(&dag, &current);
    }
    drop(conn);
    let mut limit = b
        .max_active_runs
        .map(|n| format!(", at most {n} at once"))
        .unwrap_or_default();
    if !b.yield_to_scheduled {
        limit.push_str(", competing with scheduled runs");
    }
    println!(
        "backfill {} of {}: {} interval(s) from {} to {}{limit}",
        b.id,
        b.dag_id,
        b.total,
        b.from_date.to_rfc3339(),
        b.to_date.to_rfc3339()
    );
    if !a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let bar = ProgressBar::new(b.total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40.green/red} {pos}/{len} runs  {per_sec}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let p = backfill::progress(&pool, &b).await?;
        bar.set_position(p.done() as u64);
        bar.set_message(format!(
            "ok {}  failed {}  running {}  queued {}",
            p.success, p.failed, p.running, p.queued
        ));
        if p.is_finished() {
            bar.finish();
            println!("{} succeeded, {} failed", p.success, p.failed);
            return Ok(if p.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                bar.abandon();
                println!("stopped following backfill {}; its runs go on. Run the same command again to follow it.", b.id);
                return Ok(ExitCode::from(130));
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
