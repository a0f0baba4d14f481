//! Read models of task instances and tries: what the API, the UI and the CLI list and show
//! (listing with filters, one instance, its tries, a task's history across runs, and every
//! try of a run for its gantt chart).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};

use crate::error::Result;
use crate::state::{TaskState, TryOutcome};
use crate::store::dags::VersionRef;
use crate::store::filters::{Cmp, TextMatch};

/// A task instance as listed for a run.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TiRow {
    pub id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub state: Option<TaskState>,
    pub try_number: i32,
    pub max_tries: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// The pool it takes `pool_slots` of while it runs, and its effective priority weight.
    pub pool: String,
    pub pool_slots: i32,
    pub priority_weight: i32,
    /// A user's note on it (Airflow 3's task instance note).
    pub note: Option<String>,
}

/// The task instances of one run, in creation order.
pub async fn for_run(conn: &mut PgConnection, run_pk: i64) -> Result<Vec<TiRow>> {
    Ok(sqlx::query_as(
        "SELECT id, run_pk, dag_id, run_id, task_id, state, try_number, max_tries, next_retry_at,
                worker, queued_at, start_date, end_date, pool, pool_slots, priority_weight, note
         FROM task_instances WHERE run_pk = $1 ORDER BY id",
    )
    .bind(run_pk)
    .fetch_all(conn)
    .await?)
}

/// One try, as shown by `upiflow history`.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TryRow {
    pub id: i64,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<TryOutcome>,
    pub error: Option<String>,
}

/// Every try of a task across runs, newest first.
pub async fn history(
    conn: &mut PgConnection,
    dag_id: &str,
    task_id: &str,
    limit: i64,
) -> Result<Vec<TryRow>> {
    Ok(sqlx::query_as(
        "SELECT tr.id, ti.run_id, ti.task_id, tr.try_number, tr.worker, tr.started_at,
                tr.ended_at, tr.outcome, tr.error
         FROM task_tries tr JOIN task_instances ti ON ti.id = tr.ti_id
         WHERE ti.dag_id = $1 AND ti.task_id = $2
         ORDER BY tr.started_at DESC, tr.id DESC LIMIT $3",
    )
    .bind(dag_id)
    .bind(task_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// A task instance with its run's dates, the worker it ran on and its DAG version: what the
/// JSON API shows of it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TiDetail {
    pub id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub state: Option<TaskState>,
    pub try_number: i32,
    pub max_tries: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
    /// Host and process id of the worker, while it is known.
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub logical_date: DateTime<Utc>,
    /// When the run could start: the end of its data interval.
    pub run_after: DateTime<Utc>,
    pub dag_hash: String,
    /// The pool it takes `pool_slots` of while it runs, and its effective priority weight.
    pub pool: String,
    pub pool_slots: i32,
    pub priority_weight: i32,
    /// A user's note on it (Airflow 3's task instance note).
    pub note: Option<String>,
    /// Its run's DAG version.
    #[sqlx(flatten)]
    pub version: VersionRef,
}

/// Which task instances to list. Every filter is optional; all are bound parameters.
#[derive(Debug, Clone, Default)]
pub struct TiFilter {
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    /// Runs by primary key (for clearing across runs).
    pub run_pks: Option<Vec<i64>>,
    pub task_ids: Option<Vec<String>>,
    /// States to keep; `None` in the list keeps instances with no state yet.
    pub states: Option<Vec<Option<TaskState>>>,
    /// Bounds on the run's or the instance's dates.
    pub dates: Vec<(TiDate, Cmp, DateTime<Utc>)>,
    /// Any of these DAGs / runs, exactly (an empty list matches nothing).
    pub dag_ids: Option<Vec<String>>,
    pub run_ids: Option<Vec<String>>,
    pub dag_id_matches: Vec<TextMatch>,
    pub run_id_matches: Vec<TextMatch>,
    pub task_id_matches: Vec<TextMatch>,
    /// Any of these pools, exactly.
    pub pools: Option<Vec<String>>,
    pub pool_matches: Vec<TextMatch>,
    /// Any of these try numbers.
    pub try_numbers: Option<Vec<i32>>,
    /// Bounds on `end_date - start_date`, in seconds (instances that have not ended never
    /// match).
    pub durations: Vec<(Cmp, f64)>,
}

/// A date a task instance can be filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiDate {
    LogicalDate,
    RunAfter,
    StartDate,
    EndDate,
}

impl TiDate {
    /// Whether it is a date of the run (not of the instance).
    fn of_run(self) -> bool {
        matches!(self, Self::LogicalDate | Self::RunAfter)
    }
}

/// A sort key of [`search`] (a closed set, so no client text reaches the SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiOrder {
    Id,
    DagId,
    RunId,
    TaskId,
    State,
    TryNumber,
    StartDate,
    EndDate,
    LogicalDate,
    RunAfter,
    Pool,
    Duration,
}

