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
pub mod tokens;
pub mod web;

use std::process::ExitCode;
use std::sync::Mutex;

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

/// The first pool this process opened with [`connect`], so the CLI's audit row reuses the
/// command's connections instead of opening its own.
static OPENED: std::sync::OnceLock<PgPool> = std::sync::OnceLock::new();

/// Connects and brings the schema up to date.
pub async fn connect(g: &Global) -> Result<PgPool> {
    let url = database_url(g)?;
    let pool = transient::retry("connect", || store::connect(&url, 10))
        .await
        .context("cannot connect to the database")?;
    transient::retry("migrate", || store::migrate(&pool))
        .await
        .context("cannot migrate the database")?;
    let _ = OPENED.set(pool.clone());
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
    Audit::new("cli_migratedb")
        .around(g, async {
            connect(g).await?;
            println!("database is up to date");
            Ok(ExitCode::SUCCESS)
        })
        .await
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

/// The operating-system user running this command, as Airflow's CLI records it
/// (`getpass.getuser()`: `LOGNAME`, `USER`, `LNAME`, `USERNAME`, then the password database).
pub fn os_user() -> String {
    for var in ["LOGNAME", "USER", "LNAME", "USERNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// A changing command's audit-log row (`upiflow_engine::audit`), named as Airflow's CLI names
/// its events (`cli_` and the command's function: `cli_dag_trigger`, `cli_task_clear`, ...).
/// Build it from the arguments, run the command [`Audit::around`] it, and add what is only
/// known afterwards (a run id) with [`Audit::note_run`].
pub struct Audit(Mutex<upiflow_engine::audit::Event>);

impl Audit {
    pub fn new(event: &str) -> Self {
        use upiflow_engine::audit::{Event, Outcome, Source};
        let mut e = Event::new(event, Source::Cli, Outcome::Success);
        e.owner = Some(os_user());
        e.extra = Some(serde_json::Value::Object(serde_json::Map::new()));
        Self(Mutex::new(e))
    }

    fn with(self, f: impl FnOnce(&mut upiflow_engine::audit::Event)) -> Self {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
        self
    }

    pub fn dag(self, dag_id: &str) -> Self {
        self.with(|e| e.dag_id = Some(dag_id.to_string()))
    }

    pub fn run(self, run_id: &str) -> Self {
        self.with(|e| e.run_id = Some(run_id.to_string()))
    }

    pub fn task(self, task_id: &str) -> Self {
        self.with(|e| e.task_id = Some(task_id.to_string()))
    }

    /// One more field of `extra` (never a secret: callers pass names, not values).
    pub fn extra(self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.with(|e| set_extra(e, key, value.into()))
    }

    /// The run the command made or changed, once known.
    pub fn note_run(&self, run_id: &str, logical_date: Option<chrono::DateTime<chrono::Utc>>) {
        let mut e = self.0.lock().unwrap_or_else(|p| p.into_inner());
        e.run_id = Some(run_id.to_string());
        e.logical_date = logical_date.or(e.logical_date);
    }

    /// Runs `body`, then records how it ended: `success` when it ran (whatever exit code it
    /// chose, say `--wait` on a run that failed), `failed` with the error's text in `extra`.
    /// A failure to record is a warning on stderr; the command's own result stands.
    pub async fn around(
        &self,
        g: &Global,
        body: impl Future<Output = Result<ExitCode>>,
    ) -> Result<ExitCode> {
        let result = body.await;
        let mut e = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(err) = &result {
            e.outcome = upiflow_engine::audit::Outcome::Failed;
            set_extra(&mut e, "error", format!("{err:#}").into());
        }
        set_extra(&mut e, "host_name", host_name().into());
        record_cli(g, &e).await;
        result
    }
}

fn set_extra(e: &mut upiflow_engine::audit::Event, key: &str, value: serde_json::Value) {
    if let Some(serde_json::Value::Object(m)) = &mut e.extra {
        m.insert(key.to_string(), value);
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// How long the CLI waits for the database to record its audit row.
const RECORD_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

async fn record_cli(g: &Global, e: &upiflow_engine::audit::Event) {
    // No database at all: the command itself has said so, and there is nowhere to record.
    let Ok(url) = database_url(g) else {
        return;
    };
    let recorded = tokio::time::timeout(RECORD_WITHIN, async {
        let pool = match OPENED.get() {
            Some(pool) => pool.clone(),
            None => store::connect(&url, 1).await?,
        };
        upiflow_engine::audit::record(&pool, e).await
    })
    .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            let cause = std::error::Error::source(&err)
                .map_or_else(|| err.to_string(), ToString::to_string);
            tracing::warn!(event = %e.event, error = %cause, "could not record the audit event");
        }
        Err(_) => {
            tracing::warn!(event = %e.event, "could not record the audit event in time");
        }
    }
}
