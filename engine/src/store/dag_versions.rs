//! A DAG's versions with Airflow's numbers (1 for a DAG's first version, then 2, 3, ... in
//! the order they were recorded, the numbering [`crate::store::dags::numbered`] gives runs),
//! searched with Airflow's filters, and the DAG file text stored with each version.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};

use crate::error::{EngineError, Result};
use crate::store::dags::NUMBERED_VERSIONS;
use crate::store::filters::push_page;

/// One version of a DAG with its number.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub dag_id: String,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub number: i64,
}

/// Which versions to list. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct VersionFilter {
    /// One DAG's versions (`None`: every DAG's, Airflow's `~`).
    pub dag_id: Option<String>,
    pub number: Option<i64>,
    /// The hash (upiflow's bundle version of a DAG version).
    pub hash: Option<String>,
    /// Every version is in the one bundle `dags-folder`: any other name keeps none.
    pub bundle_name: Option<String>,
}

impl VersionFilter {
    fn push(&self, b: &mut QueryBuilder<'_, Postgres>) {
        b.push(" WHERE true");
        if let Some(d) = &self.dag_id {
            b.push(" AND v.dag_id = ").push_bind(d.clone());
        }
        if let Some(n) = self.number {
            b.push(" AND v.number = ").push_bind(n);
        }
        if let Some(h) = &self.hash {
            b.push(" AND v.hash = ").push_bind(h.clone());
        }
        if let Some(name) = &self.bundle_name {
            b.push(" AND ")
                .push_bind(name.clone())
                .push(" = 'dags-folder'");
        }
    }
}

/// A sort key of [`search`] (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrder {
    /// Airflow's version ids are time-ordered (UUID v7): creation order.
    Id,
    Number,
    /// The hash.
    BundleVersion,
}

impl VersionOrder {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "v.created_at",
            Self::Number => "v.number",
            Self::BundleVersion => "v.hash",
        }
    }
}

/// One page of the versions `filter` keeps, sorted by `order` then by DAG and number, and
/// how many it keeps in all.
pub async fn search(
    conn: &mut PgConnection,
    filter: &VersionFilter,
    order: &[(VersionOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<VersionRow>, i64)> {
    let mut rows_q = QueryBuilder::new(format!(
        "SELECT v.dag_id, v.hash, v.created_at, v.number FROM ({NUMBERED_VERSIONS}) v"
    ));
    filter.push(&mut rows_q);
    push_page(
        &mut rows_q,
        order.iter().map(|(o, desc)| (o.column(), *desc)),
        "v.dag_id, v.number",
        limit,
        offset,
    );
    let mut count_q = QueryBuilder::new(format!("SELECT count(*) FROM ({NUMBERED_VERSIONS}) v"));
    filter.push(&mut count_q);
    let rows = rows_q.build_query_as().fetch_all(&mut *conn).await?;
    let total = count_q.build_query_scalar().fetch_one(&mut *conn).await?;
    Ok((rows, total))
}

/// Version `number` of `dag_id` (`DagNotFound` for an unknown DAG, `DagVersionNotFound` for
/// a number it never had).
pub async fn get(conn: &mut PgConnection, dag_id: &str, number: i64) -> Result<VersionRow> {
    let filter = VersionFilter {
        dag_id: Some(dag_id.into()),
        number: Some(number),
        ..Default::default()
    };
    let (mut rows, _) = search(conn, &filter, &[], 1, 0).await?;
    match rows.pop() {
        Some(r) => Ok(r),
        None => Err(missing(conn, dag_id, number).await),
    }
}

async fn missing(conn: &mut PgConnection, dag_id: &str, number: i64) -> EngineError {
    match crate::store::dag_list::exists(conn, dag_id).await {
        Ok(true) => EngineError::DagVersionNotFound {
            dag_id: dag_id.into(),
            number,
        },
        Ok(false) => EngineError::DagNotFound(dag_id.into()),
        Err(e) => e,
    }
}

/// The DAG file text of version `number` of `dag_id`, or of its current version (the one
/// `dags.latest_hash` names) when `number` is `None`; with the version's number.
/// `DagSourceMissing` when the version was stored without its text.
pub async fn source(
    conn: &mut PgConnection,
    dag_id: &str,
    number: Option<i64>,
) -> Result<(i64, String)> {
    let row: Option<(i64, Option<String>)> = match number {
        Some(n) => {
            sqlx::query_as(&format!(
                "SELECT v.number, d.source FROM ({NUMBERED_VERSIONS}) v
                 JOIN dag_versions d ON d.dag_id = v.dag_id AND d.hash = v.hash
                 WHERE v.dag_id = $1 AND v.number = $2"
            ))
            .bind(dag_id)
            .bind(n)
            .fetch_optional(&mut *conn)
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT v.number, d.source FROM ({NUMBERED_VERSIONS}) v
                 JOIN dag_versions d ON d.dag_id = v.dag_id AND d.hash = v.hash
                 JOIN dags g ON g.dag_id = v.dag_id AND g.latest_hash = v.hash
                 WHERE v.dag_id = $1"
            ))
            .bind(dag_id)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    match row {
        Some((n, Some(text))) => Ok((n, text)),
        Some((n, None)) => Err(EngineError::DagSourceMissing {
            dag_id: dag_id.into(),
            number: n,
        }),
        None => Err(missing(conn, dag_id, number.unwrap_or(0)).await),
    }
}

/// How many runs of the DAG are running (Airflow's `active_runs_count`).
pub async fn running_runs(conn: &mut PgConnection, dag_id: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state = 'running'")
            .bind(dag_id)
            .fetch_one(conn)
            .await?,
    )
}
