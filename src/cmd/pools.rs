//! `upiflow pools set|list|delete`, as Airflow's `airflow pools ...`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use upiflow_engine::pools;
use upiflow_engine::store::pools as store_pools;

use super::{connect, table};
use crate::Global;

#[derive(Subcommand, Clone)]
pub enum PoolsCommand {
    /// Create a pool or resize it (a whole number of slots, 0 or more).
    Set {
        name: String,
        #[arg(allow_negative_numbers = true)]
        slots: i64,
        /// Left out, an existing pool keeps its description; "" removes it.
        #[arg(long)]
        description: Option<String>,
    },
    /// Every pool with its size and the slots its task instances hold and wait for.
    List,
    /// Delete a pool that no current DAG and no unfinished task instance uses.
    Delete { name: String },
}

pub async fn run(g: &Global, c: PoolsCommand) -> Result<ExitCode> {
    match c {
        PoolsCommand::Set {
            name,
            slots,
            description,
        } => set(g, &name, slots, description.as_deref()).await,
        PoolsCommand::List => super::rerun_on_transient("pools list", async || list(g).await).await,
        PoolsCommand::Delete { name } => delete(g, &name).await,
    }
}

async fn set(g: &Global, name: &str, slots: i64, description: Option<&str>) -> Result<ExitCode> {
    super::Audit::new("cli_pool_set")
        .extra("pool_name", name)
        .extra("slots", slots)
        .around(g, do_set(g, name, slots, description))
        .await
}

async fn do_set(g: &Global, name: &str, slots: i64, description: Option<&str>) -> Result<ExitCode> {
    let db = connect(g).await?;
    let changed = pools::set(&db, name, slots, description).await?;
    for w in changed.warnings() {
        eprintln!("warning: {w}");
    }
    let verb = if changed.created { "created" } else { "set" };
    println!("pool {} {verb}: {} slots", name, changed.pool.pool.slots);
    Ok(ExitCode::SUCCESS)
}

async fn list(g: &Global) -> Result<ExitCode> {
    let db = connect(g).await?;
    let mut conn = db.acquire().await?;
    let rows = store_pools::all(&mut conn).await?;
    let mut t = table(&["pool", "slots", "running", "waiting", "open", "description"]);
    for r in &rows {
        t.add_row(vec![
            r.pool.name.clone(),
            r.pool.slots.to_string(),
            r.running.to_string(),
            r.scheduled.to_string(),
            r.open().to_string(),
            r.pool.description.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

async fn delete(g: &Global, name: &str) -> Result<ExitCode> {
    super::Audit::new("cli_pool_delete")
        .extra("pool_name", name)
        .around(g, async {
            let db = connect(g).await?;
            pools::delete(&db, name).await?;
            println!("pool {name} deleted");
            Ok(ExitCode::SUCCESS)
        })
        .await
}
