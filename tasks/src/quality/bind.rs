//! The values a `quality` task binds for one run, each sent with its Postgres type, and how
//! database errors are told.
//!
//! The run's values are typed as in the `sql` kind (`crate::sql`'s own binder is private to
//! that module, and this one also sends the `text[]` of `accepted_values`).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgDatabaseError};
use sqlx::query::QueryScalar;
use upiflow_engine::{TaskContext, TaskError};

use super::{Arg, Fixed};
use crate::sql::Param;

/// A parameter's value for one run, with the Postgres type it is sent as.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bind {
    Timestamp(DateTime<Utc>),
    Date(NaiveDate),
    Text(String),
    TextArray(Vec<String>),
    BigInt(i64),
    Double(f64),
    Bool(bool),
    Null,
    Jsonb(Value),
}

type Scalar<'q> = QueryScalar<'q, Postgres, i64, PgArguments>;

impl Bind {
    pub(super) fn resolve(arg: &Arg, ctx: &TaskContext) -> Result<Self, TaskError> {
        Ok(match arg {
            Arg::Fixed(Fixed::TextArray(values)) => Self::TextArray(values.clone()),
            // Cast in the SQL (`$n::numeric`), so the text keeps every digit.
            Arg::Fixed(Fixed::Number(text)) => Self::Text(text.clone()),
            Arg::Run(Param::DataIntervalStart) => Self::Timestamp(ctx.data_interval_start),
            Arg::Run(Param::DataIntervalEnd) => Self::Timestamp(ctx.data_interval_end),
            Arg::Run(Param::LogicalDate) => Self::Timestamp(ctx.logical_date),
            Arg::Run(Param::Ds) => Self::Date(ctx.ds),
            Arg::Run(Param::RunId) => Self::Text(ctx.run_id.clone()),
            Arg::Run(Param::Params(name)) => match ctx.params.get(name) {
                None => {
                    return Err(TaskError::Fatal(format!(
                        "a `where` uses `:params.{name}` but the run has no param `{name}`"
                    )));
                }
                Some(Value::String(s)) => Self::Text(s.clone()),
                Some(Value::Bool(b)) => Self::Bool(*b),
                Some(Value::Null) => Self::Null,
                Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => Self::BigInt(i),
                    (None, Some(f)) if !n.is_u64() => Self::Double(f),
                    _ => {
                        return Err(TaskError::Fatal(format!(
                            "param `{name}` = {n} does not fit a bigint"
                        )));
                    }
                },
                Some(v @ (Value::Array(_) | Value::Object(_))) => Self::Jsonb(v.clone()),
            },
        })
    }

    pub(super) fn bind_to(self, query: Scalar<'_>) -> Scalar<'_> {
        match self {
            Self::Timestamp(t) => query.bind(t),
            Self::Date(d) => query.bind(d),
            Self::Text(s) => query.bind(s),
            Self::TextArray(v) => query.bind(v),
            Self::BigInt(i) => query.bind(i),
            Self::Double(f) => query.bind(f),
            Self::Bool(b) => query.bind(b),
            Self::Null => query.bind(Option::<String>::None),
            Self::Jsonb(v) => query.bind(sqlx::types::Json(v)),
        }
    }
}

/// The database's own words for an error, with the details Postgres adds.
pub(super) fn describe(error: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = error else {
        return error.to_string();
    };
    let mut out = db.message().to_string();
    if let Some(code) = db.code() {
        out.push_str(&format!(" (SQLSTATE {code})"));
    }
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        if let Some(detail) = pg.detail() {
            out.push_str(&format!("; detail: {detail}"));
        }
        if let Some(hint) = pg.hint() {
            out.push_str(&format!("; hint: {hint}"));
        }
    }
    out
}
