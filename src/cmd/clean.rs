//! `upiflow db clean`: Airflow's `airflow db clean` — delete history older than a cutoff, in
//! batches, with a progress bar; the rules are `upiflow_engine::clean`'s.

use std::io::{BufRead, Write};
use std::num::NonZeroU32;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use upiflow_engine::clean::{self, Rows, Table};
use upiflow_engine::dag::parse_datetime_in;

use super::connect;
use crate::Global;

/// What `db clean` keeps, shown under `--help`.
const RULES: &str = "\
Which rows go (Airflow's `airflow db clean` rules):
  dag_runs          by start_date (queued_at for a run that never started); only success and
                    failed runs, with their task_instances, task_tries and task_logs. Never a
                    queued or running run, nor a run in the range of a running backfill. The
                    latest run of each DAG is always kept, however old, and so is its latest
                    run that is not a manual one (scheduled or backfill), as Airflow's
                    keep-last, which ignores manually triggered runs.
  event_log         by dttm
  notifications     by created_at, only delivered or given-up ones, with their attempts
  missed_intervals  by recorded_at
  backfills         by completed_at, only finished ones that no remaining run belongs to
  scheduler_loops   by last_loop_at
  workers           by heartbeat_at
Rows younger than the cutoff always stay. Each batch is its own transaction; at the end
the cleaned tables are vacuumed and analysed.
Without --yes it asks for 'delete rows' on stdin, as Airflow does.";

/// Delete history older than a cutoff (Airflow's `airflow db clean`).
#[derive(Args, Clone)]
#[command(after_help = RULES)]
#[command(group(clap::ArgGroup::new("cutoff").required(true).args(["older_than", "clean_before_timestamp"])))]
pub struct CleanArgs {
    /// Delete rows older than this (humantime: `30d`, `12h`, `90days`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Delete rows older than this time (Airflow's flag): RFC 3339, or `YYYY-MM-DD` /
    /// `YYYY-MM-DD HH:MM[:SS]` in UTC.
    #[arg(long)]
    pub clean_before_timestamp: Option<String>,
    /// Only print, per table, how many rows would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these tables (comma separated). Default: all of dag_runs, event_log,
    /// notifications, missed_intervals, backfills, scheduler_loops, workers.
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Rows of a table deleted per transaction.
    #[arg(long, default_value_t = NonZeroU32::new(1000).expect("not zero"))]
    pub batch_size: NonZeroU32,
}

fn cutoff(a: &CleanArgs, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    match (&a.older_than, &a.clean_before_timestamp) {
        (Some(d), None) => {
            let d = chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .ok_or_else(|| {
                    anyhow!(
                        "--older-than: {} is too long",
                        humantime::format_duration(*d)
                    )
                })?;
            Ok(d)
        }
        (None, Some(ts)) => parse_datetime_in(ts, chrono_tz::UTC)
            .map_err(|e| anyhow!("--clean-before-timestamp: {e}")),
        // clap's group makes exactly one of them present.
        _ => bail!("give exactly one of --older-than and --clean-before-timestamp"),
    }
}

fn with(rows: &Rows) -> String {
    rows.dependents
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asks as Airflow does: the answer must be `delete rows`. Reads stdin whether or not it is a
/// terminal (so the answer can be piped); no answer is a refusal.
fn confirm(cutoff: DateTime<Utc>, tables: &[Table], total: u64) -> Result<bool> {
    let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
    println!(
        "You have requested that we purge all data prior to {} for tables {names:?} ({total} rows, \
         not counting the rows that go with them).\nThis is irreversible. Consider backing up the \
         tables first and / or doing a dry run with option --dry-run.\nEnter 'delete rows' \
         (without quotes) to proceed.",
        cutoff.to_rfc3339()
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "delete rows")
}

pub async fn run(g: &Global, a: CleanArgs) -> Result<ExitCode> {
    // A dry run changes nothing, so it is not audited (as Airflow's dry runs).
    if a.dry_run {
        return clean(g, a).await;
    }
    let mut audit = super::Audit::new("cli_cleanup_tables");
    if let Some(o) = a.older_than {
        audit = audit.extra("older_than", humantime::format_duration(o).to_string());
    }
    if let Some(t) = &a.clean_before_timestamp {
        audit = audit.extra("clean_before_timestamp", t.as_str());
    }
    if let Some(t) = &a.tables {
        audit = audit.extra("tables", t.join(","));
    }
    audit.around(g, clean(g, a)).await
}

async fn clean(g: &Global, a: CleanArgs) -> Result<ExitCode> {
    // Everything the user typed is checked before anything is read or changed.
    let cutoff = cutoff(&a, Utc::now())?;
    let tables = clean::select_tables(a.tables.as_deref())?;
    let pool = connect(g).await?;
    let counts = clean::count(&pool, cutoff, &tables)
        .await
        .context("cannot count the rows to clean")?;
    let total: u64 = counts.iter().map(|c| c.rows).sum();
    if a.dry_run {
        println!(
            "Performing dry run for db clean: rows older than {} would be deleted:",
            cutoff.to_rfc3339()
        );
        let mut t = super::table(&["table", "rows", "with", "age from", "always kept"]);
        for c in &counts {
            t.add_row(vec![
                c.table.name().to_string(),
                c.rows.to_string(),
                with(c),
                c.table.recency_column().to_string(),
                c.table.keeps().to_string(),
            ]);
        }
        println!("{t}");
        println!("dry run: nothing was deleted");
        return Ok(ExitCode::SUCCESS);
    }
    if total == 0 {
        println!(
            "nothing to clean: no rows older than {} in {}",
            cutoff.to_rfc3339(),
            tables
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !a.yes && !confirm(cutoff, &tables, total)? {
        eprintln!("User did not confirm; exiting. (nothing was deleted; --yes skips the question)");
        return Ok(ExitCode::FAILURE);
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    let done = clean::clean(&pool, cutoff, &tables, a.batch_size, |batch| {
        bar.set_message(batch.table.name());
        bar.inc(batch.rows);
    })
    .await;
    bar.finish_and_clear();
    let done = done.context("db clean stopped (the batches before this one are deleted)")?;
    println!("deleted rows older than {}:", cutoff.to_rfc3339());
    let mut t = super::table(&["table", "rows", "with"]);
    for c in &done {
        t.add_row(vec![
            c.table.name().to_string(),
            c.rows.to_string(),
            with(c),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
