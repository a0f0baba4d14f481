//! The `sql` kind: runs the statements of a `.sql` file (`sql = "sql/x.sql"`, relative to the
//! DAG file) in one transaction on the warehouse, with the run's values (`:ds`,
//! `:data_interval_start`, `:params.NAME`, ...) sent as bind parameters, never spliced in.
//!
//! The file is read and checked when the DAG is parsed and its text is stored in the config,
//! so a run executes the version it was created with. `conn = "ID"` runs it on that
//! connection's Postgres-protocol database instead of the orchestrator's.

use std::fmt;
use std::time::Instant;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upiflow_engine::{PrepareCtx, PrepareError, TaskContext, TaskError, TaskKind};

use crate::keys::{self, KeySpec};
use crate::sql_params;

pub(crate) mod bind;

use bind::{Bind, Variables, describe};

/// `kind = "sql"`.
pub struct SqlKind;

/// A prepared `sql` task, stored as `{"path": "dags/sql/x.sql", "statements": [{"line": 3,
/// "sql": "INSERT ... WHERE d = $1", "params": ["ds"]}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// The file the statements were read from, for messages only.
    pub path: String,
    /// Never empty.
    pub statements: Vec<SqlStatement>,
    /// The connection whose database runs it; `None`: the orchestrator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
}

/// One statement, with its named parameters already made positional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlStatement {
    /// 1-based line in the file where the statement starts.
    pub line: usize,
    pub sql: String,
    /// The value of `$n` is `params[n - 1]`.
    pub params: Vec<Param>,
}

/// A parameter a SQL file may use, stored by its name without the colon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Param {
    /// `:data_interval_start`, a `timestamptz`.
    DataIntervalStart,
    /// `:data_interval_end`, a `timestamptz`.
    DataIntervalEnd,
    /// `:logical_date`, a `timestamptz`.
    LogicalDate,
    /// `:ds`, a `date`: the logical date in the DAG's time zone.
    Ds,
    /// `:run_id`, `text`.
    RunId,
    /// `:params.NAME`, from the run's params; typed after its JSON value.
    Params(String),
    /// `:var.NAME`, a variable's text, as `text`.
    Var(String),
}

const KNOWN: &str = ":data_interval_start, :data_interval_end, :logical_date, :ds, :run_id, :params.NAME, :var.NAME";

impl Param {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "data_interval_start" => Self::DataIntervalStart,
            "data_interval_end" => Self::DataIntervalEnd,
            "logical_date" => Self::LogicalDate,
            "ds" => Self::Ds,
            "run_id" => Self::RunId,
            _ => match name.split_once('.') {
                Some(("params", n)) if !n.is_empty() => Self::Params(n.into()),
                Some(("var", n)) if !n.is_empty() => Self::Var(n.into()),
                _ => return None,
            },
        })
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataIntervalStart => f.write_str("data_interval_start"),
            Self::DataIntervalEnd => f.write_str("data_interval_end"),
            Self::LogicalDate => f.write_str("logical_date"),
            Self::Ds => f.write_str("ds"),
            Self::RunId => f.write_str("run_id"),
            Self::Params(name) => write!(f, "params.{name}"),
            Self::Var(name) => write!(f, "var.{name}"),
        }
    }
}

impl TryFrom<String> for Param {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::parse(&name).ok_or_else(|| format!("unknown SQL parameter `:{name}`"))
    }
}

impl From<Param> for String {
    fn from(param: Param) -> String {
        param.to_string()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    sql: String,
    conn: Option<String>,
}

const SPEC: &[KeySpec] = &[
    KeySpec {
        name: "sql",
        expects: "a string, the path of a .sql file relative to the DAG file",
    },
    CONN_SPEC,
];

/// `conn`, shared with the `quality` kind.
pub(crate) const CONN_SPEC: KeySpec = KeySpec {
    name: "conn",
    expects: "a string, the id of a Postgres connection (`upiflow connections add ID --uri postgres://...`)",
};

/// Checks a `conn` key and records the connection it names (checked by `dags validate`).
pub(crate) fn check_conn(
    ctx: &PrepareCtx<'_>,
    conn: Option<String>,
) -> Result<Option<String>, PrepareError> {
    let Some(conn) = conn else { return Ok(None) };
    if conn.trim().is_empty() || conn.contains(char::is_whitespace) || conn.contains('\0') {
        return Err(PrepareError::at(
            "conn",
            format!("`{conn}` is not a connection id (no spaces; e.g. \"warehouse\")"),
        ));
    }
    ctx.uses_connection("conn", &conn);
    Ok(Some(conn))
}

impl TaskKind for SqlKind {
    fn name(&self) -> &'static str {
        "sql"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["sql", "conn"]
    }

