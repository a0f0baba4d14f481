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

impl EngineError {
    /// How a caller should treat this error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Invalid(_) => ErrorKind::Invalid,
            e if e.is_transient() => ErrorKind::Unavailable,
            EngineError::Db(e) => db_kind(e),
            _ => ErrorKind::Internal,
        }
    }
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
