//! Pools: named numbers of slots that the claim shares out (`crate::store::tis::claim`), their
//! use by task instances, and which DAGs' current versions name them. The rules for changing
//! them (names, sizes, what may be deleted) are `crate::pools`'.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::dag::DEFAULT_POOL;
use crate::error::Result;
use crate::state::TaskState;
use crate::store::filters::{TextMatch, push_page};

/// Every pool's size: name -> slots.
pub async fn sizes(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i32)> = sqlx::query_as("SELECT name, slots FROM pools")
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(n, s)| (n, i64::from(s))).collect())
}

/// A pool as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PoolRow {
    pub name: String,
    pub slots: i32,
    pub description: Option<String>,
    /// Airflow's flag (deferred task instances count against the pool); upiflow has no
    /// deferred state, so it changes nothing and is stored and reported only.
    pub include_deferred: bool,
    pub updated_at: DateTime<Utc>,
}

/// A pool with the slots its task instances hold or wait for (sums of `pool_slots`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PoolUsage {
    #[sqlx(flatten)]
    pub pool: PoolRow,
    /// Slots of task instances in state `running`.
    pub running: i64,
    /// Slots of task instances in state `queued`. upiflow's claim moves a task instance
    /// straight from `scheduled` to `running`, so nothing is in `queued` today and this is 0;
    /// it is counted rather than assumed, so it stays true if that ever changes.
    pub queued: i64,
    /// Slots of task instances waiting for a try: `scheduled` or `up_for_retry` (Airflow's
    /// `scheduled_slots`; upiflow's retries wait in the pool's queue as `up_for_retry`).
    pub scheduled: i64,
}

impl PoolUsage {
    /// Airflow's `occupied_slots`: running and queued. Airflow adds deferred task instances
    /// when `include_deferred` is set; upiflow has no deferred state, so there are none.
    pub fn occupied(&self) -> i64 {
        self.running + self.queued
    }

    /// Airflow's `open_slots`: the pool's size less what is occupied. Negative when the pool
    /// was shrunk below what is running (the running tries finish; nothing new starts).
    pub fn open(&self) -> i64 {
        i64::from(self.pool.slots) - self.occupied()
    }
}

/// The columns of [`PoolUsage`], for `FROM pools p`.
const USAGE_SELECT: &str =
    "SELECT p.name, p.slots, p.description, p.include_deferred, p.updated_at,
        COALESCE(u.running, 0)::bigint AS running,
        COALESCE(u.queued, 0)::bigint AS queued,
        COALESCE(u.scheduled, 0)::bigint AS scheduled
    FROM pools p
    LEFT JOIN (
        SELECT pool,
            sum(pool_slots) FILTER (WHERE state = 'running') AS running,
            sum(pool_slots) FILTER (WHERE state = 'queued') AS queued,
            sum(pool_slots) FILTER (WHERE state IN ('scheduled', 'up_for_retry')) AS scheduled
        FROM task_instances
        WHERE state IN ('running', 'queued', 'scheduled', 'up_for_retry')
        GROUP BY pool
    ) u ON u.pool = p.name
    WHERE true";

/// What a pool list is sorted by (Airflow sorts pools by id or by name; upiflow's have no id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolOrder {
    Name,
}

