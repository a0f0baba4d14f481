//! Errors of the engine's operations, by what the caller should do about them.
//!
//! Callers outside the engine decide on [`EngineError::kind`] (not on variants) and show the
//! error's `Display`: a web handler turns the kind into a status, the CLI prints the text.

/// What a caller should do about an error: the engine's classification, independent of the
/// variant (a unique-key violation from the database is a [`ErrorKind::Conflict`] like an
/// explicit one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked for does not exist (404).
    NotFound,
    /// Well-formed, but contradicts what exists (409).
    Conflict,
    /// The request itself is wrong (400 / 422).
    Invalid,
    /// The database failed transiently; running the same thing again can succeed (503).
    Unavailable,
    /// Anything else: a bug or a broken environment (500, cause logged).
    Internal,
}

/// What went wrong in an engine operation. Each variant carries the data its message needs;
/// [`EngineError::kind`] says what a caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no DAG `{0}`")]
    DagNotFound(String),
    #[error("no stored version {hash} of DAG `{dag_id}`")]
    VersionNotFound { dag_id: String, hash: String },
    #[error("stored version {hash} of `{dag_id}` is unreadable: {reason}")]
    VersionUnreadable {
        dag_id: String,
        hash: String,
        reason: String,
    },
    #[error("no run `{run_id}` of DAG `{dag_id}`")]
    RunNotFound { dag_id: String, run_id: String },
    #[error("no run with id {0}")]
    RunPkNotFound(i64),
    #[error("DAG `{dag_id}` has no task `{task_id}`")]
    TaskNotFound { dag_id: String, task_id: String },
    #[error("no backfill {0}")]
    BackfillNotFound(i64),
    /// A run with the same logical date exists already (`existing` is its run id).
    #[error(
        "DAG `{dag_id}` already has a run for logical date {}: {existing} (to run it again: upiflow clear {dag_id} {existing} TASK --downstream)",
        .logical_date.to_rfc3339()
    )]
    RunExists {
        dag_id: String,
        logical_date: chrono::DateTime<chrono::Utc>,
        existing: String,
    },
    #[error("cannot clear while running: {} (wait for the try to end)", .0.join(", "))]
    ClearWhileRunning(Vec<String>),
    #[error("no pool `{0}`")]
    PoolNotFound(String),
    #[error("pool `{0}` already exists")]
    PoolExists(String),
    // #14 runsapi: deleting runs.
    /// A run with a running try is not deleted: upiflow does not stop a running try.
    #[error(
        "cannot delete run `{run_id}` of `{dag_id}` while task instances are running: {} (upiflow does not stop a running try; wait for it to end or mark the run failed first)",
        .running.join(", ")
    )]
    DeleteWhileRunning {
        dag_id: String,
        run_id: String,
        running: Vec<String>,
    },
    #[error("pool name `{0}` must be 1-256 characters of letters, digits, `_`, `-` or `.`")]
    PoolNameInvalid(String),
    #[error("{}", slots_message(*.0))]
    PoolSlotsInvalid(i64),
    #[error(
        "`default_pool` cannot be deleted (resize it instead: upiflow pools set default_pool SLOTS)"
    )]
    DefaultPoolUndeletable,
    /// The pool is named by current DAG versions (`dag.task`) or held by task instances
    /// that have not finished (`dag/run/task (state)`).
    #[error("{}", pool_in_use(.pool, .dag_tasks, .task_instances))]
    PoolInUse {
        pool: String,
        dag_tasks: Vec<String>,
        task_instances: Vec<String>,
    },
    /// Marking would change nothing: every selected task instance is in that state already.
    #[error("task `{task_id}` is already in state {state} (nothing to mark)")]
    MarkUnchanged { task_id: String, state: String },
    /// A note longer than Airflow allows (1000 characters).
    #[error("a note may have at most {max} characters; this one has {len}")]
    NoteTooLong { len: usize, max: usize },
    // --- connections, variables and secrets (#12, "secrets" part) ---
    #[error(
        "connection id `{0}` must be 1-250 characters of letters, digits and `_ - . : / \\ # ! ( )`"
    )]
    ConnIdInvalid(String),
    #[error("connection `{conn_id}`: invalid URI: {reason}")]
    ConnUriInvalid { conn_id: String, reason: String },
    #[error("connection `{conn_id}`: {reason}")]
    ConnInvalid { conn_id: String, reason: String },
    #[error("connection `{conn_id}` (type `{conn_type}`): {reason}")]
    ConnUnsupported {
        conn_id: String,
        conn_type: String,
        reason: String,
    },
    #[error("no connection `{0}`")]
    ConnectionNotFound(String),
    #[error("connection `{0}` already exists")]
    ConnectionExists(String),
    #[error("variable key `{0}` must be 1-250 characters, without control characters")]
    VariableKeyInvalid(String),
    #[error("no variable `{0}`")]
    VariableNotFound(String),
    #[error("variable `{0}` already exists")]
    VariableExists(String),
    /// The Fernet key text is unusable (never carries the key itself).
    #[error("UPIFLOW_FERNET_KEY: {0}")]
    FernetKeyInvalid(String),
    /// A stored value does not decrypt with any configured key.
    #[error(
        "cannot decrypt {0}: the Fernet key does not match (UPIFLOW_FERNET_KEY must list the key it was encrypted with)"
    )]
    DecryptFailed(String),
    /// A stored value is encrypted and no key is configured.
    #[error(
        "cannot decrypt {0}: it is encrypted and no Fernet key is configured (set UPIFLOW_FERNET_KEY)"
    )]
    FernetKeyMissing(String),
    /// An import file (connections or variables) that cannot be imported; nothing was written.
    #[error("{0} (nothing was imported)")]
    ImportInvalid(String),
    // --- end of the secrets part ---
    // --- db clean (#13, "clean" part) ---
    #[error("no table `{name}` to clean; valid tables: {}", .valid.join(", "))]
    CleanTableUnknown { name: String, valid: Vec<String> },
    // --- end of the clean part ---
    // --- sign-in throttling (#17, "throttle" part) ---
    /// `UPIFLOW_AUTH_RATE_LIMIT` or `UPIFLOW_AUTH_RATE_LIMITED` is unusable (the message
    /// names the variable, the value and what is expected).
    #[error("{0}")]
    AuthRateLimitInvalid(String),
    // --- end of the throttle part ---
    // --- API keys (#17, "keys" part) ---
    #[error("API key name `{0}` must be 1-64 characters of letters, digits, `_`, `-` or `.`")]
    ApiKeyNameInvalid(String),
    #[error(
        "an API key named `{0}` exists already (revoke it first: upiflow tokens revoke --name {0})"
    )]
    ApiKeyExists(String),
    #[error("no API key named `{0}` (see upiflow tokens list)")]
    ApiKeyNotFound(String),
    #[error("the API key `{0}` is revoked already")]
    ApiKeyRevoked(String),
    /// An unusable `--expires-in` (the reason says why).
    #[error("--expires-in: {0}")]
    ApiKeyExpiryInvalid(String),
    // --- end of the keys part ---
    // --- DAG deletion, versions, sources and favourites (#14, "dags2" part) ---
    /// As Airflow's `delete_dag`, a DAG with running task instances is not deleted.
    #[error(
        "cannot delete DAG `{dag_id}` while task instances are running: {} (upiflow does not stop a running try; pause the DAG and wait for them to end)",
        .running.join(", ")
    )]
    DagDeleteWhileRunning {
        dag_id: String,
        running: Vec<String>,
    },
    #[error("DAG `{dag_id}` has no version {number}")]
    DagVersionNotFound { dag_id: String, number: i64 },
    /// The version was stored before upiflow kept the DAG file's text (or from a definition
    /// that came without its file): there is no text to show, and none is made up.
    #[error(
        "the source of version {number} of DAG `{dag_id}` was not kept (the version was recorded before upiflow stored DAG file text; a later version read from the file has it)"
    )]
    DagSourceMissing { dag_id: String, number: i64 },
    #[error("DAG `{0}` is already marked as favorite")]
    FavoriteExists(String),
    #[error("DAG `{0}` is not marked as favorite")]
    FavoriteMissing(String),
    // --- end of the dags2 part ---
    // --- #14 ops2: backfill pause, unpause and cancel ---
    /// Pausing, unpausing or cancelling a backfill that is completed (Airflow's 409).
    #[error("Backfill {0} is already completed.")]
    BackfillCompleted(i64),
    // --- end of the ops2 part ---
    // --- #14 "runs2": task-instance deletion, custom run ids ---
    #[error(
        "task instance `{task_id}` of run `{run_id}` of `{dag_id}` is running: upiflow does not \
         stop a running try, so it cannot be deleted; wait for it to end"
    )]
    TiDeleteWhileRunning {
        dag_id: String,
        run_id: String,
        task_id: String,
    },
    #[error("run `{run_id}` of `{dag_id}` has no task instance `{task_id}`")]
    TiNotFound {
        dag_id: String,
        run_id: String,
        task_id: String,
    },
    /// A run id a client chose that upiflow refuses (the reason says why).
    #[error("{0}")]
    RunIdInvalid(String),
    #[error("The run with dag_id: `{dag_id}` and run_id: `{run_id}` already exists")]
    RunIdExists { dag_id: String, run_id: String },
    // --- end of the runs2 part ---
    #[error(transparent)]
    Conf(#[from] crate::conf::ConfError),
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("could not apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// How a caller should treat this error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::DagNotFound(_)
            | EngineError::VersionNotFound { .. }
            | EngineError::RunNotFound { .. }
            | EngineError::RunPkNotFound(_)
            | EngineError::TaskNotFound { .. }
            | EngineError::BackfillNotFound(_)
            | EngineError::PoolNotFound(_)
            | EngineError::ConnectionNotFound(_)
            | EngineError::VariableNotFound(_)
            | EngineError::ApiKeyNotFound(_)
            | EngineError::DagVersionNotFound { .. }
            | EngineError::DagSourceMissing { .. }
            | EngineError::TiNotFound { .. } => ErrorKind::NotFound,
            EngineError::RunExists { .. }
            | EngineError::ClearWhileRunning(_)
            | EngineError::DeleteWhileRunning { .. }
            | EngineError::PoolExists(_)
            | EngineError::PoolInUse { .. }
            | EngineError::MarkUnchanged { .. }
            | EngineError::ConnectionExists(_)
            | EngineError::VariableExists(_)
            | EngineError::ApiKeyExists(_)
            | EngineError::ApiKeyRevoked(_)
            | EngineError::DagDeleteWhileRunning { .. }
            | EngineError::FavoriteExists(_)
            | EngineError::FavoriteMissing(_)
            | EngineError::BackfillCompleted(_)
            | EngineError::TiDeleteWhileRunning { .. }
            | EngineError::RunIdExists { .. } => ErrorKind::Conflict,
            EngineError::PoolNameInvalid(_)
            | EngineError::PoolSlotsInvalid(_)
            | EngineError::DefaultPoolUndeletable
            | EngineError::NoteTooLong { .. }
            | EngineError::VersionUnreadable { .. }
            | EngineError::Conf(_)
            | EngineError::Backfill(_)
            | EngineError::ConnIdInvalid(_)
            | EngineError::ConnUriInvalid { .. }
            | EngineError::ConnInvalid { .. }
            | EngineError::ConnUnsupported { .. }
            | EngineError::VariableKeyInvalid(_)
            | EngineError::ImportInvalid(_)
            | EngineError::CleanTableUnknown { .. }
            | EngineError::ApiKeyNameInvalid(_)
            | EngineError::ApiKeyExpiryInvalid(_)
            | EngineError::RunIdInvalid(_) => ErrorKind::Invalid,
            // A configuration problem of the deployment, not of the request.
            EngineError::FernetKeyInvalid(_)
            | EngineError::DecryptFailed(_)
            | EngineError::FernetKeyMissing(_)
            | EngineError::AuthRateLimitInvalid(_) => ErrorKind::Internal,
            EngineError::Cluster(c) => c.kind(),
            EngineError::Db(e) => db_kind(e),
            EngineError::Migrate(_) if self.is_transient() => ErrorKind::Unavailable,
            EngineError::Migrate(_) => ErrorKind::Internal,
        }
    }

    /// The database error behind this one, if there is one.
    pub fn db_error(&self) -> Option<&sqlx::Error> {
        match self {
            EngineError::Db(e) | EngineError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => {
                Some(e)
            }
            _ => None,
        }
    }

    /// The text to show a client: the error's own message, or for a database error the
    /// violated constraint ([`db_message`]); never SQL.
    pub fn client_message(&self) -> String {
        self.db_error().map_or_else(|| self.to_string(), db_message)
    }
}