    fn prepare(&self, ctx: &PrepareCtx<'_>, keys: toml::Table) -> Result<Value, Vec<PrepareError>> {
        let keys: Keys = keys::parse(keys, SPEC)?;
        let conn = check_conn(ctx, keys.conn);
        let config = load(ctx, &keys.sql).map_err(|m| PrepareError::at("sql", m));
        let config = match (config, conn) {
            (Ok(config), Ok(conn)) => SqlConfig { conn, ..config },
            (config, conn) => {
                return Err([config.err(), conn.err()].into_iter().flatten().collect());
            }
        };
        for param in config.statements.iter().flat_map(|s| &s.params) {
            if let Param::Var(key) = param {
                ctx.uses_variable("sql", key);
            }
        }
        Ok(serde_json::to_value(config).map_err(|e| PrepareError::task(e.to_string()))?)
    }

    fn run<'a>(
        &'a self,
        ctx: &'a TaskContext,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(execute(ctx, config))
    }
}

/// Reads and checks the file named by the `sql` key.
fn load(ctx: &PrepareCtx<'_>, file: &str) -> Result<SqlConfig, String> {
    let path = ctx.dag_dir.join(file);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        // A common slip is writing the query itself instead of a file name.
        let hint = if file.trim().contains(char::is_whitespace) {
            " (`sql` is the path of a .sql file, not SQL text)"
        } else {
            ""
        };
        format!("cannot read SQL file `{shown}`: {e}{hint}")
    })?;
    let lexed = sql_params::split(&text).map_err(|e| format!("{shown}: {e}"))?;
    if lexed.is_empty() {
        return Err(format!("{shown}: the file contains no SQL statement"));
    }
    let mut statements = Vec::with_capacity(lexed.len());
    for statement in lexed {
        let params = statement
            .params
            .iter()
            .map(|p| {
                Param::parse(&p.name).ok_or_else(|| {
                    format!(
                        "{shown}: unknown parameter `:{}` at line {} (known: {KNOWN})",
                        p.name, p.line
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        statements.push(SqlStatement {
            line: statement.line,
            sql: statement.sql,
            params,
        });
    }
    Ok(SqlConfig {
        path: shown,
        statements,
        conn: None,
    })
}

async fn execute(ctx: &TaskContext, config: &Value) -> Result<(), TaskError> {
    let config: SqlConfig = serde_json::from_value(config.clone())
        .map_err(|e| TaskError::Fatal(format!("invalid sql task config: {e}")))?;
    // Every value is resolved before touching the database, so a missing param fails the
    // task at once instead of half-way through.
    // Collected first: an iterator of closures held across the await makes the future not
    // general enough for `BoxFuture`.
    let used: Vec<&Param> = config.statements.iter().flat_map(|s| &s.params).collect();
    let vars = Variables::load(ctx, used).await?;
    let binds = config
        .statements
        .iter()
        .map(|s| {
            s.params
                .iter()
                .map(|p| Bind::resolve(p, ctx, &vars))
                .collect()
        })
        .collect::<Result<Vec<Vec<Bind>>, TaskError>>()?;
    let total = config.statements.len();
    let target = crate::database::shown(config.conn.as_deref());
    let pool = crate::database::pool(ctx, config.conn.as_deref()).await?;
    ctx.log
        .info(format!(
            "running {total} statement(s) of {} in one transaction on {target}",
            config.path
        ))
        .await;
    let mut tx = pool.begin().await.map_err(|e| {
        TaskError::Retryable(format!(
            "could not begin a transaction on {target}: {}",
            describe(&e)
        ))
    })?;
    for (i, (statement, binds)) in config.statements.iter().zip(binds).enumerate() {
        let number = i + 1;
        // Not persistent: a transform runs once per interval, so caching its plan on the
        // connection buys nothing and could go stale after DDL.
        let query = sqlx::query_with(&statement.sql, Bind::arguments(binds)?).persistent(false);
        let started = Instant::now();
        let done = query.execute(&mut *tx).await.map_err(|e| {
            TaskError::Retryable(format!(
                "statement {number}/{total} (line {} of {}): {}",
                statement.line,
                config.path,
                describe(&e)
            ))
        })?;
        ctx.log
            .info(format!(
                "statement {number}/{total}: {} rows affected in {} ms",
                done.rows_affected(),
                started.elapsed().as_millis()
            ))
            .await;
    }
    tx.commit().await.map_err(|e| {
        TaskError::Retryable(format!(
            "could not commit the transaction: {}",
            describe(&e)
        ))
    })
}

#[cfg(test)]
mod tests;
