//! Which task instances a clear selects: in one run, or across the runs of a DAG whose
//! logical date lies in a range, narrowed to some tasks and states (Airflow's
//! `clearTaskInstances`). What to do with the selection (refuse running ones, clear them) is
//! the caller's; clearing itself is [`crate::store::tis::clear_many`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Result;
use crate::state::TaskState;
use crate::store::filters::Cmp;
use crate::store::task_views::{self, TiDate, TiDetail, TiFilter};

/// Which runs of one DAG, and which of their task instances, a clear is about.
#[derive(Debug, Clone)]
pub struct ClearSelection {
    pub dag_id: String,
    pub runs: RunScope,
    /// Only these tasks; `None` for every task.
    pub task_ids: Option<Vec<String>>,
    /// Only instances in these states (`None` in the list: no state yet); `None` for any.
    pub states: Option<Vec<Option<TaskState>>>,
}

/// The runs a clear looks at.
#[derive(Debug, Clone)]
pub enum RunScope {
    /// This one run (by run id).
    One(String),
    /// Every run whose logical date lies within the bounds (inclusive; `None`: unbounded).
    LogicalDates {
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
}

impl ClearSelection {
    fn filter(&self) -> TiFilter {
        let mut f = TiFilter {
            dag_id: Some(self.dag_id.clone()),
            task_ids: self.task_ids.clone(),
            states: self.states.clone(),
            ..TiFilter::default()
        };
        match &self.runs {
            RunScope::One(run_id) => f.run_id = Some(run_id.clone()),
            RunScope::LogicalDates { from, to } => {
                if let Some(t) = from {
                    f.dates.push((TiDate::LogicalDate, Cmp::Gte, *t));
                }
                if let Some(t) = to {
                    f.dates.push((TiDate::LogicalDate, Cmp::Lte, *t));
                }
            }
        }
        f
    }
}

/// Every task instance the selection takes, by id.
pub async fn select(conn: &mut PgConnection, sel: &ClearSelection) -> Result<Vec<TiDetail>> {
    let (found, _) = task_views::search(conn, &sel.filter(), &[], i64::MAX, 0).await?;
    Ok(found)
}

/// The selected instances grouped by run, as [`tis::clear_many`] takes them: `(run_pk,
/// task_ids)`, runs in key order.
pub fn by_run(found: &[TiDetail]) -> Vec<(i64, Vec<String>)> {
    let mut by_run: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for t in found {
        by_run.entry(t.run_pk).or_default().push(t.task_id.clone());
    }
    by_run.into_iter().collect()
}

/// The same task instances read again (after clearing them), by id.
pub async fn reread(conn: &mut PgConnection, found: &[TiDetail]) -> Result<Vec<TiDetail>> {
    let runs: BTreeSet<i64> = found.iter().map(|t| t.run_pk).collect();
    let again = TiFilter {
        run_pks: Some(runs.into_iter().collect()),
        task_ids: Some(found.iter().map(|t| t.task_id.clone()).collect()),
        ..TiFilter::default()
    };
    let ids: BTreeSet<i64> = found.iter().map(|t| t.id).collect();
    let (after, _) = task_views::search(conn, &again, &[], i64::MAX, 0).await?;
    Ok(after.into_iter().filter(|t| ids.contains(&t.id)).collect())
}
