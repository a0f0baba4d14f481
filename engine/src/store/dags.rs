//! DAG rows and their content-addressed versions (with the numbers Airflow shows for them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

use crate::dag::Dag;
use crate::error::{EngineError, Result};

/// A DAG as the database knows it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct DagRow {
    pub dag_id: String,
    pub is_paused: bool,
    pub fileloc: Option<String>,
    pub latest_hash: Option<String>,
    pub description: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub max_active_runs: i32,
    pub updated_at: DateTime<Utc>,
    pub next_dagrun: Option<DateTime<Utc>>,
    pub unpaused_at: Option<DateTime<Utc>>,
    pub is_active: bool,
}

/// Records `dag` as the current definition of its id and stores its version; returns the hash.
/// The DAG-file sync (the scheduler's, like Airflow's DAG processor) is the one caller that
/// may move `latest_hash`; operations on behalf of a user go through [`register`].
pub async fn sync(conn: &mut PgConnection, dag: &Dag) -> Result<String> {
    let hash = dag.version_hash();
    upsert(
        conn,
        dag,
        &hash,
        "dags.latest_hash IS DISTINCT FROM EXCLUDED.latest_hash
            OR dags.fileloc IS DISTINCT FROM EXCLUDED.fileloc",
    )
    .await?;
    store_version(conn, dag, &hash).await?;
    Ok(hash)
}

/// What [`register`] found: the hash of the caller's definition, and the version of the DAG
/// the database says new runs use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The caller's definition, now stored in `dag_versions`.
    pub hash: String,
    /// `dags.latest_hash`: the caller's own hash only if the DAG was new to the database.
    pub latest_hash: String,
}

/// Stores `dag`'s version and records the DAG if the database does not know it yet, but never
/// changes the current version of a known DAG (only [`sync`], the DAG-file sync, moves it);
/// locks the `dags` row for the rest of the transaction and returns both hashes.
pub async fn register(conn: &mut PgConnection, dag: &Dag) -> Result<Registered> {
    let hash = dag.version_hash();
    // ON CONFLICT DO UPDATE locks the conflicting row even when its WHERE is false, so the
    // `dags` row is taken here, before any `dag_runs` row, as `sync` takes it.
    upsert(conn, dag, &hash, "dags.latest_hash IS NULL").await?;
    store_version(conn, dag, &hash).await?;
    let latest: Option<String> =
        sqlx::query_scalar("SELECT latest_hash FROM dags WHERE dag_id = $1 FOR UPDATE")
            .bind(&dag.dag_id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(Registered {
        latest_hash: latest.unwrap_or_else(|| hash.clone()),
        hash,
    })
}

/// Inserts the DAG row with `hash` as its current version, or updates a known one where
/// `update_when` (a condition on `dags` and `EXCLUDED`, a constant of this file) holds.
async fn upsert(
    conn: &mut PgConnection,
    dag: &Dag,
    hash: &str,
    update_when: &'static str,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO dags (dag_id, fileloc, latest_hash, description, schedule, timezone,
                           max_active_runs, max_active_tasks)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (dag_id) DO UPDATE SET
            fileloc = EXCLUDED.fileloc, latest_hash = EXCLUDED.latest_hash,
            description = EXCLUDED.description, schedule = EXCLUDED.schedule,
            timezone = EXCLUDED.timezone, max_active_runs = EXCLUDED.max_active_runs,
            max_active_tasks = EXCLUDED.max_active_tasks, updated_at = now()
         WHERE {update_when}"
    ))
    .bind(&dag.dag_id)
    .bind(&dag.fileloc)
    .bind(hash)
    .bind(&dag.description)
    .bind(&dag.schedule)
    .bind(&dag.timezone)
    .bind(dag.max_active_runs as i32)
    .bind(dag.max_active_tasks as i32)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores a version of a DAG (content-addressed: storing it again changes no definition)
/// with the text of the file it was read from, when known: a known version takes the newer
/// text (a file whose comments changed defines the same version). `created_at` is the clock
/// when the `dags` row is already locked (both callers upsert it first), and so is its
/// number, the DAG's largest plus one: a DAG's versions are numbered in the order they were
/// committed, and a version's number never changes.
async fn store_version(conn: &mut PgConnection, dag: &Dag, hash: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO dag_versions (dag_id, hash, spec, source, created_at, number)
         VALUES ($1, $2, $3, $4, clock_timestamp(),
                 (SELECT coalesce(max(number), 0) + 1 FROM dag_versions WHERE dag_id = $1))
         ON CONFLICT (dag_id, hash) DO UPDATE SET source = EXCLUDED.source
         WHERE EXCLUDED.source IS NOT NULL
           AND dag_versions.source IS DISTINCT FROM EXCLUDED.source",
    )
    .bind(&dag.dag_id)
    .bind(hash)
    .bind(dag.to_json())
    .bind(&dag.source)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every DAG version with its number (1 for a DAG's first version, then 2, 3, ... in the
/// order they were stored, given by `store_version`): the one numbering of versions (runs,
/// `/dagVersions`, sources). Versions are never deleted one by one (only with their DAG), and
/// a number is stored, so numbers are stable.
pub(crate) const NUMBERED_VERSIONS: &str = "SELECT dag_id, hash, created_at, number
    FROM dag_versions";

/// `LEFT JOIN` of the version of each row of the run alias `r` (`r.dag_id`, `r.dag_hash`),
/// as `ver` with [`VersionRef`]'s columns (by primary key): a list reads its rows' versions
/// in its own query.
pub(crate) fn version_join() -> &'static str {
    " LEFT JOIN LATERAL (SELECT v.created_at AS version_created_at,
            v.number AS version_number
        FROM dag_versions v WHERE v.dag_id = r.dag_id AND v.hash = r.dag_hash) ver ON true"
}

