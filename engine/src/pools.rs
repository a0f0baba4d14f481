//! Pools, as Airflow administers them: creating, resizing and deleting, with Airflow's rules.
//!
//! A pool's name is 1-256 letters, digits, `_`, `-` or `.` (the table's CHECK says the same);
//! its size is a whole number of slots, at least 0 (a pool of 0 slots holds its tasks back;
//! upiflow has no unlimited pools, Airflow's `-1`). Shrinking a pool below the `pool_slots`
//! a task of a current DAG version takes there is allowed, as in Airflow, but said: such
//! tries wait until the pool grows again. `default_pool` cannot be deleted, nor can a pool a
//! current DAG version names or unfinished task instances hold or wait for (Airflow would
//! delete it and leave those tasks waiting for a pool that is gone).

use sqlx::{PgConnection, PgPool};

use crate::dag::DEFAULT_POOL;
use crate::error::{EngineError, Result};
use crate::store::pools::{self as store, PoolRow, PoolTask, PoolUsage};

/// The most task instances a refused delete names.
const NAMED: usize = 10;

/// Refuses a name the pools table would not hold.
pub fn check_name(name: &str) -> Result<()> {
    if crate::dag::valid_pool_name(name) {
        Ok(())
    } else {
        Err(EngineError::PoolNameInvalid(name.to_string()))
    }
}

/// The size as stored, or why it cannot be one.
pub fn check_slots(slots: i64) -> Result<i32> {
    match i32::try_from(slots) {
        Ok(s) if s >= 0 => Ok(s),
        _ => Err(EngineError::PoolSlotsInvalid(slots)),
    }
}

/// A pool after a change, with the tasks of current DAG versions that take more of its slots
/// than it now has (their tries wait until it grows).
#[derive(Debug, Clone)]
pub struct Changed {
    pub pool: PoolUsage,
    pub created: bool,
    pub too_small: Vec<PoolTask>,
}

impl Changed {
    /// One line per task that cannot start in the pool as it is now. A pool of 0 slots holds
    /// every task back on purpose; a task larger than a pool that has slots is also what
    /// [`crate::dag::check_pools`] reports, so the DAG's checks refuse it meanwhile.
    pub fn warnings(&self) -> Vec<String> {
        let p = &self.pool.pool;
        let checks = if p.slots > 0 {
            " (and `upiflow dags validate`, trigger and the scheduler's DAG-file sync report its DAG meanwhile)"
        } else {
            ""
        };
        self.too_small
            .iter()
            .map(|t| {
                format!(
                    "task `{}.{}` takes {} slot(s) of pool `{}`, which now has {}: its tries wait until the pool grows{checks}",
                    t.dag_id, t.task_id, t.pool_slots, p.name, p.slots
                )
            })
            .collect()
    }
}

/// What a change of an existing pool sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub slots: Option<i64>,
    /// `Some(None)` removes the description.
    pub description: Option<Option<String>>,
    pub include_deferred: Option<bool>,
}

/// Creates the pool or resizes it (`upiflow pools set`, as Airflow's `pools set`):
/// `description` `None` keeps the pool's description, `Some("")` removes it.
pub async fn set(
    db: &PgPool,
    name: &str,
    slots: i64,
    description: Option<&str>,
) -> Result<Changed> {
    check_name(name)?;
    let slots = check_slots(slots)?;
    crate::transient::retry("set pool", || async {
        let mut tx = db.begin().await?;
        let (_, created) = store::upsert(&mut tx, name, slots, description).await?;
        let changed = after_change(&mut tx, name, created).await?;
        tx.commit().await?;
        Ok(changed)
    })
    .await
}

