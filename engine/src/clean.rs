//! `upiflow db clean` (Airflow's `airflow db clean`): which tables are cleaned, by which
//! recency column, what is never deleted, and the batched deletion behind it.
//!
//! The rules, as Airflow's `db_cleanup` has them where upiflow has the same table:
//! - `dag_runs` by the run's start (Airflow's recency column for `dag_run` is `start_date`;
//!   a run that never started, e.g. marked while queued, counts from `queued_at` so it does not
//!   stay forever). Only finished runs (`success`, `failed`) go: a queued or running run never
//!   does. The newest run of each DAG is kept, however old, and so is its newest run that is
//!   not `manual` (Airflow's keep-last for `dag_run`, whose filter ignores manually triggered
//!   runs: Airflow keeps only that one, the issue asks for the newest run), and so is every run in the range of a backfill still running (it counts them to know when it is
//!   done). A run takes its task instances, their tries and log lines with it.
//! - `event_log` by `dttm` (Airflow's `log`).
//! - `notifications` by `created_at`, only delivered or given-up ones (Airflow cleans
//!   `callback_request` by `created_at`); their `notification_attempts` go with them.
//! - `missed_intervals` by `recorded_at`; `backfills` by `completed_at`, only finished ones no
//!   run refers to any more (runs are cleaned first, so a backfill goes with its last run);
//!   `scheduler_loops` by `last_loop_at`; `workers` by `heartbeat_at` (Airflow's `job` by
//!   `latest_heartbeat`).
//!
//! Left out on purpose: `import_errors` (the current errors of the DAGs folder, replaced as a
//! whole when they change: an old row may still be true), `dag_versions` (their numbers are
//! counted by creation, so deleting old ones would renumber the others), `dags`, pools,
//! connections, variables, users and the product's tables.
//!
//! Each batch is its own transaction, so a large clean never holds locks for long nor grows
//! one huge transaction; rows another transaction holds are skipped, not waited for. At the
//! end the tables that lost rows are vacuumed and analysed (unlike Airflow), so reads of the
//! newest runs do not walk past the deleted ones until autovacuum comes by.

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::{EngineError, Result};
use crate::state::{RunState, RunType};
use crate::store::clean::{self as sql, RunRule, Simple};

/// A table `db clean` cleans (named by `--tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    DagRuns,
    EventLog,
    Notifications,
    MissedIntervals,
    Backfills,
    SchedulerLoops,
    Workers,
}

