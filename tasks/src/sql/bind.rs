//! The values `sql` and `quality` tasks bind for one run, each sent with its Postgres type,
//! and how database errors are told.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::Arguments;
use sqlx::postgres::{PgArguments, PgDatabaseError};
use upiflow_engine::secrets::mask::is_sensitive_key;
use upiflow_engine::{TaskContext, TaskError};

use super::Param;

/// A parameter's value for one run, with the Postgres type it is sent as.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
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

/// The variables (`:var.NAME`) a task's statements use, read once per try.
#[derive(Debug, Default)]
pub(crate) struct Variables(HashMap<String, String>);

impl Variables {
    /// Reads every variable among `params`. A missing one fails the try at once (no retry
    /// creates it); a sensitive one is hidden in the try's log.
    pub(crate) async fn load<'a>(
        ctx: &TaskContext,
        params: impl IntoIterator<Item = &'a Param>,
    ) -> Result<Self, TaskError> {
        let mut out = HashMap::new();
        for param in params {
            let Param::Var(key) = param else { continue };
            if out.contains_key(key) {
                continue;
            }
            let value = ctx.secrets.variable(key).await.map_err(|e| {
                crate::database::lookup_error(format!("could not read variable `{key}`: {e}"), &e)
            })?;
            let Some(value) = value else {
                return Err(TaskError::Fatal(format!(
                    "`:var.{key}` is used, but variable `{key}` does not exist (`upiflow variables set {key} VALUE`, or UPIFLOW_VAR_{})",
                    key.to_uppercase()
                )));
            };
            if is_sensitive_key(key) {
                ctx.log.hide(&value);
            }
            out.insert(key.clone(), value);
        }
        Ok(Self(out))
    }
}

impl Bind {
    pub(crate) fn resolve(
        param: &Param,
        ctx: &TaskContext,
        vars: &Variables,
    ) -> Result<Self, TaskError> {
        Ok(match param {
            Param::Var(key) => match vars.0.get(key) {
                Some(value) => Self::Text(value.clone()),
                None => {
                    return Err(TaskError::Fatal(format!(
                        "`:var.{key}` was not read before binding"
                    )));
                }
            },
            Param::DataIntervalStart => Self::Timestamp(ctx.data_interval_start),
            Param::DataIntervalEnd => Self::Timestamp(ctx.data_interval_end),
            Param::LogicalDate => Self::Timestamp(ctx.logical_date),
            Param::Ds => Self::Date(ctx.ds),
            Param::RunId => Self::Text(ctx.run_id.clone()),
            Param::Params(name) => match ctx.params.get(name) {
                None => {
                    return Err(TaskError::Fatal(format!(
                        "`:params.{name}` is used, but the run has no param `{name}`"
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

    /// Appends the value to a statement's arguments.
    pub(crate) fn add_to(self, args: &mut PgArguments) -> Result<(), TaskError> {
        let added = match self {
            Self::Timestamp(t) => args.add(t),
            Self::Date(d) => args.add(d),
            Self::Text(s) => args.add(s),
            Self::TextArray(v) => args.add(v),
            Self::BigInt(i) => args.add(i),
            Self::Double(f) => args.add(f),
            Self::Bool(b) => args.add(b),
            Self::Null => args.add(Option::<String>::None),
            Self::Jsonb(v) => args.add(sqlx::types::Json(v)),
        };
        added.map_err(|e| TaskError::Fatal(format!("cannot encode a parameter: {e}")))
    }

    /// The arguments of one statement.
    pub(crate) fn arguments(binds: Vec<Bind>) -> Result<PgArguments, TaskError> {
        let mut args = PgArguments::default();
        for b in binds {
            b.add_to(&mut args)?;
        }
        Ok(args)
    }
}

/// The database's own words for an error, with the details Postgres adds.
pub(crate) fn describe(error: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = error else {
        return error.to_string();
    };
    let mut out = db.message().to_string();
    let mut facts = Vec::new();
    if let Some(code) = db.code() {
        facts.push(format!("SQLSTATE {code}"));
    }
    if let Some(constraint) = db.constraint() {
        facts.push(format!("constraint {constraint}"));
    }
    if !facts.is_empty() {
        out.push_str(&format!(" ({})", facts.join(", ")));
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