/// Creates a pool; a conflict if one of that name exists (Airflow's `POST /pools`).
pub async fn create(
    db: &PgPool,
    name: &str,
    slots: i64,
    description: Option<&str>,
    include_deferred: bool,
) -> Result<Changed> {
    check_name(name)?;
    let slots = check_slots(slots)?;
    crate::transient::retry("create pool", || async {
        let mut tx = db.begin().await?;
        if store::insert(&mut tx, name, slots, description, include_deferred)
            .await?
            .is_none()
        {
            return Err(EngineError::PoolExists(name.to_string()));
        }
        let changed = after_change(&mut tx, name, true).await?;
        tx.commit().await?;
        Ok(changed)
    })
    .await
}

/// Changes the given fields of an existing pool (Airflow's `PATCH /pools/{name}`).
pub async fn update(db: &PgPool, name: &str, patch: &Patch) -> Result<Changed> {
    let slots = patch.slots.map(check_slots).transpose()?;
    crate::transient::retry("update pool", || async {
        let mut tx = db.begin().await?;
        let row = store::lock(&mut tx, name)
            .await?
            .ok_or_else(|| EngineError::PoolNotFound(name.to_string()))?;
        let row = PoolRow {
            slots: slots.unwrap_or(row.slots),
            description: patch.description.clone().unwrap_or(row.description),
            include_deferred: patch.include_deferred.unwrap_or(row.include_deferred),
            ..row
        };
        store::update(&mut tx, &row).await?;
        let changed = after_change(&mut tx, name, false).await?;
        tx.commit().await?;
        Ok(changed)
    })
    .await
}

async fn after_change(conn: &mut PgConnection, name: &str, created: bool) -> Result<Changed> {
    let pool = store::get(conn, name)
        .await?
        .ok_or_else(|| EngineError::PoolNotFound(name.to_string()))?;
    let too_small = store::dag_tasks_in(conn, name)
        .await?
        .into_iter()
        .filter(|t| t.pool_slots > pool.pool.slots)
        .collect();
    Ok(Changed {
        pool,
        created,
        too_small,
    })
}

/// Deletes a pool that nothing uses: not `default_pool`, not one a current DAG version
/// names, not one unfinished task instances hold or wait for (each a refusal naming them).
pub async fn delete(db: &PgPool, name: &str) -> Result<()> {
    if name == DEFAULT_POOL {
        return Err(EngineError::DefaultPoolUndeletable);
    }
    crate::transient::retry("delete pool", || async {
        let mut tx = db.begin().await?;
        // Locked, so a concurrent change waits for the decision.
        if store::lock(&mut tx, name).await?.is_none() {
            return Err(EngineError::PoolNotFound(name.to_string()));
        }
        let dag_tasks: Vec<String> = store::dag_tasks_in(&mut tx, name)
            .await?
            .into_iter()
            .map(|t| format!("{}.{}", t.dag_id, t.task_id))
            .collect();
        let tis = store::unfinished_in(&mut tx, name, NAMED as i64 + 1).await?;
        let mut task_instances: Vec<String> = tis
            .iter()
            .take(NAMED)
            .map(|t| {
                let state = t.state.map_or("no status", |s| s.as_str());
                format!("{}/{}/{} ({state})", t.dag_id, t.run_id, t.task_id)
            })
            .collect();
        if tis.len() > NAMED {
            task_instances.push("and more".into());
        }
        if !dag_tasks.is_empty() || !task_instances.is_empty() {
            return Err(EngineError::PoolInUse {
                pool: name.to_string(),
                dag_tasks,
                task_instances,
            });
        }
        store::delete(&mut tx, name).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_are_checked_as_the_table_would() {
        for ok in ["api", "db.replica-1", "A_b", &"x".repeat(256)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "semi;colon", "ünï", &"x".repeat(257)] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Invalid);
            assert!(e.to_string().contains("must be 1-256 characters"), "{e}");
        }
        assert_eq!(check_slots(0).unwrap(), 0);
        assert_eq!(check_slots(3).unwrap(), 3);
        let e = check_slots(-1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pool slots must be a whole number of at least 0 (not -1)"
        );
        let e = check_slots(i64::from(i32::MAX) + 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pool slots must be a whole number of at least 0 and at most 2147483647 (not 2147483648)"
        );
    }
}