impl TiOrder {
    /// Whether it sorts by a column of the run.
    fn of_run(self) -> bool {
        matches!(self, Self::LogicalDate | Self::RunAfter)
    }

    fn column(self) -> &'static str {
        match self {
            Self::Id => "ti.id",
            Self::DagId => "ti.dag_id",
            Self::RunId => "ti.run_id",
            Self::TaskId => "ti.task_id",
            Self::State => "ti.state",
            Self::TryNumber => "ti.try_number",
            Self::StartDate => "ti.start_date",
            Self::EndDate => "ti.end_date",
            Self::LogicalDate => "r.logical_date",
            Self::RunAfter => "r.data_interval_end",
            Self::Pool => "ti.pool",
            Self::Duration => "(ti.end_date - ti.start_date)",
        }
    }
}

fn push_ti_filter(q: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, f: &TiFilter) {
    q.push(" WHERE true");
    if let Some(v) = &f.dag_id {
        q.push(" AND ti.dag_id = ").push_bind(v.clone());
    }
    if let Some(v) = &f.run_id {
        q.push(" AND ti.run_id = ").push_bind(v.clone());
    }
    if let Some(v) = &f.run_pks {
        q.push(" AND ti.run_pk = ANY(")
            .push_bind(v.clone())
            .push(")");
    }
    if let Some(v) = &f.task_ids {
        q.push(" AND ti.task_id = ANY(")
            .push_bind(v.clone())
            .push(")");
    }
    if let Some(states) = &f.states {
        let named: Vec<TaskState> = states.iter().flatten().copied().collect();
        let none = states.iter().any(Option::is_none);
        q.push(" AND (ti.state = ANY(")
            .push_bind(named)
            .push(") OR (")
            .push_bind(none)
            .push(" AND ti.state IS NULL))");
    }
    for (date, cmp, v) in &f.dates {
        let col = match date {
            TiDate::LogicalDate => "r.logical_date",
            TiDate::RunAfter => "r.data_interval_end",
            TiDate::StartDate => "ti.start_date",
            TiDate::EndDate => "ti.end_date",
        };
        q.push(format_args!(" AND {col} {} ", cmp.sql()))
            .push_bind(*v);
    }
    if let Some(v) = &f.dag_ids {
        q.push(" AND ti.dag_id = ANY(")
            .push_bind(v.clone())
            .push(")");
    }
    if let Some(v) = &f.run_ids {
        q.push(" AND ti.run_id = ANY(")
            .push_bind(v.clone())
            .push(")");
    }
    for m in &f.dag_id_matches {
        m.push(q, "ti.dag_id");
    }
    for m in &f.run_id_matches {
        m.push(q, "ti.run_id");
    }
    for m in &f.task_id_matches {
        m.push(q, "ti.task_id");
    }
    if let Some(v) = &f.pools {
        q.push(" AND ti.pool = ANY(").push_bind(v.clone()).push(")");
    }
    for m in &f.pool_matches {
        m.push(q, "ti.pool");
    }
    if let Some(v) = &f.try_numbers {
        q.push(" AND ti.try_number = ANY(")
            .push_bind(v.clone())
            .push(")");
    }
    for (cmp, secs) in &f.durations {
        q.push(format_args!(
            " AND EXTRACT(EPOCH FROM ti.end_date - ti.start_date) {} ",
            cmp.sql()
        ))
        .push_bind(*secs);
    }
}

