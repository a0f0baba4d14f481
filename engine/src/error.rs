//! Errors of the engine's operations, by what the caller should do about them.

/// What went wrong in an engine operation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The thing asked for does not exist (maps to 404 / a CLI error).
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but contradicts what exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (400 / 422).
    #[error("{0}")]
    Invalid(String),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("could not apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
