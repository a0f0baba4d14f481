//! The scheduler loop: keeps the database's view of the DAGs folder current (a new version
//! per changed file, errors of invalid files reported), and starts queued runs as DAGs get
//! room for them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::dag::{self, DagError};
use crate::error::Result;
use crate::kind::Registry;
use crate::store::dags::VersionCache;
use crate::store::{self, dags, runs};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub dags_folder: PathBuf,
    /// How often the folder is re-read and queued runs are looked at.
    pub interval: Duration,
}

pub struct Scheduler {
    pool: PgPool,
    registry: Registry,
    cache: VersionCache,
    cfg: SchedulerConfig,
    synced: HashMap<String, String>,
    last_errors: Vec<DagError>,
}

impl Scheduler {
    pub fn new(pool: PgPool, registry: Registry, cfg: SchedulerConfig) -> Self {
        Self {
            pool,
            registry,
            cache: VersionCache::new(),
            cfg,
            synced: HashMap::new(),
            last_errors: Vec::new(),
        }
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(dags_folder = %self.cfg.dags_folder.display(), "scheduler started");
        loop {
            if let Err(error) = self.tick().await {
                tracing::error!(error = %error, "scheduler pass failed; trying again");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.interval) => {}
            }
        }
        tracing::info!("scheduler stopped");
        Ok(())
    }

    /// One pass: sync changed DAG files, then start whatever queued runs may start.
    pub async fn tick(&mut self) -> Result<()> {
        let folder_path = self.cfg.dags_folder.clone();
        let registry = self.registry.clone();
        let folder = tokio::task::spawn_blocking(move || dag::load_folder(&folder_path, &registry))
            .await
            .expect("loading DAG files does not panic");
        if folder.errors != self.last_errors {
            for e in &folder.errors {
                tracing::error!(error = %e, "invalid DAG file; its last good version keeps running");
            }
            self.last_errors = folder.errors.clone();
        }
        let mut conn = self.pool.acquire().await?;
        for d in &folder.dags {
            let hash = d.version_hash();
            if self.synced.get(&d.dag_id) != Some(&hash) {
                dags::sync(&mut conn, d).await?;
                tracing::info!(dag_id = %d.dag_id, version = %hash, "DAG version recorded");
                self.synced.insert(d.dag_id.clone(), hash);
            }
        }
        drop(conn);
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT dag_id FROM dag_runs WHERE state = 'queued'")
                .fetch_all(&self.pool)
                .await?;
        for dag_id in ids {
            let mut tx = self.pool.begin().await?;
            if runs::start_queued(&mut tx, &self.cache, &dag_id).await? > 0 {
                store::notify_wake(&mut tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}
