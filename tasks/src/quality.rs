//! The `quality` kind: dbt's generic tests declared in TOML (`checks = [{ test = "not_null",
//! table = "t", column = "c" }, ...]`). Each check is a query counting the rows that break
//! it; a failing check of severity `error` fails the task, one of severity `warn` is only
//! logged.
//!
//! Every check's SQL is built when the DAG is parsed and stored in the config, so a run
//! executes what its DAG version declared. Identifiers are validated and quoted; values and
//! the run's parameters are always bind parameters. `conn = "ID"` checks that connection's
//! Postgres-protocol database instead of the orchestrator's.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upiflow_engine::logs::LogStream;
use upiflow_engine::{PrepareCtx, PrepareError, TaskContext, TaskError, TaskKind};

use crate::keys::{self, KeySpec};
use crate::sql::Param;

mod build;
mod check;
mod error;
mod values;

pub use error::{CheckError, FilterError, QualityError};

use crate::sql::bind::{Bind, Variables, describe};

/// `kind = "quality"`.
pub struct QualityKind;

/// A prepared `quality` task, stored as `{"checks": [{"name": "not_null_t_c", "test":
/// "not_null", "severity": "error", "sql": "SELECT count(*) FROM \"t\" WHERE ...",
/// "params": ["ds", {"text_array": ["A", "B"]}, {"number": "0"}]}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Never empty; run in this order.
    pub checks: Vec<PreparedCheck>,
    /// The connection whose database is checked; `None`: the orchestrator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
}

/// One check with its query ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreparedCheck {
    /// Unique within the task; shown in logs and errors.
    pub name: String,
    pub test: Test,
    pub severity: Severity,
    /// Returns one `bigint`: the number of failing rows.
    pub sql: String,
    /// The value of `$n` is `params[n - 1]`.
    pub params: Vec<Arg>,
}

/// The generic tests, named as in dbt (and dbt_utils for `accepted_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    NotNull,
    Unique,
    AcceptedValues,
    AcceptedRange,
    Relationships,
    RowCount,
    Freshness,
}

impl Test {
    pub const ALL: [Test; 7] = [
        Self::NotNull,
        Self::Unique,
        Self::AcceptedValues,
        Self::AcceptedRange,
        Self::Relationships,
        Self::RowCount,
        Self::Freshness,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotNull => "not_null",
            Self::Unique => "unique",
            Self::AcceptedValues => "accepted_values",
            Self::AcceptedRange => "accepted_range",
            Self::Relationships => "relationships",
            Self::RowCount => "row_count",
            Self::Freshness => "freshness",
        }
    }
}

/// What a failing check does to the task, as dbt's `severity` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The task fails.
    Error,
    /// Logged as `WARN`; the task still succeeds.
    Warn,
}

/// A bind parameter: a value of the run (`"ds"`) or one fixed by the DAG (`{"number": "0"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Run(Param),
    Fixed(Fixed),
}

impl Arg {
    /// The value this argument has in a run.
    fn resolve(&self, ctx: &TaskContext, vars: &Variables) -> Result<Bind, TaskError> {
        Ok(match self {
            Arg::Fixed(Fixed::TextArray(values)) => Bind::TextArray(values.clone()),
            // Cast in the SQL (`$n::numeric`), so the text keeps every digit.
            Arg::Fixed(Fixed::Number(text)) => Bind::Text(text.clone()),
            Arg::Run(param) => Bind::resolve(param, ctx, vars)?,
        })
    }
}

/// A value written in the check itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fixed {
    /// `accepted_values`' list, sent as `text[]`.
    TextArray(Vec<String>),
    /// A bound of `accepted_range`/`row_count` or `max_age` in seconds, sent as text and
    /// cast in the SQL (`$n::numeric`), so decimals compare exactly.
    Number(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    checks: Vec<toml::Value>,
    conn: Option<String>,
}

const SPEC: &[KeySpec] = &[
    KeySpec {
        name: "checks",
        expects: "an array of tables such as { test = \"not_null\", table = \"t\", column = \"c\" }",
    },
    crate::sql::CONN_SPEC,
];

