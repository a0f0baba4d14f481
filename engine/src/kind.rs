//! The seam between the engine and the task kinds: the engine runs any `TaskKind` it is
//! given through a `Registry`, and knows none of them itself.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use sqlx::PgPool;

use crate::logs::TaskLog;
use crate::secrets::Secrets;

/// Where a task is declared, for kinds that resolve files relative to the DAG file.
pub struct PrepareCtx<'a> {
    pub dag_id: &'a str,
    pub task_id: &'a str,
    /// The folder holding the DAG file.
    pub dag_dir: &'a Path,
    /// What the task names outside its DAG, with the key naming it, as `prepare` reports it
    /// ([`PrepareCtx::uses`]): whether those exist is only known where the database is
    /// (`dags validate`), not while a file is read.
    pub references: &'a RefCell<Vec<(String, Reference)>>,
}

impl PrepareCtx<'_> {
    /// Records that the task's `key` names `reference`.
    pub fn uses(&self, key: &str, reference: Reference) {
        self.references
            .borrow_mut()
            .push((key.to_string(), reference));
    }

    pub fn uses_connection(&self, key: &str, conn_id: &str) {
        self.uses(key, Reference::Connection(conn_id.to_string()));
    }

    pub fn uses_variable(&self, key: &str, name: &str) {
        self.uses(key, Reference::Variable(name.to_string()));
    }
}

/// A connection or variable a task names (`conn = "ID"`, `{{ var.NAME }}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    Connection(String),
    Variable(String),
}

/// A kind-specific key that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareError {
    /// The offending key, so the error can point at its line; `None` for the whole task.
    pub key: Option<String>,
    pub message: String,
}

impl PrepareError {
    pub fn at(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    pub fn task(message: impl Into<String>) -> Self {
        Self {
            key: None,
            message: message.into(),
        }
    }
}

/// `?` on a single problem inside `prepare`, which reports a list.
impl From<PrepareError> for Vec<PrepareError> {
    fn from(e: PrepareError) -> Self {
        vec![e]
    }
}

/// How a try failed; the variant decides whether the remaining retries are used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// A failure that another try may fix (network, lock timeout, exit status).
    #[error("{0}")]
    Retryable(String),
    /// A failure no retry can fix (bad configuration): the task fails at once.
    #[error("{0}")]
    Fatal(String),
}

/// Everything a running try may know about itself.
pub struct TaskContext {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub max_tries: i32,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    /// The logical date as a calendar day in the DAG's time zone.
    pub ds: NaiveDate,
    /// The DAG's `allowed_lateness` (zero when it has none).
    pub allowed_lateness: std::time::Duration,
    /// The DAG's params overridden by the run's conf.
    pub params: Map<String, Value>,
    /// The orchestrator's database, which is also the warehouse (`DATABASE_URL`).
    pub pool: PgPool,
    /// Connections and variables (environment first, then the database). A kind that
    /// reveals a secret through them hides it in `log` ([`TaskLog::hide`]).
    pub secrets: Secrets,
    pub log: TaskLog,
}

/// A kind of task (`sql`, `command`, ...).
pub trait TaskKind: Send + Sync + 'static {
    /// The name used as `kind = "..."` in DAG files.
    fn name(&self) -> &'static str;
    /// Keys this kind accepts in a task table, besides the ones every task has.
    fn keys(&self) -> &'static [&'static str];
    /// Checks the kind's keys and resolves them (reading referenced files) into the config
    /// stored with the DAG version, so a run always executes what it was created with.
    /// `keys` holds only names from [`TaskKind::keys`]. On failure, every problem found
    /// (never an empty list), so a file's mistakes are all reported in one pass.
    fn prepare(&self, ctx: &PrepareCtx<'_>, keys: toml::Table) -> Result<Value, Vec<PrepareError>>;
    /// Runs one try. Dropping the future must stop the work (timeouts rely on it).
    fn run<'a>(
        &'a self,
        ctx: &'a TaskContext,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), TaskError>>;
}

/// The task kinds available to a process.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn TaskKind>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, kind: impl TaskKind) -> Self {
        self.kinds.insert(kind.name(), Arc::new(kind));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn TaskKind>> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}
