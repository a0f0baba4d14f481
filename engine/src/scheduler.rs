//! The scheduler: keeps the database's view of the DAGs folder current (a new version per
//! changed file; an invalid file keeps its last good version and its errors are recorded),
//! creates the runs of due intervals, starts queued runs as DAGs get room, and closes
//! finished backfills. Any number of schedulers may run against one database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dag::{self, Dag, DagError};
use crate::error::Result;
use crate::kind::Registry;
use crate::lifecycle;
use crate::store::dags::VersionCache;
use crate::store::{self, dag_files, dags, runs, scheduling};
use crate::timetable;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub dags_folder: PathBuf,
    /// How often the DAGs folder is re-read.
    pub parse_interval: Duration,
    /// Longest wait between scheduling passes when nothing wakes the scheduler.
    pub poll: Duration,
}

impl SchedulerConfig {
    pub fn new(dags_folder: PathBuf) -> Self {
        Self {
            dags_folder,
            parse_interval: Duration::from_secs(2),
            poll: Duration::from_secs(1),
        }
    }
}

pub struct Scheduler {
    pool: PgPool,
    registry: Registry,
    cache: VersionCache,
    cfg: SchedulerConfig,
    /// What was last recorded of each DAG: [`fingerprint`] (its version and its file's text).
    synced: HashMap<String, String>,
    last_errors: Option<Vec<DagError>>,
    wake: Arc<Notify>,
}

/// What one scheduling pass did.
#[derive(Debug, Default, Clone)]
pub struct Pass {
    pub created: usize,
    pub missed: usize,
    pub started: usize,
    /// Runs found unfinished past their deadline (and notified).
    pub late: usize,
}