impl Table {
    /// Every cleanable table, in the order they are cleaned (runs before backfills).
    pub const ALL: [Table; 7] = [
        Table::DagRuns,
        Table::EventLog,
        Table::Notifications,
        Table::MissedIntervals,
        Table::Backfills,
        Table::SchedulerLoops,
        Table::Workers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::DagRuns => "dag_runs",
            Table::EventLog => "event_log",
            Table::Notifications => "notifications",
            Table::MissedIntervals => "missed_intervals",
            Table::Backfills => "backfills",
            Table::SchedulerLoops => "scheduler_loops",
            Table::Workers => "workers",
        }
    }

    /// The column a row's age is read from.
    pub fn recency_column(self) -> &'static str {
        match self {
            Table::DagRuns => "start_date (queued_at if it never started)",
            Table::EventLog => "dttm",
            Table::Notifications => "created_at",
            Table::MissedIntervals => "recorded_at",
            Table::Backfills => "completed_at",
            Table::SchedulerLoops => "last_loop_at",
            Table::Workers => "heartbeat_at",
        }
    }

    /// What is kept although it is old.
    pub fn keeps(self) -> &'static str {
        match self {
            Table::DagRuns => {
                "queued and running runs; the latest run and the latest non-manual run of each DAG"
            }
            Table::Notifications => "notifications not yet delivered nor given up",
            Table::Backfills => "running backfills; backfills that still have runs",
            _ => "",
        }
    }

    /// The tables whose rows go with this table's rows.
    pub fn dependents(self) -> &'static [&'static str] {
        match self {
            Table::DagRuns => &["task_instances", "task_tries", "task_logs"],
            Table::Notifications => &["notification_attempts"],
            _ => &[],
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    fn simple(self) -> Option<Simple> {
        Some(match self {
            Table::DagRuns => return None,
            Table::EventLog => Simple::EventLog,
            Table::Notifications => Simple::Notifications,
            Table::MissedIntervals => Simple::MissedIntervals,
            Table::Backfills => Simple::Backfills,
            Table::SchedulerLoops => Simple::SchedulerLoops,
            Table::Workers => Simple::Workers,
        })
    }
}

/// The tables named (in cleaning order, each once), or every table when `names` is `None`;
/// an unknown name is an error that lists the valid ones.
pub fn select_tables(names: Option<&[String]>) -> Result<Vec<Table>> {
    let Some(names) = names else {
        return Ok(Table::ALL.to_vec());
    };
    let mut wanted = Vec::new();
    for name in names {
        let t = Table::from_name(name.trim()).ok_or_else(|| EngineError::CleanTableUnknown {
            name: name.clone(),
            valid: Table::ALL.iter().map(|t| t.name().to_string()).collect(),
        })?;
        wanted.push(t);
    }
    Ok(Table::ALL
        .into_iter()
        .filter(|t| wanted.contains(t))
        .collect())
}

/// Which runs may go (the rules above).
fn run_rule(cutoff: DateTime<Utc>) -> RunRule {
    RunRule {
        cutoff,
        states: vec![RunState::Success, RunState::Failed],
        keep_last_excludes: vec![RunType::Manual],
    }
}

/// Rows of one table (that would go, or went) and of the tables that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    pub table: Table,
    pub rows: u64,
    /// `(table, rows)` for each of [`Table::dependents`].
    pub dependents: Vec<(&'static str, u64)>,
}

impl Rows {
    fn empty(table: Table) -> Self {
        Rows {
            table,
            rows: 0,
            dependents: table.dependents().iter().map(|d| (*d, 0)).collect(),
        }
    }

    fn add(&mut self, other: &Rows) {
        self.rows += other.rows;
        for ((_, n), (_, m)) in self.dependents.iter_mut().zip(&other.dependents) {
            *n += m;
        }
    }
}

fn run_rows(r: sql::RunRows) -> Rows {
    Rows {
        table: Table::DagRuns,
        rows: r.runs,
        dependents: vec![
            ("task_instances", r.task_instances),
            ("task_tries", r.task_tries),
            ("task_logs", r.task_logs),
        ],
    }
}

fn simple_rows(table: Table, r: sql::SimpleRows) -> Rows {
    let mut rows = Rows::empty(table);
    rows.rows = r.rows;
    if let Some((_, n)) = rows.dependents.first_mut() {
        *n = r.dependents;
    }
    rows
}

/// How many rows of each table older than `cutoff` a clean would delete (the dry run).
pub async fn count(pool: &PgPool, cutoff: DateTime<Utc>, tables: &[Table]) -> Result<Vec<Rows>> {
    let mut out = Vec::with_capacity(tables.len());
    for &t in tables {
        let rows = crate::transient::retry("count rows to clean", || async {
            let mut conn = pool.acquire().await?;
            Ok(match t.simple() {
                None => run_rows(sql::count_runs(&mut conn, &run_rule(cutoff)).await?),
                Some(s) => simple_rows(t, sql::count_simple(&mut conn, s, cutoff).await?),
            })
        })
        .await?;
        out.push(rows);
    }
    Ok(out)
}

/// Deletes every row of `tables` older than `cutoff` that the rules allow, `batch_size` rows
/// of a table per transaction, calling `on_batch` after each committed batch; returns what
/// went, per table.
pub async fn clean(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    tables: &[Table],
    batch_size: NonZeroU32,
    mut on_batch: impl FnMut(&Rows),
) -> Result<Vec<Rows>> {
    let limit = i64::from(batch_size.get());
    let mut out = Vec::with_capacity(tables.len());
    for &t in tables {
        let mut total = Rows::empty(t);
        loop {
            let batch = crate::transient::retry("delete a batch of old rows", || async {
                let mut tx = pool.begin().await?;
                let rows = match t.simple() {
                    None => run_rows(sql::delete_runs(&mut tx, &run_rule(cutoff), limit).await?),
                    Some(s) => simple_rows(t, sql::delete_simple(&mut tx, s, cutoff, limit).await?),
                };
                tx.commit().await?;
                Ok(rows)
            })
            .await?;
            if batch.rows == 0 {
                break;
            }
            total.add(&batch);
            on_batch(&batch);
        }
        tracing::info!(table = t.name(), rows = total.rows, dependents = ?total.dependents, %cutoff, "cleaned");
        out.push(total);
    }
    // Vacuum what changed, so reads are as fast at once as the smaller table allows.
    let mut changed: Vec<&str> = Vec::new();
    for r in out.iter().filter(|r| r.rows > 0) {
        changed.push(r.table.name());
        changed.extend(r.table.dependents());
    }
    crate::transient::retry("vacuum cleaned tables", || sql::vacuum(pool, &changed)).await?;
    Ok(out)
}
