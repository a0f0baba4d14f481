//! Claiming: a worker takes runnable task instances, best first, within every limit, and
//! loads the DAG version each needs.
//!
//! The limits are Airflow's: a pool's slots (shared by every worker: a try takes its task's
//! `pool_slots`), a run's `max_active_tasks` (Airflow 3 counts it per run) and a task's
//! `max_active_tis_per_dag` (across all runs of its DAG). The order is Airflow's too: higher
//! effective `priority_weight` first, then the older logical date, except that the runs of a
//! backfill come after every other run's (unless the backfill does not yield), so a long
//! backfill never delays today's scheduled run. Claims serialise on the pool rows
//! (`store::tis::begin_claim`), which is what makes the counts exact across workers; the
//! choice itself is [`choose`], the same greedy walk as Airflow's scheduler makes over its
//! candidates, and candidates of starved pools, runs and tasks are left out of the query so
//! lower-ranked work that fits is found.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::dag::Dag;
use crate::error::Result;
use crate::store::dags::VersionCache;
use crate::store::tis::{self, Candidate, Claimed, Exclude, RunningUse};

/// How many times a claim looks again past candidates that did not fit.
const PASSES: usize = 4;

/// What a claim took, and when to look again for a retry.
#[derive(Debug, Default)]
pub struct Claim {
    /// Each claimed task instance with its DAG version, or `None` where the version cannot
    /// be loaded (the try is then failed and recorded, never the worker).
    pub tries: Vec<(Claimed, Option<Arc<Dag>>)>,
    /// Until the earliest retry that is not due yet, if one is pending (a little after it,
    /// so the retry is due when the worker looks).
    pub next_retry_in: Option<Duration>,
    /// Whether runnable work this claim did not take may fit: a claim limited to a
    /// finish's downstream stopped at other work (or took all it could hold).
    pub left: bool,
}

/// What [`claim_locked`] took, before the DAG versions are loaded.
pub(crate) struct Taken {
    pub claimed: Vec<Claimed>,
    pub next_retry_in: Option<Duration>,
    pub left: bool,
}

impl Taken {
    /// A claim that did not look (no room, or nothing to look for): others may fit.
    pub(crate) fn nothing() -> Self {
        Taken {
            claimed: Vec::new(),
            next_retry_in: None,
            left: true,
        }
    }

    /// The [`Claim`], with the DAG version of each claimed task instance (loaded after the
    /// claim committed).
    pub(crate) async fn with_versions(
        self,
        conn: &mut PgConnection,
        cache: &VersionCache,
    ) -> Claim {
        let mut tries = Vec::with_capacity(self.claimed.len());
        for c in self.claimed {
            let dag = match cache.get(conn, &c.dag_id, &c.dag_hash).await {
                Ok(d) => Some(d),
                Err(error) => {
                    tracing::error!(%error, dag_id = %c.dag_id, "cannot load DAG version");
                    None
                }
            };
            tries.push((c, dag));
        }
        Claim {
            tries,
            next_retry_in: self.next_retry_in,
            left: self.left,
        }
    }
}

/// Claims up to `limit` runnable task instances for `worker`, in a transaction of its own.
pub async fn claim(
    pool: &PgPool,
    cache: &VersionCache,
    worker: &str,
    limit: usize,
) -> Result<Claim> {
    // One connection for the claim and the version lookups after it (each acquire pings).
    let mut conn = pool.acquire().await?;
    let mut tx = tis::begin_claim(&mut conn).await?;
    let taken = claim_locked(&mut tx, worker, limit, None).await?;
    tx.commit().await?;
    Ok(taken.with_versions(&mut conn, cache).await)
}

