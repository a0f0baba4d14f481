//! What `prepare` refuses in a `quality` task's `checks`, by kind, with its data. `Display`
//! is the message the DAG file's error shows (pinned by `tests/errors.rs`).

use super::Test;
use super::values::KNOWN_PARAMS;
use crate::sql_params::LexError;

const EXAMPLE: &str = "{ test = \"not_null\", table = \"t\", column = \"c\" }";

/// The test names, for messages.
fn names() -> String {
    let names: Vec<_> = Test::ALL.iter().map(|t| t.as_str()).collect();
    names.join(", ")
}

/// A problem with the `checks` array.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QualityError {
    #[error("must list at least one check: the array is empty")]
    NoChecks,
    /// `n` is the check's 1-based position.
    #[error("check {n}: must be a table like {EXAMPLE}, not {found}")]
    NotATable { n: usize, found: &'static str },
    #[error("check {n}: missing key `test` (one of: {})", names())]
    MissingTest { n: usize },
    #[error(
        "check {n}: `test` must be a string (one of: {}), not {found}",
        names()
    )]
    TestNotAString { n: usize, found: &'static str },
    #[error("check {n}: unknown test `{test}` (known: {})", names())]
    UnknownTest { n: usize, test: String },
    #[error("check {n} (`{}`): {problem}", test.as_str())]
    Check {
        n: usize,
        test: Test,
        problem: CheckError,
    },
    #[error(
        "check {n} (`{}`): another check is already named `{name}`; give one a `name`",
        test.as_str()
    )]
    DuplicateName { n: usize, test: Test, name: String },
}

/// A problem with one key of a check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error("unknown key `{key}` (known: {})", known.join(", "))]
    UnknownKey {
        key: String,
        known: Vec<&'static str>,
    },
    #[error("missing key `{key}` ({expects})")]
    Missing { key: String, expects: &'static str },
    #[error("`{key}` must be {expects}, not {found}")]
    WrongType {
        key: String,
        expects: &'static str,
        found: &'static str,
    },
    #[error("`severity` must be \"error\" or \"warn\", not \"{value}\"")]
    BadSeverity { value: String },
    #[error("`name` must be a non-empty single line")]
    BadName,
    #[error(
        "`{key}` = {value:?} is not a plain name: use letters, digits and `_`, optionally `schema.name`"
    )]
    NotAPlainName { key: String, value: String },
    #[error("`values` is empty: list the accepted values")]
    EmptyValues,
    /// `index` is 0-based, as the message has always said.
    #[error("`values` must be {expects}: element {index} is {found}")]
    BadValue {
        expects: &'static str,
        index: usize,
        found: &'static str,
    },
    #[error("`max_age` = {value:?}: {error}")]
    BadMaxAge { value: String, error: String },
    #[error("`max_age` must be longer than zero")]
    ZeroMaxAge,
    #[error("give `min`, `max` or both")]
    NoBounds,
    #[error("`min` ({min}) is above `max` ({max})")]
    BoundsReversed { min: f64, max: f64 },
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// A problem with a check's `where` expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("`where`: {0}")]
    Lex(#[from] LexError),
    #[error("`where` is empty")]
    Empty,
    #[error("`where` must be one boolean expression, without `;`")]
    Several,
    #[error("`where`: unknown parameter `:{name}` (known: {KNOWN_PARAMS})")]
    UnknownParam { name: String },
}