impl TaskKind for QualityKind {
    fn name(&self) -> &'static str {
        "quality"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["checks", "conn"]
    }

    fn prepare(&self, ctx: &PrepareCtx<'_>, keys: toml::Table) -> Result<Value, Vec<PrepareError>> {
        let keys: Keys = keys::parse(keys, SPEC)?;
        let conn = crate::sql::check_conn(ctx, keys.conn);
        let config =
            prepare_checks(keys.checks).map_err(|e| PrepareError::at("checks", e.to_string()));
        let config = match (config, conn) {
            (Ok(config), Ok(conn)) => QualityConfig { conn, ..config },
            (config, conn) => {
                return Err([config.err(), conn.err()].into_iter().flatten().collect());
            }
        };
        for arg in config.checks.iter().flat_map(|c| &c.params) {
            if let Arg::Run(Param::Var(key)) = arg {
                ctx.uses_variable("checks", key);
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

fn prepare_checks(checks: Vec<toml::Value>) -> Result<QualityConfig, QualityError> {
    if checks.is_empty() {
        return Err(QualityError::NoChecks);
    }
    let mut prepared: Vec<PreparedCheck> = Vec::with_capacity(checks.len());
    for (i, value) in checks.into_iter().enumerate() {
        let check = check::parse(i + 1, value)?;
        let built = build::build(&check);
        if prepared.iter().any(|p| p.name == built.name) {
            return Err(QualityError::DuplicateName {
                n: i + 1,
                test: built.test,
                name: built.name,
            });
        }
        prepared.push(built);
    }
    Ok(QualityConfig {
        checks: prepared,
        conn: None,
    })
}

/// "1 row" / "12 rows".
fn rows(n: i64, what: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} {what}{s}")
}

async fn execute(ctx: &TaskContext, config: &Value) -> Result<(), TaskError> {
    let config: QualityConfig = serde_json::from_value(config.clone())
        .map_err(|e| TaskError::Fatal(format!("invalid quality task config: {e}")))?;
    // Resolved before touching the database, so a missing param fails at once.
    let used: Vec<&Param> = config
        .checks
        .iter()
        .flat_map(|c| &c.params)
        .filter_map(|a| match a {
            Arg::Run(p) => Some(p),
            Arg::Fixed(_) => None,
        })
        .collect();
    let vars = Variables::load(ctx, used).await?;
    let binds = config
        .checks
        .iter()
        .map(|c| c.params.iter().map(|a| a.resolve(ctx, &vars)).collect())
        .collect::<Result<Vec<Vec<Bind>>, TaskError>>()?;
    let total = config.checks.len();
    let target = crate::database::shown(config.conn.as_deref());
    let pool = crate::database::pool(ctx, config.conn.as_deref()).await?;
    ctx.log
        .line(
            LogStream::System,
            format!("running {total} quality check(s) in one read-only transaction on {target}"),
        )
        .await;
    let mut tx = pool.begin().await.map_err(|e| {
        TaskError::Retryable(format!(
            "could not begin a transaction on {target}: {}",
            describe(&e)
        ))
    })?;
    // One snapshot for every check, and a guard against a `where` that tries to write.
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(|e| TaskError::Retryable(format!("could not start: {}", describe(&e))))?;
    let (mut passed, mut warned) = (0, 0);
    let mut failed = Vec::new();
    for (check, binds) in config.checks.iter().zip(binds) {
        // Not persistent: each check runs once per try, a cached plan would buy nothing.
        let query = sqlx::query_scalar_with::<_, i64, _>(&check.sql, Bind::arguments(binds)?)
            .persistent(false);
        let failing = query.fetch_one(&mut *tx).await.map_err(|e| {
            TaskError::Retryable(format!("check `{}`: {}", check.name, describe(&e)))
        })?;
        let verdict = match (failing, check.severity) {
            (0, _) => {
                passed += 1;
                "PASS"
            }
            (_, Severity::Warn) => {
                warned += 1;
                "WARN"
            }
            (_, Severity::Error) => {
                failed.push(format!("{} ({})", check.name, rows(failing, "row")));
                "FAIL"
            }
        };
        let line = format!(
            "{verdict} {} ({})",
            check.name,
            rows(failing, "failing row")
        );
        ctx.log.line(LogStream::System, line).await;
    }
    // Read only: there is nothing to commit, and a failed rollback only loses the connection.
    let _ = tx.rollback().await;
    ctx.log
        .line(
            LogStream::System,
            format!(
                "checks: {passed} passed, {warned} warned, {} failed",
                failed.len()
            ),
        )
        .await;
    if failed.is_empty() {
        return Ok(());
    }
    // Fatal: re-running the checks alone cannot change the data; a re-run of the upstream
    // tasks (clear) is what fixes it.
    Err(TaskError::Fatal(format!(
        "{} of {total} quality checks failed: {}",
        failed.len(),
        failed.join(", ")
    )))
}

#[cfg(test)]
mod tests;