/// The claim itself, inside a transaction that opened with [`tis::begin_claim`]: the first
/// look, the greedy choice, more looks past what did not fit, and the update. With `only`,
/// it takes only those task instances, and stops at the first other candidate that fits
/// (so it never takes lower-ranked work over it).
pub(crate) async fn claim_locked(
    tx: &mut PgConnection,
    worker: &str,
    limit: usize,
    only: Option<&HashSet<(i64, String)>>,
) -> Result<Taken> {
    if limit == 0 {
        return Ok(Taken::nothing());
    }
    let fetch = (limit.max(8) * 2) as i64;
    let view = tis::claim_view(tx, fetch).await?;
    let next_retry_in = view
        .next_retry_ms
        .map(|ms| Duration::from_millis(ms.max(0) as u64 + 5));
    let mut room = Room::new(&view.pools, &view.running);
    let mut found = view.candidates;
    let mut chosen: Vec<i64> = Vec::new();
    let mut seen: Vec<i64> = Vec::new();
    let mut left = false;
    for pass in 1..=PASSES {
        let exhausted = (found.len() as i64) < fetch;
        seen.extend(found.iter().map(|c| c.id));
        let walk = choose(&mut room, &found, limit - chosen.len(), only);
        chosen.extend(walk.ids);
        left |= walk.stopped;
        if exhausted || left || chosen.len() == limit || pass == PASSES {
            break;
        }
        // Look again past what did not fit, leaving out what is full now.
        let mut exclude = room.starved();
        exclude.seen = seen.clone();
        found = tis::candidates(tx, &exclude, fetch).await?;
    }
    let claimed = if chosen.is_empty() {
        Vec::new()
    } else {
        tis::claim_ids(tx, worker, &chosen).await?
    };
    Ok(Taken {
        left: left || claimed.len() == limit,
        claimed,
        next_retry_in,
    })
}

/// What is free now: open slots per pool, running task instances per run and per task.
#[derive(Debug, Default)]
pub(crate) struct Room {
    open: HashMap<String, i64>,
    per_run: HashMap<i64, i64>,
    per_task: HashMap<(String, String), i64>,
    /// Limits seen on candidates, so `starved` can name runs and tasks at theirs.
    run_caps: HashMap<i64, i64>,
    task_caps: HashMap<(String, String), i64>,
}

impl Room {
    pub(crate) fn new(pools: &[(String, i32)], running: &[RunningUse]) -> Self {
        let mut room = Room {
            open: pools
                .iter()
                .map(|(n, s)| (n.clone(), i64::from(*s)))
                .collect(),
            ..Room::default()
        };
        for r in running {
            *room.open.entry(r.pool.clone()).or_insert(0) -= r.slots;
            *room.per_run.entry(r.run_pk).or_insert(0) += r.count;
            *room
                .per_task
                .entry((r.dag_id.clone(), r.task_id.clone()))
                .or_insert(0) += r.count;
        }
        room
    }

    /// Pools without an open slot, runs and tasks at their limit.
    fn starved(&self) -> Exclude {
        let mut ex = Exclude {
            pools: self
                .open
                .iter()
                .filter(|(_, n)| **n <= 0)
                .map(|(p, _)| p.clone())
                .collect(),
            runs: self
                .run_caps
                .iter()
                .filter(|(r, cap)| self.per_run.get(r).copied().unwrap_or(0) >= **cap)
                .map(|(r, _)| *r)
                .collect(),
            ..Exclude::default()
        };
        for (key, cap) in &self.task_caps {
            if self.per_task.get(key).copied().unwrap_or(0) >= *cap {
                ex.task_dags.push(key.0.clone());
                ex.task_ids.push(key.1.clone());
            }
        }
        ex
    }

    /// Whether `c` fits now (and notes the limits it carries).
    fn fits(&mut self, c: &Candidate) -> bool {
        let task = (c.dag_id.clone(), c.task_id.clone());
        self.run_caps
            .insert(c.run_pk, i64::from(c.max_active_tasks));
        if let Some(cap) = c.max_active_tis_per_dag {
            self.task_caps.insert(task.clone(), i64::from(cap));
        }
        // A pool that is not in the table has no slots: its tasks wait (the DAG checks make
        // it an error before it gets here).
        let open = self.open.get(&c.pool).copied().unwrap_or(0);
        let run = self.per_run.get(&c.run_pk).copied().unwrap_or(0);
        let of_task = self.per_task.get(&task).copied().unwrap_or(0);
        i64::from(c.pool_slots) <= open
            && run < i64::from(c.max_active_tasks)
            && c.max_active_tis_per_dag
                .is_none_or(|cap| of_task < i64::from(cap))
    }

    /// Takes the room of `c` (which fits).
    fn take(&mut self, c: &Candidate) {
        *self.open.entry(c.pool.clone()).or_insert(0) -= i64::from(c.pool_slots);
        *self.per_run.entry(c.run_pk).or_insert(0) += 1;
        *self
            .per_task
            .entry((c.dag_id.clone(), c.task_id.clone()))
            .or_insert(0) += 1;
    }
}

