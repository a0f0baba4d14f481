//! Read-only searches with optional filters, for the JSON API's lists (Airflow's filters).
//! Every value is a bound parameter; sort keys and columns are closed sets.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::error::Result;
use crate::state::{RunState, RunType};
use crate::store::dags::{VersionRef, version_join};
use crate::store::runs::RunRow;

/// A match on a text column with Airflow's `*_pattern` / `*_prefix_pattern` meaning: any of
/// the terms, as `ILIKE '%term%'` or as a case-sensitive literal prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMatch {
    Substring(Vec<String>),
    Prefix(Vec<String>),
}

impl TextMatch {
    /// Pushes `AND (col matches one of the terms)`; `col` must be a trusted column name.
    /// The terms' own alias (`filter_terms(term)`) is one no caller's table uses: an alias
    /// `t` made a caller's `t.x` read as the cast `x(t)` of the term, which always matched.
    pub fn push(&self, q: &mut QueryBuilder<'_, Postgres>, col: &str) {
        match self {
            Self::Substring(ts) => {
                q.push(format_args!(
                    " AND {col} ILIKE ANY (SELECT '%' || filter_terms.term || '%' FROM UNNEST("
                ))
                .push_bind(ts.clone())
                .push("::text[]) AS filter_terms(term))");
            }
            Self::Prefix(ts) => {
                q.push(" AND EXISTS (SELECT 1 FROM UNNEST(")
                    .push_bind(ts.clone())
                    .push(format_args!(
                        "::text[]) AS filter_terms(term) WHERE starts_with({col}, filter_terms.term))"
                    ));
            }
        }
    }
}

/// A date of a run that can bound a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunDate {
    LogicalDate,
    /// When the run could start: the end of its data interval.
    RunAfter,
    StartDate,
    EndDate,
}

impl RunDate {
    fn column(self) -> &'static str {
        match self {
            Self::LogicalDate => "logical_date",
            Self::RunAfter => "data_interval_end",
            Self::StartDate => "start_date",
            Self::EndDate => "end_date",
        }
    }
}

/// Pushes ` ORDER BY` the sort keys (`(column, descending)`, trusted column names), then
/// `tiebreak` so pages are stable, and the page's `LIMIT` and `OFFSET`.
pub(crate) fn push_page<'a>(
    q: &mut QueryBuilder<'_, Postgres>,
    order: impl IntoIterator<Item = (&'a str, bool)>,
    tiebreak: &str,
    limit: i64,
    offset: i64,
) {
    push_order(q, order, tiebreak);
    q.push(" LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
}

/// Pushes ` ORDER BY` the sort keys, then `tiebreak` (see [`push_page`]).
pub(crate) fn push_order<'a>(
    q: &mut QueryBuilder<'_, Postgres>,
    order: impl IntoIterator<Item = (&'a str, bool)>,
    tiebreak: &str,
) {
    q.push(" ORDER BY ");
    for (column, desc) in order {
        q.push(column).push(if desc {
            " DESC NULLS LAST, "
        } else {
            " ASC NULLS FIRST, "
        });
    }
    q.push(tiebreak);
}

/// Which runs to list. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    /// Any of these DAGs, exactly (an empty list matches no run).
    pub dag_ids: Option<Vec<String>>,
    pub dag_id_matches: Vec<TextMatch>,
    pub run_id_matches: Vec<TextMatch>,
    /// On who triggered the run (runs without one never match).
    pub triggering_user_matches: Vec<TextMatch>,
    /// Any of these states.
    pub states: Option<Vec<RunState>>,
    /// Any of these types.
    pub run_types: Option<Vec<RunType>>,
    pub dates: Vec<(RunDate, Cmp, DateTime<Utc>)>,
    /// Bounds on `end_date - start_date`, in seconds (runs that have not ended never match).
    pub durations: Vec<(Cmp, f64)>,
}

/// A sort key of [`search_runs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    Id,
    State,
    DagId,
    RunId,
    LogicalDate,
    RunAfter,
    StartDate,
    EndDate,
    Duration,
}

impl RunOrder {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::State => "state",
            Self::DagId => "dag_id",
            Self::RunId => "run_id",
            Self::LogicalDate => "logical_date",
            Self::RunAfter => "data_interval_end",
            Self::StartDate => "start_date",
            Self::EndDate => "end_date",
            Self::Duration => "(end_date - start_date)",
        }
    }
}

fn push_run_filter(q: &mut QueryBuilder<'_, Postgres>, f: &RunFilter) {
    q.push(" WHERE true");
    if let Some(d) = &f.dag_id {
        q.push(" AND dag_id = ").push_bind(d.clone());
    }
    if let Some(ds) = &f.dag_ids {
        q.push(" AND dag_id = ANY(").push_bind(ds.clone()).push(")");
    }
    for m in &f.dag_id_matches {
        m.push(q, "dag_id");
    }
    for m in &f.run_id_matches {
        m.push(q, "run_id");
    }
    for m in &f.triggering_user_matches {
        m.push(q, "triggering_user_name");
    }
    if let Some(states) = &f.states {
        q.push(" AND state = ANY(")
            .push_bind(states.clone())
            .push(")");
    }
    if let Some(types) = &f.run_types {
        q.push(" AND run_type = ANY(")
            .push_bind(types.clone())
            .push(")");
    }
    for (date, cmp, at) in &f.dates {
        q.push(format_args!(" AND {} {} ", date.column(), cmp.sql()))
            .push_bind(*at);
    }
    for (cmp, secs) in &f.durations {
        q.push(format_args!(
            " AND EXTRACT(EPOCH FROM end_date - start_date) {} ",
            cmp.sql()
        ))
        .push_bind(*secs);
    }
}

/// A run as listed: the run and its DAG version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListedRun {
    #[sqlx(flatten)]
    pub run: RunRow,
    #[sqlx(flatten)]
    pub version: VersionRef,
}

/// One page of the runs that match, in `order` (then by id), each with its DAG version, and
/// how many match in all.
pub async fn search_runs(
    conn: &mut PgConnection,
    f: &RunFilter,
    order: &[(RunOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<ListedRun>, i64)> {
    let mut count = QueryBuilder::new("SELECT count(*) FROM dag_runs");
    push_run_filter(&mut count, f);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    // The page first, then the versions of its rows only (the sort keys are the run's own
    // columns, which the outer query reads from the page as they are).
    let keys = || order.iter().map(|(k, desc)| (k.column(), *desc));
    let mut q = QueryBuilder::new("SELECT r.*, ver.* FROM (SELECT * FROM dag_runs");
    push_run_filter(&mut q, f);
    push_page(&mut q, keys(), "id", limit, offset);
    q.push(") r").push(version_join());
    push_order(&mut q, keys(), "id");
    let rows = q.build_query_as().fetch_all(&mut *conn).await?;
    Ok((rows, total))
}

/// A comparison of a date filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gte,
    Gt,
    Lte,
    Lt,
}

impl Cmp {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Gte => ">=",
            Self::Gt => ">",
            Self::Lte => "<=",
            Self::Lt => "<",
        }
    }
}