/// One page of the task instances that match, and how many match in all.
pub async fn search(
    conn: &mut PgConnection,
    f: &TiFilter,
    order: &[(TiOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<TiDetail>, i64)> {
    // Every task instance has its run (a foreign key): the count and the page join the runs
    // only for a filter or a sort key of theirs, and never the workers; the page's rows then
    // get their run, worker and version.
    let of_run = f.dates.iter().any(|(d, _, _)| d.of_run());
    let sorted_by_run = order.iter().any(|(k, _)| k.of_run());
    let mut count = sqlx::QueryBuilder::new("SELECT count(*) FROM task_instances ti");
    if of_run {
        count.push(RUN_JOIN);
    }
    push_ti_filter(&mut count, f);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;

    let keys = || order.iter().map(|(k, desc)| (k.column(), *desc));
    let mut q = sqlx::QueryBuilder::new(
        "SELECT ti.id, ti.run_pk, ti.dag_id, ti.run_id, ti.task_id, ti.state, ti.try_number,
                ti.max_tries, ti.next_retry_at, ti.worker, w.hostname, w.pid, ti.queued_at,
                ti.start_date, ti.end_date, r.logical_date, r.data_interval_end AS run_after,
                r.dag_hash, ti.pool, ti.pool_slots, ti.priority_weight, ti.note, ver.*
         FROM (SELECT ti.* FROM task_instances ti",
    );
    if of_run || sorted_by_run {
        q.push(RUN_JOIN);
    }
    push_ti_filter(&mut q, f);
    crate::store::filters::push_page(&mut q, keys(), "ti.id", limit, offset);
    q.push(") ti")
        .push(RUN_JOIN)
        .push(" LEFT JOIN workers w ON w.worker_id = ti.worker")
        .push(crate::store::dags::version_join());
    crate::store::filters::push_order(&mut q, keys(), "ti.id");
    let rows = q.build_query_as().fetch_all(&mut *conn).await?;
    Ok((rows, total))
}

const RUN_JOIN: &str = " JOIN dag_runs r ON r.id = ti.run_pk";

/// One task instance of a run, if there is one.
pub async fn detail(
    conn: &mut PgConnection,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<Option<TiDetail>> {
    let f = TiFilter {
        dag_id: Some(dag_id.into()),
        run_id: Some(run_id.into()),
        task_ids: Some(vec![task_id.into()]),
        ..TiFilter::default()
    };
    Ok(search(conn, &f, &[], 1, 0).await?.0.into_iter().next())
}

/// One try of a task instance, with the host of the worker that ran it.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TryDetail {
    pub id: i64,
    pub try_number: i32,
    pub worker: String,
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<TryOutcome>,
    pub error: Option<String>,
}

const TRY_SELECT: &str = "SELECT tr.id, tr.try_number, tr.worker, w.hostname, w.pid, tr.started_at,
        tr.ended_at, tr.outcome, tr.error
    FROM task_tries tr LEFT JOIN workers w ON w.worker_id = tr.worker WHERE tr.ti_id = $1";

/// Every try of one task instance, first try first.
pub async fn tries(conn: &mut PgConnection, ti_id: i64) -> Result<Vec<TryDetail>> {
    Ok(
        sqlx::query_as(&format!("{TRY_SELECT} ORDER BY tr.try_number"))
            .bind(ti_id)
            .fetch_all(conn)
            .await?,
    )
}

/// Try number `try_number` of one task instance, if it happened.
pub async fn find_try(
    conn: &mut PgConnection,
    ti_id: i64,
    try_number: i32,
) -> Result<Option<TryDetail>> {
    Ok(
        sqlx::query_as(&format!("{TRY_SELECT} AND tr.try_number = $2"))
            .bind(ti_id)
            .bind(try_number)
            .fetch_optional(conn)
            .await?,
    )
}

/// One try of a task instance of a run.
#[derive(Debug, Clone, FromRow)]
pub struct RunTry {
    pub task_id: String,
    pub try_number: i32,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `None` while the try runs.
    pub outcome: Option<TryOutcome>,
}

/// The task instance `task_id` of the run `run_pk`, if the run has one.
pub async fn task_instance(
    conn: &mut PgConnection,
    run_pk: i64,
    task_id: &str,
) -> Result<Option<TiRow>> {
    Ok(sqlx::query_as(
        "SELECT id, run_pk, dag_id, run_id, task_id, state, try_number, max_tries, next_retry_at,
                worker, queued_at, start_date, end_date, pool, pool_slots, priority_weight, note
         FROM task_instances WHERE run_pk = $1 AND task_id = $2",
    )
    .bind(run_pk)
    .bind(task_id)
    .fetch_optional(conn)
    .await?)
}

/// Every try of the run's task instances, in the order they started.
pub async fn run_tries(conn: &mut PgConnection, run_pk: i64) -> Result<Vec<RunTry>> {
    Ok(sqlx::query_as(
        "SELECT ti.task_id, tr.try_number, tr.started_at, tr.ended_at, tr.outcome
         FROM task_instances ti JOIN task_tries tr ON tr.ti_id = ti.id
         WHERE ti.run_pk = $1 ORDER BY tr.started_at, tr.id",
    )
    .bind(run_pk)
    .fetch_all(conn)
    .await?)
}
