//! Lost tries: a dead worker's running tries, and a live worker's claims whose answer never
//! reached it, are failed as zombies (so they retry as any failed try does).

use std::time::Duration;

use sqlx::PgPool;

use crate::error::Result;
use crate::lifecycle::finish::{Finished, TryEnd, finish_batch};
use crate::store::dags::VersionCache;
use crate::store::tis::{self, LostTry};

/// Fails (and so retries) the running tries of workers whose heartbeat is older than
/// `threshold`, or that said they stopped. Safe to call from many processes at once.
pub async fn reap_zombies(
    pool: &PgPool,
    cache: &VersionCache,
    threshold: Duration,
) -> Result<usize> {
    let candidates = tis::tries_of_dead_workers(pool, threshold).await?;
    let n = fail_lost(pool, cache, candidates, |w| {
        format!("worker {w} stopped heart-beating while running this try")
    })
    .await?;
    if n > 0 {
        tracing::warn!(
            tries = n,
            "failed the tries of workers that stopped heart-beating"
        );
    }
    Ok(n)
}

/// Fails (and so retries) the tries that the database says `worker` runs, started more than
/// `threshold` ago, which the worker itself does not run (not in `local`): their claim
/// committed but its answer never reached the worker.
pub async fn reap_orphans(
    pool: &PgPool,
    cache: &VersionCache,
    worker: &str,
    local: &[i64],
    threshold: Duration,
) -> Result<usize> {
    let candidates = tis::orphaned_tries(pool, worker, local, threshold).await?;
    fail_lost(pool, cache, candidates, |w| {
        format!("worker {w} lost this try (its claim was recorded but never reached it)")
    })
    .await
}

async fn fail_lost(
    pool: &PgPool,
    cache: &VersionCache,
    candidates: Vec<LostTry>,
    why: impl Fn(&str) -> String,
) -> Result<usize> {
    if candidates.is_empty() {
        return Ok(0);
    }
    let batch: Vec<Finished> = candidates
        .into_iter()
        .map(|z| Finished {
            end: TryEnd::Lost(why(&z.worker)),
            ti_id: z.ti_id,
            run_pk: z.run_pk,
            dag_id: z.dag_id,
            dag_hash: z.dag_hash,
            task_id: z.task_id,
            try_id: z.try_id,
            try_number: z.try_number,
            max_tries: z.max_tries,
            worker: z.worker,
        })
        .collect();
    let res =
        crate::transient::retry("fail lost tries", || finish_batch(pool, cache, &batch)).await?;
    Ok(res.recorded)
}
