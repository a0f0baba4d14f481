//! The DAGs as the JSON API lists them: each DAG's row with what its current version says
//! (tags, task count) and whether its file has an import error, searched with Airflow's
//! filters. Also the few single fields of a DAG the API looks up. Every value is a bound
//! parameter; sort keys are a closed set.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};

use crate::error::Result;
use crate::state::RunState;
use crate::store::filters::Cmp;
use crate::store::filters::{TextMatch, push_page};

/// A DAG with what its current version says.
#[derive(Debug, Clone, FromRow)]
pub struct DagSummary {
    pub dag_id: String,
    pub description: Option<String>,
    pub fileloc: Option<String>,
    pub is_paused: bool,
    pub is_active: bool,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub max_active_runs: i32,
    /// Task instances of one run running at once.
    pub max_active_tasks: i32,
    pub next_dagrun: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub latest_hash: Option<String>,
    /// The current version's `tags` (a JSON array; `[]` without a version).
    pub tags: Value,
    /// How many tasks the current version has.
    pub task_count: i32,
    pub has_import_errors: bool,
    /// Some task of the current version has `max_active_tis_per_dag`.
    pub has_task_concurrency_limits: bool,
}

const SELECT: &str =
    "SELECT d.dag_id, d.description, d.fileloc, d.is_paused, d.is_active, d.schedule,
        d.timezone, d.max_active_runs, d.max_active_tasks, d.next_dagrun, d.updated_at, d.latest_hash,
        COALESCE(v.spec->'tags', '[]'::jsonb) AS tags,
        COALESCE(jsonb_array_length(v.spec->'tasks'), 0) AS task_count,
        EXISTS (SELECT 1 FROM import_errors e WHERE e.fileloc = d.fileloc) AS has_import_errors,
        EXISTS (SELECT 1 FROM jsonb_array_elements(COALESCE(v.spec->'tasks', '[]'::jsonb)) t
                WHERE t ? 'max_active_tis_per_dag') AS has_task_concurrency_limits
    FROM dags d LEFT JOIN dag_versions v ON v.dag_id = d.dag_id AND v.hash = d.latest_hash";

/// The DAG's latest run (by logical date), for `last_run_state` and ordering.
const LAST_RUN: &str = " LEFT JOIN LATERAL (SELECT r.state, r.start_date FROM dag_runs r
        WHERE r.dag_id = d.dag_id ORDER BY r.logical_date DESC LIMIT 1) lr ON true";

/// Which DAGs to list. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct DagListFilter {
    /// Keep DAGs with any of these tags (all of them with `all_tags`).
    pub tags: Vec<String>,
    pub all_tags: bool,
    pub dag_id_matches: Vec<TextMatch>,
    /// Leave out DAGs whose file is gone.
    pub exclude_stale: bool,
    pub paused: Option<bool>,
    pub has_import_errors: Option<bool>,
    /// The state of the DAG's latest run.
    pub last_run_state: Option<RunState>,
    /// Every DAG is in the one bundle `dags-folder`: any other name keeps none.
    pub bundle_name: Option<String>,
    /// Keep DAGs with one run that is in one of these states and whose dates lie in the
    /// bounds below (one run meets every condition, as Airflow joins the runs once).
    pub run_states: Option<Vec<RunState>>,
    pub run_starts: Vec<(Cmp, DateTime<Utc>)>,
    pub run_ends: Vec<(Cmp, DateTime<Utc>)>,
    /// Keep the DAGs that are (`true`) or are not favourites of this owner.
    pub favorite_of: Option<(crate::store::favorites::Owner, bool)>,
    /// Only these DAGs, exactly.
    pub dag_ids: Option<Vec<String>>,
}