fn slots_message(slots: i64) -> String {
    let bound = if slots > 0 {
        format!(" and at most {}", i32::MAX)
    } else {
        String::new()
    };
    format!("pool slots must be a whole number of at least 0{bound} (not {slots})")
}

fn pool_in_use(pool: &str, dag_tasks: &[String], task_instances: &[String]) -> String {
    let mut out = format!("pool `{pool}` is in use");
    if !dag_tasks.is_empty() {
        out.push_str(&format!(
            "; tasks of current DAG versions run in it: {} (move them to another pool first)",
            dag_tasks.join(", ")
        ));
    }
    if !task_instances.is_empty() {
        out.push_str(&format!(
            "; task instances that have not finished hold or wait for its slots: {} (let them finish first)",
            task_instances.join(", ")
        ));
    }
    out
}

/// The kind of a database error that is not transient: a violated unique key is a conflict,
/// a violated foreign key, check or not-null constraint or a value the column cannot hold
/// is invalid input; the rest is internal.
pub fn db_kind(e: &sqlx::Error) -> ErrorKind {
    if crate::transient::is_transient_sqlx(e) {
        return ErrorKind::Unavailable;
    }
    let sqlx::Error::Database(db) = e else {
        return ErrorKind::Internal;
    };
    match db.code().as_deref() {
        // unique_violation, exclusion_violation
        Some("23505" | "23P01") => ErrorKind::Conflict,
        // foreign_key, not_null, check violations; class 22: data exceptions (a value out of
        // range, a malformed text representation, a string too long)
        Some(c) if matches!(c, "23503" | "23502" | "23514") || c.starts_with("22") => {
            ErrorKind::Invalid
        }
        _ => ErrorKind::Internal,
    }
}

/// A message for a database error of kind conflict or invalid, naming the constraint (never
/// the statement or the row): safe to show a client.
pub fn db_message(e: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = e else {
        return "database error".into();
    };
    let what = match db_kind(e) {
        ErrorKind::Conflict => "conflicts with an existing record",
        ErrorKind::Invalid => "is not valid for the database",
        _ => return "database error".into(),
    };
    match db.constraint() {
        Some(c) => format!("the request {what} (constraint {c})"),
        None => format!("the request {what}"),
    }
}
