//! Claiming: a worker takes runnable task instances and loads the DAG version each needs.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::dag::Dag;
use crate::error::Result;
use crate::store::dags::VersionCache;
use crate::store::tis::{self, Claimed};

/// Claims up to `limit` runnable task instances for `worker`, each with its DAG version, or
/// `None` where the version cannot be loaded (the try is then failed and recorded, never the
/// worker).
pub async fn claim(
    pool: &PgPool,
    cache: &VersionCache,
    worker: &str,
    limit: usize,
) -> Result<Vec<(Claimed, Option<Arc<Dag>>)>> {
    let mut conn = pool.acquire().await?;
    let claimed = tis::claim(&mut conn, worker, limit as i64).await?;
    let mut out = Vec::with_capacity(claimed.len());
    for c in claimed {
        let dag = match cache.get(&mut conn, &c.dag_id, &c.dag_hash).await {
            Ok(d) => Some(d),
            Err(error) => {
                tracing::error!(%error, dag_id = %c.dag_id, "cannot load DAG version");
                None
            }
        };
        out.push((c, dag));
    }
    Ok(out)
}

/// Time until the earliest due retry, if one is pending (a little after it, so the retry is
/// due when the worker looks).
pub async fn next_retry_in(pool: &PgPool) -> Option<Duration> {
    let secs = tis::next_retry_in(pool).await.ok().flatten();
    secs.map(|s| Duration::from_secs_f64(s) + Duration::from_millis(5))
}
