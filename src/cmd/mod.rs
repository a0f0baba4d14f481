//! The commands' bodies; `main.rs` only parses and dispatches.

pub mod backfill;
pub mod clean;
pub mod dags;
pub mod pipeline;
pub mod pools;
pub mod runs;
pub mod secrets;
pub mod serve;
pub mod tasks;
pub mod web;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use sqlx::PgPool;
use upiflow_engine::dag::{self, Dag};
use upiflow_engine::{EngineError, store, transient};

use crate::Global;

/// File in the data directory where a running standalone publishes its private database.
pub const URL_FILE: &str = "database_url";

/// The database to use: DATABASE_URL, else the private cluster of a running standalone.
pub fn database_url(g: &Global) -> Result<String> {
    if let Some(url) = &g.database_url {
        return Ok(url.clone());
    }
    match std::fs::read_to_string(g.data_dir.join(URL_FILE)) {
        Ok(url) => Ok(url.trim().to_string()),
        Err(_) => bail!(
            "no database: set DATABASE_URL (or --database-url), or start `upiflow standalone` in this folder"
        ),
    }
}

/// Connects and brings the schema up to date.
pub async fn connect(g: &Global) -> Result<PgPool> {
    let url = database_url(g)?;
    let pool = transient::retry("connect", || store::connect(&url, 10))
        .await
        .context("cannot connect to the database")?;
    transient::retry("migrate", || store::migrate(&pool))
        .await
        .context("cannot migrate the database")?;
    Ok(pool)
}

/// Whether a command failed only on a transient database error (anywhere in its chain).
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<EngineError>()
            .is_some_and(EngineError::is_transient)
            || c.downcast_ref::<sqlx::Error>()
                .is_some_and(transient::is_transient_sqlx)
    })
}

/// Runs a command that only reads (or is idempotent) again when it failed on a transient
/// database error, within the engine's retry budget, so a Postgres restart or a lost
/// connection does not fail it.
pub async fn rerun_on_transient(
    what: &str,
    mut command: impl AsyncFnMut() -> Result<ExitCode>,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        match command().await {
            Err(e) if is_transient(&e) && started.elapsed() < transient::GIVE_UP_AFTER => {
                tracing::warn!(command = what, error = %format!("{e:#}"), "transient database error; running the command again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

pub async fn db_migrate(g: &Global) -> Result<ExitCode> {
    connect(g).await?;
    println!("database is up to date");
    Ok(ExitCode::SUCCESS)
}

/// Reads one DAG from the DAGs folder, with every problem of its file if it is invalid.
pub fn find_dag(g: &Global, dag_id: &str) -> Result<Dag> {
    let folder = dag::load_folder(&g.dags_folder, &upiflow_tasks::registry());
    if let Some(d) = folder.dags.into_iter().find(|d| d.dag_id == dag_id) {
        return Ok(d);
    }
    let mut msg = format!("no valid DAG `{dag_id}` in {}", g.dags_folder.display());
    if !folder.errors.is_empty() {
        msg.push_str("; invalid files:");
        for e in folder.errors {
            msg.push_str(&format!("\n  {e}"));
        }
    }
    bail!(msg)
}

/// Refuses a DAG whose tasks name a pool the database does not have, or more slots than it
/// has (every such problem, each with its file and line), before anything is recorded.
pub async fn check_dag_pools(pool: &sqlx::PgPool, dag: &Dag) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let pools = upiflow_engine::store::pools::sizes(&mut conn).await?;
    let problems = dag::check_pools(dag, &pools);
    if problems.is_empty() {
        return Ok(());
    }
    let mut msg = format!("DAG `{}` cannot run with the pools that exist:", dag.dag_id);
    for e in problems {
        msg.push_str(&format!("\n  {e}"));
    }
    bail!(msg)
}

/// Says so on stderr when the database's current version of the DAG (`current`, which new
/// runs use) is not the definition read from the local DAGs folder: the database is the one
/// source of truth, and only the scheduler's DAG-file sync moves it.
pub fn warn_if_not_current(local: &Dag, current: &str) {
    let hash = local.version_hash();
    if hash != current {
        eprintln!(
            "warning: {} differs from the version of `{}` the database holds; runs use the \
             database's version {} (not this file's {}). The scheduler records a changed file \
             the next time it reads its DAGs folder.",
            local.fileloc,
            local.dag_id,
            short(current),
            short(&hash)
        );
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    t
}

pub fn fmt_time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

pub fn fmt_duration(
    start: Option<chrono::DateTime<chrono::Utc>>,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    match (start, end) {
        (Some(s), Some(e)) => format!("{:.3}s", (e - s).num_milliseconds() as f64 / 1000.0),
        _ => String::new(),
    }
}