/// The version a listed row refers to ([`version_join`]); `None` if it is not stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct VersionRef {
    pub version_created_at: Option<DateTime<Utc>>,
    /// 1 for a DAG's first version, then 2, 3, ...
    pub version_number: Option<i64>,
}

/// The ids of every DAG the database knows.
pub async fn known_ids(conn: &mut PgConnection) -> Result<std::collections::HashSet<String>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT dag_id FROM dags")
        .fetch_all(conn)
        .await?;
    Ok(ids.into_iter().collect())
}

/// Locks the DAG row and then all its task instances (so no worker claims one until the
/// transaction ends) and returns the running ones as `run_id/task_id`; `None` for a DAG the
/// database does not know.
pub async fn lock_for_delete(conn: &mut PgConnection, dag_id: &str) -> Result<Option<Vec<String>>> {
    let known: Option<String> =
        sqlx::query_scalar("SELECT dag_id FROM dags WHERE dag_id = $1 FOR UPDATE")
            .bind(dag_id)
            .fetch_optional(&mut *conn)
            .await?;
    if known.is_none() {
        return Ok(None);
    }
    let tis: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT run_id, task_id, state IS NOT DISTINCT FROM 'running'
         FROM task_instances WHERE dag_id = $1 ORDER BY run_id, task_id FOR UPDATE",
    )
    .bind(dag_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(
        tis.into_iter()
            .filter(|(_, _, running)| *running)
            .map(|(run, task, _)| format!("{run}/{task}"))
            .collect(),
    ))
}

/// Deletes a DAG's metadata: the DAG row and with it (by cascade) its versions, runs, task
/// instances, tries and logs, missed intervals, backfills and favourites; and its
/// notifications. The audit log and the metrics' counters keep their rows.
pub async fn delete(conn: &mut PgConnection, dag_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM notifications WHERE dag_id = $1")
        .bind(dag_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM dags WHERE dag_id = $1")
        .bind(dag_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The DAG row `dag_id`, if the database knows it.
pub async fn get(conn: &mut PgConnection, dag_id: &str) -> Result<Option<DagRow>> {
    Ok(
        sqlx::query_as::<_, DagRow>("SELECT * FROM dags WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Every DAG row, by id.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<DagRow>> {
    Ok(
        sqlx::query_as::<_, DagRow>("SELECT * FROM dags ORDER BY dag_id")
            .fetch_all(conn)
            .await?,
    )
}

/// Pauses or unpauses; the DAG must be known to the database.
pub async fn set_paused(conn: &mut PgConnection, dag_id: &str, paused: bool) -> Result<()> {
    let done = sqlx::query(
        "UPDATE dags SET is_paused = $2, updated_at = now(),
            unpaused_at = CASE WHEN $2 THEN unpaused_at ELSE now() END
         WHERE dag_id = $1",
    )
    .bind(dag_id)
    .bind(paused)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(EngineError::DagNotFound(dag_id.into()));
    }
    Ok(())
}

/// Versions already read, by (dag_id, hash). Versions never change, so entries never go stale.
#[derive(Clone, Default)]
pub struct VersionCache {
    inner: Arc<Mutex<Versions>>,
}

/// Parsed versions by (dag_id, hash).
type Versions = HashMap<(String, String), Arc<Dag>>;

impl VersionCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, hash: String, dag: Arc<Dag>) {
        self.inner
            .lock()
            .expect("cache lock poisoned")
            .insert((dag.dag_id.clone(), hash), dag);
    }

    pub async fn get(&self, conn: &mut PgConnection, dag_id: &str, hash: &str) -> Result<Arc<Dag>> {
        let key = (dag_id.to_string(), hash.to_string());
        if let Some(d) = self.inner.lock().expect("cache lock poisoned").get(&key) {
            return Ok(d.clone());
        }
        let spec: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT spec FROM dag_versions WHERE dag_id = $1 AND hash = $2")
                .bind(dag_id)
                .bind(hash)
                .fetch_optional(conn)
                .await?;
        let spec = spec.ok_or_else(|| EngineError::VersionNotFound {
            dag_id: dag_id.into(),
            hash: hash.into(),
        })?;
        let dag = Arc::new(
            Dag::from_json(spec).map_err(|e| EngineError::VersionUnreadable {
                dag_id: dag_id.into(),
                hash: hash.into(),
                reason: e.to_string(),
            })?,
        );
        self.inner
            .lock()
            .expect("cache lock poisoned")
            .insert(key, dag.clone());
        Ok(dag)
    }
}

/// One version of a DAG with its number.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NumberedVersion {
    pub dag_id: String,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    /// 1 for a DAG's first version, then 2, 3, ... ([`NUMBERED_VERSIONS`]).
    pub number: i64,
}

/// The versions `(dag_id, hash)` asked for that exist, each with its number.
pub async fn numbered(
    conn: &mut PgConnection,
    wanted: &[(String, String)],
) -> Result<Vec<NumberedVersion>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let (dags, hashes): (Vec<&str>, Vec<&str>) =
        wanted.iter().map(|(d, h)| (d.as_str(), h.as_str())).unzip();
    Ok(sqlx::query_as(&format!(
        "SELECT v.dag_id, v.hash, v.created_at, v.number FROM ({NUMBERED_VERSIONS}
                WHERE dag_id = ANY($1)) v
             JOIN UNNEST($1::text[], $2::text[]) AS u(dag_id, hash)
               ON u.dag_id = v.dag_id AND u.hash = v.hash"
    ))
    .bind(&dags)
    .bind(&hashes)
    .fetch_all(conn)
    .await?)
}
