//! `upiflow dags ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use upiflow_engine::dag;
use upiflow_engine::store::dags::VersionCache;
use upiflow_engine::store::{dags as store_dags, runs as store_runs};

use super::{connect, database_url, find_dag, table};
use crate::Global;

#[derive(Subcommand, Clone)]
pub enum DagsCommand {
    /// Every DAG in the folder, with its state in the database and the errors of invalid files.
    List,
    /// Check DAG files (a file or a folder; default the DAGs folder); exit 1 on any error.
    Validate { path: Option<PathBuf> },
    /// Stop scheduling new runs and tasks of a DAG.
    Pause { dag_id: String },
    /// Resume a paused DAG.
    Unpause { dag_id: String },
    /// Intervals the scheduler skipped (catch-up off or paused) that still have no run.
    Missed { dag_id: String },
}

pub async fn run(g: &Global, c: DagsCommand) -> Result<ExitCode> {
    match c {
        DagsCommand::List => list(g).await,
        DagsCommand::Validate { path } => validate(g, path).await,
        DagsCommand::Pause { dag_id } => set_paused(g, &dag_id, true).await,
        DagsCommand::Unpause { dag_id } => set_paused(g, &dag_id, false).await,
        DagsCommand::Missed { dag_id } => missed(g, &dag_id).await,
    }
}

