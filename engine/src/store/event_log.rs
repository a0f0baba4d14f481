//! The audit log (`event_log`): one insert, and the filtered, paged search behind
//! `GET /api/v2/eventLogs` and the UI's events page.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::error::Result;
use crate::store::filters::{TextMatch, push_page};

/// A row to write (`dttm` and `id` are the database's).
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event: &'a str,
    pub owner: Option<&'a str>,
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub try_number: Option<i32>,
    pub logical_date: Option<DateTime<Utc>>,
    /// `cli`, `api` or `ui`.
    pub source: &'a str,
    pub remote_addr: Option<&'a str>,
    /// `success`, `refused` or `failed`.
    pub outcome: &'a str,
    pub extra: Option<&'a serde_json::Value>,
}

/// One stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub dttm: DateTime<Utc>,
    pub event: String,
    pub owner: Option<String>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub try_number: Option<i32>,
    pub logical_date: Option<DateTime<Utc>>,
    pub source: String,
    pub remote_addr: Option<String>,
    pub outcome: String,
    pub extra: Option<serde_json::Value>,
}

/// Writes one event; answers its id.
pub async fn insert(conn: &mut PgConnection, e: &NewEvent<'_>) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO event_log (event, owner, dag_id, run_id, task_id, try_number, logical_date, \
         source, remote_addr, outcome, extra) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(e.event)
    .bind(e.owner)
    .bind(e.dag_id)
    .bind(e.run_id)
    .bind(e.task_id)
    .bind(e.try_number)
    .bind(e.logical_date)
    .bind(e.source)
    .bind(e.remote_addr)
    .bind(e.outcome)
    .bind(e.extra)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// Which events to list (Airflow's `GET /eventLogs` filters). Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub try_number: Option<i32>,
    /// Airflow's `map_index`: upiflow has no mapped tasks, so an event's is -1 when it names a
    /// task instance and none otherwise; -1 matches those, any other value nothing.
    pub map_index: Option<i64>,
    pub owner: Option<String>,
    pub event: Option<String>,
    /// Events of none of these names.
    pub excluded_events: Option<Vec<String>>,
    /// Events of one of these names.
    pub included_events: Option<Vec<String>>,
    pub outcome: Option<String>,
    pub source: Option<String>,
    /// Strictly before / after (Airflow's `before` and `after`).
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    /// `*_pattern` / `*_prefix_pattern` matches, by column.
    pub matches: Vec<(EventColumn, TextMatch)>,
}

/// A text column of `event_log` a pattern or a sort key can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventColumn {
    DagId,
    TaskId,
    RunId,
    Owner,
    Event,
}

impl EventColumn {
    fn column(self) -> &'static str {
        match self {
            Self::DagId => "dag_id",
            Self::TaskId => "task_id",
            Self::RunId => "run_id",
            Self::Owner => "owner",
            Self::Event => "event",
        }
    }
}

/// A sort key of [`search`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOrder {
    Id,
    Dttm,
    Text(EventColumn),
    LogicalDate,
    Extra,
}

impl EventOrder {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Dttm => "dttm",
            Self::Text(c) => c.column(),
            Self::LogicalDate => "logical_date",
            Self::Extra => "extra::text",
        }
    }
}

fn push_filter(q: &mut QueryBuilder<'_, Postgres>, f: &EventFilter) {
    q.push(" WHERE true");
    let exact = [
        ("dag_id", &f.dag_id),
        ("task_id", &f.task_id),
        ("run_id", &f.run_id),
        ("owner", &f.owner),
        ("event", &f.event),
        ("outcome", &f.outcome),
        ("source", &f.source),
    ];
    for (col, v) in exact {
        if let Some(v) = v {
            q.push(format_args!(" AND {col} = ")).push_bind(v.clone());
        }
    }
    if let Some(n) = f.try_number {
        q.push(" AND try_number = ").push_bind(n);
    }
    match f.map_index {
        Some(-1) => {
            q.push(" AND task_id IS NOT NULL");
        }
        Some(_) => {
            q.push(" AND false");
        }
        None => {}
    }
    if let Some(names) = &f.excluded_events {
        q.push(" AND event <> ALL(")
            .push_bind(names.clone())
            .push(")");
    }
    if let Some(names) = &f.included_events {
        q.push(" AND event = ANY(")
            .push_bind(names.clone())
            .push(")");
    }
    if let Some(t) = f.before {
        q.push(" AND dttm < ").push_bind(t);
    }
    if let Some(t) = f.after {
        q.push(" AND dttm > ").push_bind(t);
    }
    for (col, m) in &f.matches {
        m.push(q, col.column());
    }
}

/// One page of the events that match, in `order` (then by id), and how many match in all.
pub async fn search(
    conn: &mut PgConnection,
    f: &EventFilter,
    order: &[(EventOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<EventRow>, i64)> {
    let mut count = QueryBuilder::new("SELECT count(*) FROM event_log");
    push_filter(&mut count, f);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut q = QueryBuilder::new("SELECT * FROM event_log");
    push_filter(&mut q, f);
    push_page(
        &mut q,
        order.iter().map(|(k, desc)| (k.column(), *desc)),
        "id",
        limit,
        offset,
    );
    let rows = q.build_query_as().fetch_all(&mut *conn).await?;
    Ok((rows, total))
}

/// One event by id.
pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Option<EventRow>> {
    Ok(sqlx::query_as("SELECT * FROM event_log WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?)
}