impl DagListFilter {
    /// The WHERE clause (the query selects from `dags d`, `dag_versions v` and `lr`).
    fn push(&self, b: &mut QueryBuilder<'_, Postgres>) {
        b.push(" WHERE true");
        if !self.tags.is_empty() {
            let op = if self.all_tags { "?&" } else { "?|" };
            b.push(format_args!(
                " AND COALESCE(v.spec->'tags', '[]'::jsonb) {op} "
            ))
            .push_bind(self.tags.clone());
        }
        for p in &self.dag_id_matches {
            p.push(b, "d.dag_id");
        }
        if self.exclude_stale {
            b.push(" AND d.is_active");
        }
        if let Some(v) = self.paused {
            b.push(" AND d.is_paused = ").push_bind(v);
        }
        if let Some(v) = self.has_import_errors {
            b.push(" AND EXISTS (SELECT 1 FROM import_errors e WHERE e.fileloc = d.fileloc) = ")
                .push_bind(v);
        }
        if let Some(state) = self.last_run_state {
            b.push(" AND lr.state = ").push_bind(state);
        }
        if let Some(v) = &self.bundle_name {
            b.push(" AND ")
                .push_bind(v.clone())
                .push(" = 'dags-folder'");
        }
        if let Some((owner, favorite)) = &self.favorite_of {
            b.push(
                " AND EXISTS (SELECT 1 FROM dag_favorites f WHERE f.dag_id = d.dag_id AND f.owner = ",
            )
            .push_bind(owner.name.clone())
            .push(" AND f.api_key = ")
            .push_bind(owner.api_key)
            .push(") = ")
            .push_bind(*favorite);
        }
        if let Some(ids) = &self.dag_ids {
            b.push(" AND d.dag_id = ANY(")
                .push_bind(ids.clone())
                .push(")");
        }
        if self.run_states.is_some() || !self.run_starts.is_empty() || !self.run_ends.is_empty() {
            b.push(" AND EXISTS (SELECT 1 FROM dag_runs r WHERE r.dag_id = d.dag_id");
            if let Some(states) = &self.run_states {
                b.push(" AND r.state = ANY(")
                    .push_bind(states.clone())
                    .push(")");
            }
            for (cmp, at) in &self.run_starts {
                b.push(format_args!(" AND r.start_date {} ", cmp.sql()))
                    .push_bind(*at);
            }
            for (cmp, at) in &self.run_ends {
                b.push(format_args!(" AND r.end_date {} ", cmp.sql()))
                    .push_bind(*at);
            }
            b.push(")");
        }
    }
}

/// A sort key of [`search`] (a closed set, so no client text reaches the SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagOrder {
    DagId,
    NextDagrun,
    /// The state of the latest run.
    LastRunState,
    /// When the latest run started.
    LastRunStartDate,
}

impl DagOrder {
    fn column(self) -> &'static str {
        match self {
            Self::DagId => "d.dag_id",
            Self::NextDagrun => "d.next_dagrun",
            Self::LastRunState => "lr.state",
            Self::LastRunStartDate => "lr.start_date",
        }
    }
}

/// One page of the DAGs `filter` keeps, sorted by `order` (`(key, descending)`) then by id,
/// and how many it keeps in all.
pub async fn search(
    conn: &mut PgConnection,
    filter: &DagListFilter,
    order: &[(DagOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<DagSummary>, i64)> {
    let mut rows_q = QueryBuilder::new(SELECT);
    rows_q.push(LAST_RUN);
    filter.push(&mut rows_q);
    push_page(
        &mut rows_q,
        order.iter().map(|(o, desc)| (o.column(), *desc)),
        "d.dag_id",
        limit,
        offset,
    );
    let mut count_q = QueryBuilder::new(
        "SELECT count(*) FROM dags d
         LEFT JOIN dag_versions v ON v.dag_id = d.dag_id AND v.hash = d.latest_hash",
    );
    count_q.push(LAST_RUN);
    filter.push(&mut count_q);
    let rows: Vec<DagSummary> = rows_q.build_query_as().fetch_all(&mut *conn).await?;
    let total: i64 = count_q.build_query_scalar().fetch_one(&mut *conn).await?;
    Ok((rows, total))
}

/// One DAG with what its current version says.
pub async fn summary(conn: &mut PgConnection, dag_id: &str) -> Result<Option<DagSummary>> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE d.dag_id = $1"))
        .bind(dag_id)
        .fetch_optional(conn)
        .await?)
}

/// Whether a DAG of that id is known.
pub async fn exists(conn: &mut PgConnection, dag_id: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dags WHERE dag_id = $1)")
            .bind(dag_id)
            .fetch_one(conn)
            .await?,
    )
}

/// The hash of the DAG's current version (`None` for an unknown DAG or one without any).
pub async fn latest_hash(conn: &mut PgConnection, dag_id: &str) -> Result<Option<String>> {
    let hash: Option<Option<String>> =
        sqlx::query_scalar("SELECT latest_hash FROM dags WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_optional(conn)
            .await?;
    Ok(hash.flatten())
}

/// Whether the DAG is paused and its `max_active_runs` (`None` for an unknown DAG).
pub async fn pause_and_limit(conn: &mut PgConnection, dag_id: &str) -> Result<Option<(bool, i32)>> {
    Ok(
        sqlx::query_as("SELECT is_paused, max_active_runs FROM dags WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_optional(conn)
            .await?,
    )
}
