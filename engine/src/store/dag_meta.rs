//! What the JSON API's DAG-level lists read besides the DAG rows ("dagsapi", #14): the tags
//! of the DAGs' current versions, run counts per DAG and state, and the import errors grouped
//! per file. Every value is a bound parameter; sort keys are a closed set.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};

use crate::error::Result;
use crate::store::filters::{TextMatch, push_page};

/// One page of the distinct tags of the DAGs' current versions (stale DAGs included, as
/// Airflow's `dag_tag` table keeps them). The alias is not `t`: the patterns unnest their
/// terms as `t`, by name, and how many there are in all.
pub async fn tags(
    conn: &mut PgConnection,
    matches: &[TextMatch],
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<String>, i64)> {
    let from = "FROM (SELECT DISTINCT jsonb_array_elements_text(v.spec->'tags') AS name
        FROM dags d JOIN dag_versions v ON v.dag_id = d.dag_id AND v.hash = d.latest_hash) tag
        WHERE true";
    let mut rows_q = QueryBuilder::<Postgres>::new(format!("SELECT tag.name {from}"));
    let mut count_q = QueryBuilder::<Postgres>::new(format!("SELECT count(*) {from}"));
    for m in matches {
        m.push(&mut rows_q, "tag.name");
        m.push(&mut count_q, "tag.name");
    }
    push_page(
        &mut rows_q,
        [("tag.name", descending)],
        "tag.name",
        limit,
        offset,
    );
    let rows: Vec<String> = rows_q.build_query_scalar().fetch_all(&mut *conn).await?;
    let total: i64 = count_q.build_query_scalar().fetch_one(&mut *conn).await?;
    Ok((rows, total))
}

/// How many runs a DAG has in one state.
#[derive(Debug, Clone, FromRow)]
pub struct RunCount {
    pub dag_id: String,
    pub state: String,
    pub count: i64,
}

/// Run counts per DAG and state (states without runs left out), for the DAGs in `dag_ids`
/// (every DAG with runs when `None`), by DAG id.
pub async fn run_counts(
    conn: &mut PgConnection,
    dag_ids: Option<&[String]>,
) -> Result<Vec<RunCount>> {
    Ok(sqlx::query_as(
        "SELECT dag_id, state::text AS state, count(*) AS count FROM dag_runs
         WHERE $1::text[] IS NULL OR dag_id = ANY($1)
         GROUP BY dag_id, state ORDER BY dag_id, state",
    )
    .bind(dag_ids)
    .fetch_all(conn)
    .await?)
}

/// The import errors of one DAG file: every `line: message` problem of the file.
#[derive(Debug, Clone, FromRow)]
pub struct FileImportError {
    /// Stable while the file stays broken: 52 bits of the md5 of its path (the table keeps
    /// no ids, and every sync replaces its rows).
    pub id: i64,
    pub fileloc: String,
    /// When the sync last recorded the problems.
    pub timestamp: DateTime<Utc>,
    /// `file:line: message`, one line per problem, in line order.
    pub stack_trace: String,
}

/// Which import errors to list.
#[derive(Debug, Clone, Default)]
pub struct ImportErrorFilter {
    pub id: Option<i64>,
    pub filename: Option<String>,
    pub filename_matches: Vec<TextMatch>,
}

/// A sort key of [`import_errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportErrorOrder {
    Id,
    Filename,
    Timestamp,
}

impl ImportErrorOrder {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "e.id",
            Self::Filename => "e.fileloc",
            Self::Timestamp => "e.timestamp",
        }
    }
}

const IMPORT_ERRORS: &str = "SELECT * FROM (
        SELECT ('x' || substr(md5(fileloc), 1, 13))::bit(52)::bigint AS id, fileloc,
            max(updated_at) AS timestamp,
            string_agg(fileloc || ':' || line || ': ' || message, E'\\n'
                ORDER BY line, message) AS stack_trace
        FROM import_errors GROUP BY fileloc) e WHERE true";

impl ImportErrorFilter {
    fn push(&self, b: &mut QueryBuilder<'_, Postgres>) {
        if let Some(id) = self.id {
            b.push(" AND e.id = ").push_bind(id);
        }
        if let Some(f) = &self.filename {
            b.push(" AND e.fileloc = ").push_bind(f.clone());
        }
        for m in &self.filename_matches {
            m.push(b, "e.fileloc");
        }
    }
}

/// One page of the import errors `filter` keeps, one per broken file, and how many in all.
pub async fn import_errors(
    conn: &mut PgConnection,
    filter: &ImportErrorFilter,
    order: &[(ImportErrorOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<FileImportError>, i64)> {
    let mut rows_q = QueryBuilder::<Postgres>::new(IMPORT_ERRORS);
    filter.push(&mut rows_q);
    push_page(
        &mut rows_q,
        order.iter().map(|(o, d)| (o.column(), *d)),
        "e.id",
        limit,
        offset,
    );
    let mut count_q =
        QueryBuilder::<Postgres>::new(format!("SELECT count(*) FROM ({IMPORT_ERRORS}"));
    filter.push(&mut count_q);
    count_q.push(") c");
    let rows: Vec<FileImportError> = rows_q.build_query_as().fetch_all(&mut *conn).await?;
    let total: i64 = count_q.build_query_scalar().fetch_one(&mut *conn).await?;
    Ok((rows, total))
}