async fn validate(g: &Global, path: Option<PathBuf>) -> Result<ExitCode> {
    let path = path.unwrap_or_else(|| g.dags_folder.clone());
    let registry = upiflow_tasks::registry();
    let mut folder = if path.is_dir() {
        dag::load_folder(&path, &registry)
    } else {
        match dag::load_dag_file(&path, &registry) {
            Ok(d) => dag::Folder {
                dags: vec![d],
                errors: vec![],
            },
            Err(e) => dag::Folder {
                dags: vec![],
                errors: e,
            },
        }
    };
    // Pools live in the database: with one configured, a task naming a pool that does not
    // exist (or more slots than it has) is an error at its line; without, only the files.
    if database_url(g).is_ok() {
        let pool = connect(g).await?;
        let mut conn = pool.acquire().await?;
        let pools = upiflow_engine::store::pools::sizes(&mut conn).await?;
        folder.check_pools(&pools);
        // Connections and variables named by tasks: the database's, or the environment's.
        use upiflow_engine::store::secrets as stored;
        let conns: std::collections::BTreeSet<String> = stored::all_connections(&mut conn, false)
            .await?
            .into_iter()
            .map(|c| c.conn_id)
            .collect();
        let vars: std::collections::BTreeSet<String> = stored::all_variables(&mut conn, false)
            .await?
            .into_iter()
            .map(|v| v.key)
            .collect();
        folder.check_references(|r| match r {
            upiflow_engine::Reference::Connection(id) => {
                conns.contains(id) || upiflow_engine::secrets::Secrets::connection_in_env(id)
            }
            upiflow_engine::Reference::Variable(key) => {
                vars.contains(key) || upiflow_engine::secrets::variable_from_env(key).is_some()
            }
        });
    } else {
        let named: std::collections::BTreeSet<&str> = folder
            .dags
            .iter()
            .flat_map(|d| d.pools().into_keys())
            .filter(|p| *p != dag::DEFAULT_POOL)
            .collect();
        if !named.is_empty() {
            eprintln!(
                "note: pools {} not checked: no database (set DATABASE_URL to check them)",
                named.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        // Connections and variables the environment supplies are known without a database.
        let unchecked: std::collections::BTreeSet<String> = folder
            .dags
            .iter()
            .flat_map(|d| d.references().iter())
            .filter_map(|r| match &r.reference {
                upiflow_engine::Reference::Connection(id)
                    if !upiflow_engine::secrets::Secrets::connection_in_env(id) =>
                {
                    Some(format!("connection {id}"))
                }
                upiflow_engine::Reference::Variable(key)
                    if upiflow_engine::secrets::variable_from_env(key).is_none() =>
                {
                    Some(format!("variable {key}"))
                }
                _ => None,
            })
            .collect();
        if !unchecked.is_empty() {
            eprintln!(
                "note: {} not checked: no database (set DATABASE_URL to check them)",
                unchecked.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let dag::Folder { dags, mut errors } = folder;
    errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    for d in &dags {
        println!("ok    {} ({} tasks) {}", d.dag_id, d.tasks.len(), d.fileloc);
    }
    for e in &errors {
        eprintln!("error {e}");
    }
    if errors.is_empty() {
        println!("{} DAG(s) valid", dags.len());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} error(s)", errors.len());
        Ok(ExitCode::FAILURE)
    }
}

async fn list(g: &Global) -> Result<ExitCode> {
    let folder = dag::load_folder(&g.dags_folder, &upiflow_tasks::registry());
    // The database adds pause state and last runs; without one, the files still list.
    let db = match database_url(g) {
        Ok(_) => Some(connect(g).await?),
        Err(_) => None,
    };
    let mut t = table(&[
        "dag_id", "schedule", "timezone", "tasks", "paused", "last run", "state", "file",
    ]);
    for d in &folder.dags {
        let (mut paused, mut last, mut state) = (String::new(), String::new(), String::new());
        if let Some(pool) = &db {
            let mut conn = pool.acquire().await?;
            if let Some(row) = store_dags::get(&mut conn, &d.dag_id).await? {
                paused = row.is_paused.to_string();
            }
            if let Some(r) = store_runs::list(&mut conn, &d.dag_id, 1, 0).await?.pop() {
                last = r.logical_date.to_rfc3339();
                state = r.state.to_string();
            }
        }
        t.add_row(vec![
            d.dag_id.clone(),
            d.schedule.clone(),
            d.timezone.clone(),
            d.tasks.len().to_string(),
            paused,
            last,
            state,
            d.fileloc.clone(),
        ]);
    }
    if let Some(pool) = &db {
        // DAGs whose file broke keep running their last good version: show them too.
        let mut conn = pool.acquire().await?;
        for row in store_dags::list(&mut conn).await? {
            if folder.dags.iter().any(|d| d.dag_id == row.dag_id) {
                continue;
            }
            let status = if row.is_active {
                "file invalid: running its last good version"
            } else {
                "file removed"
            };
            t.add_row(vec![
                row.dag_id,
                row.schedule.unwrap_or_default(),
                row.timezone.unwrap_or_default(),
                String::new(),
                row.is_paused.to_string(),
                String::new(),
                status.to_string(),
                row.fileloc.unwrap_or_default(),
            ]);
        }
    }
    println!("{t}");
    for e in &folder.errors {
        eprintln!("error {e}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_paused(g: &Global, dag_id: &str, paused: bool) -> Result<ExitCode> {
    let event = if paused {
        "cli_dag_pause"
    } else {
        "cli_dag_unpause"
    };
    super::Audit::new(event)
        .dag(dag_id)
        .extra("is_paused", paused)
        .around(g, do_set_paused(g, dag_id, paused))
        .await
}

async fn do_set_paused(g: &Global, dag_id: &str, paused: bool) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let mut tx = pool.begin().await?;
    if store_dags::get(&mut tx, dag_id).await?.is_none() {
        // Known to the files but not yet to the database: record it first.
        let d = find_dag(g, dag_id)?;
        store_dags::sync(&mut tx, &d).await?;
    }
    upiflow_engine::ops::set_paused(&mut tx, &VersionCache::new(), dag_id, paused).await?;
    tx.commit().await?;
    println!("{dag_id} {}", if paused { "paused" } else { "unpaused" });
    Ok(ExitCode::SUCCESS)
}

async fn missed(g: &Global, dag_id: &str) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let mut conn = pool.acquire().await?;
    let rows = upiflow_engine::timetable::open_missed(&mut conn, dag_id).await?;
    let mut t = table(&["interval start", "interval end", "reason", "recorded"]);
    for m in &rows {
        t.add_row(vec![
            m.data_interval_start.to_rfc3339(),
            m.data_interval_end.to_rfc3339(),
            m.reason.to_string(),
            super::fmt_time(Some(m.recorded_at)),
        ]);
    }
    println!("{t}");
    println!(
        "{} missed interval(s); `upiflow backfill {dag_id} --missed` runs them",
        rows.len()
    );
    Ok(ExitCode::SUCCESS)
}