impl Scheduler {
    pub fn new(pool: PgPool, registry: Registry, cfg: SchedulerConfig) -> Self {
        Self {
            pool,
            registry,
            cache: VersionCache::new(),
            cfg,
            synced: HashMap::new(),
            last_errors: None,
            wake: Arc::new(Notify::new()),
        }
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(dags_folder = %self.cfg.dags_folder.display(), "scheduler started");
        // Tasks finishing anywhere may free a slot for a queued run: wake up for them.
        let listener = tokio::spawn(store::relay_wakeups(
            self.pool.clone(),
            self.wake.clone(),
            shutdown.clone(),
        ));
        // Every scheduler delivers notifications (rows are claimed with SKIP LOCKED).
        let delivery = tokio::spawn(crate::notify::deliver::run(
            self.pool.clone(),
            crate::notify::deliver::DeliveryConfig::from_env(),
            shutdown.clone(),
        ));
        let mut last_parse: Option<Instant> = None;
        // Names this scheduler in `scheduler_loops` (read by the web's /metrics).
        let loop_id = format!(
            "{}:{}:{}",
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        loop {
            let loop_start = Instant::now();
            if last_parse.is_none_or(|t| t.elapsed() >= self.cfg.parse_interval) {
                if let Err(error) = self.sync_files().await {
                    tracing::error!(error = %error, "could not record DAG files; trying again");
                }
                last_parse = Some(Instant::now());
            }
            if let Err(error) = self.schedule().await {
                tracing::error!(error = %error, "scheduling pass failed; trying again");
            }
            let took = loop_start.elapsed().as_secs_f64();
            if let Err(error) = scheduling::record_loop(&self.pool, &loop_id, took).await {
                tracing::debug!(%error, "could not record the scheduler loop time");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {
                    // Coalesce the burst of wake-ups a batch of finishing tasks sends.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
        }
        let _ = listener.await;
        let _ = delivery.await;
        tracing::info!("scheduler stopped");
        Ok(())
    }

    /// Reads the DAGs folder and records what changed: new versions, files that vanished,
    /// files that no longer parse (their DAG keeps its last good version).
    pub async fn sync_files(&mut self) -> Result<()> {
        let folder_path = self.cfg.dags_folder.clone();
        let registry = self.registry.clone();
        let mut folder =
            tokio::task::spawn_blocking(move || dag::load_folder(&folder_path, &registry))
                .await
                .expect("loading DAG files does not panic");
        // A task naming a pool that does not exist (or more slots than it has) makes its file
        // invalid, named at the line of its `pool` key, as a parse error would.
        let pools = crate::transient::retry("read pools", || async {
            let mut conn = self.pool.acquire().await?;
            store::pools::sizes(&mut conn).await
        })
        .await?;
        folder.check_pools(&pools);
        // A DAG deleted through the API (`DELETE /api/v2/dags/{dag_id}`) while its file is
        // still here is recorded again, as Airflow's next parse brings it back.
        let known = crate::transient::retry("read DAG ids", || async {
            let mut conn = self.pool.acquire().await?;
            dags::known_ids(&mut conn).await
        })
        .await?;
        // A file whose text changed but not its definition (a comment, say) keeps its
        // version and updates the version's stored text.
        let changed: Vec<(&Dag, String)> = folder
            .dags
            .iter()
            .map(|d| (d, d.version_hash()))
            .filter(|(d, hash)| {
                self.synced.get(&d.dag_id) != Some(&fingerprint(d, hash))
                    || !known.contains(&d.dag_id)
            })
            .collect();
        let errors_changed = self.last_errors.as_ref() != Some(&folder.errors);
        crate::transient::retry("record DAG files", || {
            record_files(&self.pool, &folder, &changed, errors_changed)
        })
        .await?;
        // Only what is committed counts as recorded.
        for (d, hash) in changed {
            tracing::info!(dag_id = %d.dag_id, version = %hash, "DAG version recorded");
            self.synced.insert(d.dag_id.clone(), fingerprint(d, &hash));
        }
        if errors_changed {
            for e in &folder.errors {
                tracing::error!(error = %e, "invalid DAG file; its DAG keeps its last good version");
            }
            self.last_errors = Some(folder.errors.clone());
        }
        Ok(())
    }

    /// Creates due runs of every active, unpaused, scheduled DAG and starts queued runs.
    pub async fn schedule(&self) -> Result<Pass> {
        self.schedule_at(Utc::now()).await
    }

    /// A scheduling pass as if the time were `now` (tests drive time through this).
    pub async fn schedule_at(&self, now: chrono::DateTime<Utc>) -> Result<Pass> {
        let mut pass = Pass::default();
        let due = scheduling::scheduled_dags(&self.pool).await?;
        for (dag_id, hash) in due {
            let created = crate::transient::retry("create scheduled runs", || async {
                let mut tx = self.pool.begin().await?;
                if !timetable::try_lock_dag(&mut tx, &dag_id).await? {
                    return Ok(timetable::Created::default());
                }
                let dag = self.cache.get(&mut tx, &dag_id, &hash).await?;
                let created = timetable::create_due_runs(&mut tx, &dag, &hash, now).await?;
                tx.commit().await?;
                Ok(created)
            })
            .await?;
            if created.runs > 0 {
                tracing::debug!(%dag_id, runs = created.runs, "created scheduled runs");
            }
            if created.missed > 0 {
                tracing::info!(%dag_id, intervals = created.missed, "catch-up is off: skipped intervals recorded in the missed-interval ledger");
            }
            pass.created += created.runs;
            pass.missed += created.missed;
        }
        let queued = runs::dags_with_queued_runs(&self.pool).await?;
        for dag_id in queued {
            pass.started += crate::transient::retry("start queued runs", || async {
                let mut tx = self.pool.begin().await?;
                let started = lifecycle::run::start_queued(&mut tx, &self.cache, &dag_id).await?;
                if started > 0 {
                    store::notify_wake(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(started)
            })
            .await?;
        }
        pass.late = lifecycle::deadline::fire_missed(&self.pool, &self.cache, now).await?;
        crate::transient::retry("close finished backfills", || {
            crate::backfill::close_finished(&self.pool)
        })
        .await?;
        Ok(pass)
    }
}

/// A DAG's version hash and a digest of its file's text: what the sync compares to decide
/// whether there is something new to record.
fn fingerprint(d: &Dag, hash: &str) -> String {
    use sha2::Digest;
    match &d.source {
        Some(text) => format!(
            "{hash}:{}",
            hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
        ),
        None => hash.to_string(),
    }
}

/// One transaction recording new DAG versions, the import errors (when they changed) and
/// which DAGs are active.
async fn record_files(
    pool: &PgPool,
    folder: &dag::Folder,
    changed: &[(&Dag, String)],
    errors_changed: bool,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    for (d, _) in changed {
        dags::sync(&mut tx, d).await?;
    }
    if errors_changed {
        let files: Vec<String> = folder
            .errors
            .iter()
            .map(|e| e.file.display().to_string())
            .collect();
        let lines: Vec<i32> = folder.errors.iter().map(|e| e.line as i32).collect();
        let messages: Vec<&str> = folder.errors.iter().map(|e| e.message.as_str()).collect();
        dag_files::replace_import_errors(&mut tx, &files, &lines, &messages).await?;
    }
    let valid: Vec<&str> = folder.dags.iter().map(|d| d.dag_id.as_str()).collect();
    let broken: Vec<String> = folder
        .errors
        .iter()
        .map(|e| e.file.display().to_string())
        .collect();
    dag_files::set_active(&mut tx, &valid, &broken).await?;
    tx.commit().await?;
    Ok(())
}