/// What a walk over candidates took, and whether it stopped at one it may not take.
pub(crate) struct Walk {
    pub ids: Vec<i64>,
    pub stopped: bool,
}

/// Walks `candidates` (best first) and takes each that fits, up to `limit`; with `only`,
/// it stops at the first fitting candidate outside it.
pub(crate) fn choose(
    room: &mut Room,
    candidates: &[Candidate],
    limit: usize,
    only: Option<&HashSet<(i64, String)>>,
) -> Walk {
    let mut walk = Walk {
        ids: Vec::new(),
        stopped: false,
    };
    for c in candidates {
        if walk.ids.len() == limit {
            break;
        }
        if !room.fits(c) {
            continue;
        }
        if only.is_some_and(|o| !o.contains(&(c.run_pk, c.task_id.clone()))) {
            walk.stopped = true;
            break;
        }
        room.take(c);
        walk.ids.push(c.id);
    }
    walk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: i64, pool: &str, slots: i32, run: i64, task: &str) -> Candidate {
        Candidate {
            id,
            pool: pool.into(),
            pool_slots: slots,
            run_pk: run,
            dag_id: "d".into(),
            task_id: task.into(),
            max_active_tis_per_dag: None,
            max_active_tasks: 16,
        }
    }

    #[test]
    fn a_pool_is_never_oversubscribed_and_smaller_work_fills_what_is_left() {
        let mut room = Room::new(&[("p".into(), 3)], &[]);
        let cs = [
            cand(1, "p", 2, 1, "a"),
            cand(2, "p", 2, 1, "b"),
            cand(3, "p", 1, 1, "c"),
        ];
        assert_eq!(choose(&mut room, &cs, 10, None).ids, vec![1, 3]);
        assert_eq!(room.starved().pools, vec!["p".to_string()]);
    }

    #[test]
    fn running_tries_count_against_pools_runs_and_tasks() {
        let running = [RunningUse {
            pool: "p".into(),
            run_pk: 1,
            dag_id: "d".into(),
            task_id: "a".into(),
            slots: 1,
            count: 1,
        }];
        let mut room = Room::new(&[("p".into(), 5)], &running);
        let mut a2 = cand(2, "p", 1, 2, "a");
        a2.max_active_tis_per_dag = Some(1);
        let mut b = cand(3, "p", 1, 1, "b");
        b.max_active_tasks = 1;
        let c = cand(4, "p", 1, 2, "c");
        assert_eq!(choose(&mut room, &[a2, b, c], 10, None).ids, vec![4]);
        let ex = room.starved();
        assert_eq!(ex.runs, vec![1]);
        assert_eq!(ex.task_ids, vec!["a".to_string()]);
    }

    #[test]
    fn an_unknown_pool_has_no_slots() {
        let mut room = Room::new(&[("p".into(), 5)], &[]);
        assert!(
            choose(&mut room, &[cand(1, "nope", 1, 1, "a")], 10, None)
                .ids
                .is_empty()
        );
    }

    #[test]
    fn a_downstream_claim_takes_only_its_own_and_never_jumps_ahead_of_other_work() {
        let only: HashSet<(i64, String)> = [(1, "next".to_string())].into();
        // The downstream is the best candidate that fits: taken; the walk stops at the next.
        let mut room = Room::new(&[("p".into(), 5)], &[]);
        let cs = [cand(1, "p", 1, 1, "next"), cand(2, "p", 1, 2, "other")];
        let walk = choose(&mut room, &cs, 10, Some(&only));
        assert_eq!((walk.ids, walk.stopped), (vec![1], true));
        // Better work elsewhere fits: the downstream is left for the usual claim.
        let mut room = Room::new(&[("p".into(), 5)], &[]);
        let cs = [cand(2, "p", 1, 2, "other"), cand(1, "p", 1, 1, "next")];
        let walk = choose(&mut room, &cs, 10, Some(&only));
        assert_eq!((walk.ids, walk.stopped), (vec![], true));
        // Better work that does not fit (its pool is full) does not hold the downstream back.
        let mut room = Room::new(&[("p".into(), 5), ("full".into(), 0)], &[]);
        let cs = [cand(2, "full", 1, 2, "other"), cand(1, "p", 1, 1, "next")];
        let walk = choose(&mut room, &cs, 10, Some(&only));
        assert_eq!((walk.ids, walk.stopped), (vec![1], false));
    }
}