/// One page of pools with their use, and how many match in all.
pub async fn list(
    conn: &mut PgConnection,
    name_matches: &[TextMatch],
    order: &[(PoolOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<PoolUsage>, i64)> {
    let mut count: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT count(*) FROM pools p WHERE true");
    for m in name_matches {
        m.push(&mut count, "p.name");
    }
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(USAGE_SELECT);
    for m in name_matches {
        m.push(&mut q, "p.name");
    }
    let keys = order.iter().map(|(o, desc)| {
        (
            match o {
                PoolOrder::Name => "p.name",
            },
            *desc,
        )
    });
    push_page(&mut q, keys, "p.name", limit, offset);
    let rows = q.build_query_as().fetch_all(&mut *conn).await?;
    Ok((rows, total))
}

/// Every pool with its use, by name.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<PoolUsage>> {
    let q = format!("{USAGE_SELECT} ORDER BY p.name");
    Ok(sqlx::query_as(&q).fetch_all(conn).await?)
}

/// One pool with its use.
pub async fn get(conn: &mut PgConnection, name: &str) -> Result<Option<PoolUsage>> {
    let q = format!("{USAGE_SELECT} AND p.name = $1");
    Ok(sqlx::query_as(&q).bind(name).fetch_optional(conn).await?)
}

/// The pool, locked (`FOR UPDATE`) until the transaction ends.
pub async fn lock(conn: &mut PgConnection, name: &str) -> Result<Option<PoolRow>> {
    Ok(sqlx::query_as(
        "SELECT name, slots, description, include_deferred, updated_at
         FROM pools WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?)
}

/// Creates the pool or changes its size; `description` `None` keeps the one it has (a new
/// pool has none), `Some("")` removes it. Returns the row and whether it was created.
pub async fn upsert(
    conn: &mut PgConnection,
    name: &str,
    slots: i32,
    description: Option<&str>,
) -> Result<(PoolRow, bool)> {
    let (name, slots, description, include_deferred, updated_at, created) = sqlx::query_as(
        "INSERT INTO pools (name, slots, description) VALUES ($1, $2, NULLIF($3, ''))
         ON CONFLICT (name) DO UPDATE SET slots = EXCLUDED.slots,
             description = CASE WHEN $3 IS NULL THEN pools.description
                                ELSE EXCLUDED.description END,
             updated_at = now()
         RETURNING name, slots, description, include_deferred, updated_at, (xmax = 0) AS created",
    )
    .bind(name)
    .bind(slots)
    .bind(description)
    .fetch_one(conn)
    .await?;
    let row = PoolRow {
        name,
        slots,
        description,
        include_deferred,
        updated_at,
    };
    Ok((row, created))
}

/// Creates a pool; `None` if one of that name exists.
pub async fn insert(
    conn: &mut PgConnection,
    name: &str,
    slots: i32,
    description: Option<&str>,
    include_deferred: bool,
) -> Result<Option<PoolRow>> {
    Ok(sqlx::query_as(
        "INSERT INTO pools (name, slots, description, include_deferred) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING
         RETURNING name, slots, description, include_deferred, updated_at",
    )
    .bind(name)
    .bind(slots)
    .bind(description)
    .bind(include_deferred)
    .fetch_optional(conn)
    .await?)
}

/// Writes every field of `row` but its name and time to the pool of its name.
pub async fn update(conn: &mut PgConnection, row: &PoolRow) -> Result<PoolRow> {
    Ok(sqlx::query_as(
        "UPDATE pools SET slots = $2, description = $3, include_deferred = $4, updated_at = now()
         WHERE name = $1
         RETURNING name, slots, description, include_deferred, updated_at",
    )
    .bind(&row.name)
    .bind(row.slots)
    .bind(&row.description)
    .bind(row.include_deferred)
    .fetch_one(conn)
    .await?)
}

/// Deletes the pool; whether there was one.
pub async fn delete(conn: &mut PgConnection, name: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM pools WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// A task of a DAG's current version that runs in a pool.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PoolTask {
    pub dag_id: String,
    pub task_id: String,
    pub pool_slots: i32,
}

/// The tasks of DAGs whose files are present (their current version, `dags.latest_hash`)
/// that run in `pool` (a task naming none runs in `default_pool`), by DAG and task.
pub async fn dag_tasks_in(conn: &mut PgConnection, pool: &str) -> Result<Vec<PoolTask>> {
    // The serialised DAG leaves `pool` out for the default pool and `pool_slots` for 1.
    Ok(sqlx::query_as(
        "SELECT d.dag_id, t->>'id' AS task_id, COALESCE((t->>'pool_slots')::int, 1) AS pool_slots
         FROM dags d
         JOIN dag_versions v ON v.dag_id = d.dag_id AND v.hash = d.latest_hash
         CROSS JOIN LATERAL jsonb_array_elements(v.spec->'tasks') AS t
         WHERE d.is_active AND COALESCE(t->>'pool', $2) = $1
         ORDER BY d.dag_id, t->>'id'",
    )
    .bind(pool)
    .bind(DEFAULT_POOL)
    .fetch_all(conn)
    .await?)
}

/// A task instance in a pool that has not finished.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PoolTi {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub state: Option<TaskState>,
}

/// Task instances in `pool` that will still take its slots: scheduled, queued, running or up
/// for retry, or with no status yet in a run that has not finished. At most `limit`.
pub async fn unfinished_in(conn: &mut PgConnection, pool: &str, limit: i64) -> Result<Vec<PoolTi>> {
    Ok(sqlx::query_as(
        "SELECT ti.dag_id, ti.run_id, ti.task_id, ti.state
         FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk
         WHERE ti.pool = $1
           AND (ti.state IN ('scheduled', 'queued', 'running', 'up_for_retry')
                OR (ti.state IS NULL AND r.state IN ('queued', 'running')))
         ORDER BY ti.id
         LIMIT $2",
    )
    .bind(pool)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
