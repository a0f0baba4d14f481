//! The audit log: who changed what, from where, and whether it worked (Airflow's `log`
//! table). The CLI, the API and the UI describe each change as an [`Event`] and [`record`] it;
//! `store::event_log` holds the SQL.
//!
//! Recording never decides the action: callers record after acting, and a failed insert is
//! logged ([`record_or_warn`]) rather than failing a change that already happened. A brief
//! database blip is ridden out (a short retry), so a refused or failed attempt is not lost
//! in the normal case.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::EngineError;
use crate::store::event_log::{self, NewEvent};

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cli,
    Api,
    Ui,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Api => "api",
            Self::Ui => "ui",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Not allowed: no or bad credentials, a viewer asking for a change, a failed sign-in.
    Refused,
    /// Allowed, but it failed (bad input, a conflict, an error).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// One change (or attempt) to record.
#[derive(Debug, Clone)]
pub struct Event {
    /// What: Airflow's event names (`trigger_dag_run`, `patch_dag`, `cli_dag_trigger`,
    /// `login`, ...).
    pub event: String,
    /// Who: the signed-in user (or the attempted username), the OS user for the CLI.
    pub owner: Option<String>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub try_number: Option<i32>,
    pub logical_date: Option<DateTime<Utc>>,
    pub source: Source,
    /// The client's address (web only).
    pub remote_addr: Option<String>,
    pub outcome: Outcome,
    /// Anything else worth keeping (the request's fields, secrets masked; an error text).
    pub extra: Option<serde_json::Value>,
}

impl Event {
    /// An event with only its name, source and outcome set.
    pub fn new(event: impl Into<String>, source: Source, outcome: Outcome) -> Self {
        Self {
            event: event.into(),
            owner: None,
            dag_id: None,
            run_id: None,
            task_id: None,
            try_number: None,
            logical_date: None,
            source,
            remote_addr: None,
            outcome,
            extra: None,
        }
    }
}

/// How long a record rides out a transient database error before giving up.
const RECORD_BUDGET: Duration = Duration::from_secs(10);

/// Writes `e` to `event_log`.
pub async fn record(pool: &PgPool, e: &Event) -> Result<(), EngineError> {
    // Postgres holds no NUL in text or jsonb: a request that sent one is still recorded, with
    // U+FFFD in its place, instead of losing the row.
    fn text(v: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
        v.map(no_nul)
    }
    let (event, owner, dag_id, run_id, task_id, remote_addr) = (
        no_nul(&e.event),
        text(e.owner.as_deref()),
        text(e.dag_id.as_deref()),
        text(e.run_id.as_deref()),
        text(e.task_id.as_deref()),
        text(e.remote_addr.as_deref()),
    );
    let extra = e.extra.as_ref().map(storable);
    let row = NewEvent {
        event: &event,
        owner: owner.as_deref(),
        dag_id: dag_id.as_deref(),
        run_id: run_id.as_deref(),
        task_id: task_id.as_deref(),
        try_number: e.try_number,
        logical_date: e.logical_date,
        source: e.source.as_str(),
        remote_addr: remote_addr.as_deref(),
        outcome: e.outcome.as_str(),
        extra: extra.as_ref(),
    };
    crate::transient::retry_for("record an audit event", RECORD_BUDGET, || async {
        let mut conn = pool.acquire().await?;
        event_log::insert(&mut conn, &row).await
    })
    .await?;
    Ok(())
}

/// `s` with every NUL replaced by U+FFFD (Postgres text and jsonb cannot hold NUL).
fn no_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

/// `v` as the audit log can store and read back: no NUL in any string or key, and a float of
/// 1e300 or more written as text (jsonb keeps a number's exact decimal digits, and one near
/// f64's limit, such as 1.7976931348623157e308, comes back as 309 digits that do not parse
/// back as a float: every list including that row would fail).
fn storable(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(no_nul(s).into_owned()),
        Value::Number(n) if n.as_f64().is_some_and(|f| n.is_f64() && f.abs() >= 1e300) => {
            Value::String(n.to_string())
        }
        Value::Array(a) => Value::Array(a.iter().map(storable).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (no_nul(k).into_owned(), storable(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// [`record`], with a failure logged as a warning instead of returned: the change it
/// describes has happened (or been refused) either way.
pub async fn record_or_warn(pool: &PgPool, e: &Event) {
    if let Err(error) = record(pool, e).await {
        let cause = std::error::Error::source(&error)
            .map_or_else(|| error.to_string(), ToString::to_string);
        tracing::warn!(
            event = %e.event,
            owner = e.owner.as_deref().unwrap_or(""),
            outcome = e.outcome.as_str(),
            error = %cause,
            "could not record an audit event"
        );
    }
}
