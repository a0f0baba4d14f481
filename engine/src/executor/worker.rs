//! A worker: a claim loop with bounded concurrency, woken by its own completions, by
//! `LISTEN upiflow_wake` from other processes, by the next due retry, or by a slow poll.
//! `LISTEN upiflow_stop` stops local tries whose task instances were marked at once; the
//! heartbeat's check of its tries is the fallback.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::kind::{Registry, TaskContext, TaskError};
use crate::lifecycle::{self, Finished, TryEnd};
use crate::logs::LogWriter;
use crate::secrets::Secrets;
use crate::store::dags::VersionCache;
use crate::store::tis::Claimed;
use crate::store::{self, workers};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique name of this worker (host:pid:random by default).
    pub worker_id: String,
    /// Task instances run at once.
    pub concurrency: usize,
    /// How often the worker proves it is alive.
    pub heartbeat: Duration,
    /// After this long without a heartbeat, a worker's running tries are failed and retried.
    pub zombie_threshold: Duration,
    /// Fallback poll when no wake-up arrives.
    pub poll: Duration,
    /// On shutdown, how long running tries may take to finish before they are stopped.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let host = hostname();
        Self {
            worker_id: format!(
                "{host}:{}:{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            concurrency: 32,
            heartbeat: Duration::from_secs(2),
            zombie_threshold: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The tries this worker runs: by task instance id, the try number and what stops it.
type Cancels = std::sync::Mutex<HashMap<i64, (i32, CancellationToken)>>;

/// A worker process (or one of several in a process).
pub struct Worker {
    /// The worker's own bookkeeping: claiming, finishing, heartbeats, logs.
    pool: PgPool,
    /// What task bodies get (`TaskContext::pool`), so slow task SQL never makes the
    /// bookkeeping wait for a connection: one per slot, opened on demand.
    task_pool: PgPool,
    registry: Registry,
    cache: VersionCache,
    logs: LogWriter,
    /// Handed to every try; built from the environment (`UPIFLOW_FERNET_KEY`) unless given.
    /// An error (a bad key) makes `run` fail at once.
    secrets: Result<Secrets>,
    cfg: WorkerConfig,
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(pool: PgPool, registry: Registry, cfg: WorkerConfig) -> Self {
        let task_pool = PgPoolOptions::new()
            .max_connections(cfg.concurrency.max(1) as u32)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(60))
            // A task's SQL taking long is its nature, not news: no slow-statement warnings.
            .connect_lazy_with(
                (*pool.connect_options())
                    .clone()
                    .disable_statement_logging(),
            );
        Self {
            logs: LogWriter::start(pool.clone()),
            secrets: Secrets::from_env(pool.clone()),
            task_pool,
            pool,
            registry,
            cache: VersionCache::new(),
            cfg,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Uses `secrets` for connections and variables instead of the ones built from the
    /// environment.
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Ok(secrets);
        self
    }

    /// A handle that wakes this worker (for schedulers in the same process).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn id(&self) -> &str {
        &self.cfg.worker_id
    }

    /// Runs until `shutdown` is cancelled, then lets running tries finish (within the grace
    /// period) and records them.
    #[tracing::instrument(skip_all, fields(worker = %self.cfg.worker_id), err)]
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        // A worker that cannot read connections and variables (a bad UPIFLOW_FERNET_KEY)
        // refuses to start rather than failing every try.
        let secrets = match &self.secrets {
            Ok(s) => s.clone(),
            Err(_) => return self.secrets.map(|_| ()),
        };
        let host = hostname();
        crate::transient::retry("register worker", || {
            workers::register(
                &self.pool,
                &self.cfg.worker_id,
                &host,
                std::process::id() as i32,
            )
        })
        .await?;
        tracing::info!(concurrency = self.cfg.concurrency, "worker started");

        let background = CancellationToken::new();
        let listener = tokio::spawn(store::relay_wakeups(
            self.pool.clone(),
            self.wake.clone(),
            background.clone(),
        ));
        let cancels: Arc<Cancels> = Default::default();
        let stops = {
            let cancels = cancels.clone();
            tokio::spawn(store::mark::relay_stops(
                self.pool.clone(),
                Arc::new(move |tries: Vec<(i64, i32)>| stop_local(&cancels, &tries)),
                background.clone(),
            ))
        };
        let heart = tokio::spawn(heartbeat(
            self.pool.clone(),
            self.cfg.clone(),
            cancels.clone(),
            background.clone(),
        ));
        let reaper = tokio::spawn(reap(
            self.pool.clone(),
            self.cache.clone(),
            self.cfg.clone(),
            cancels.clone(),
            background.clone(),
        ));

        let result = self.claim_loop(&shutdown, &cancels, &secrets).await;

        background.cancel();
        let _ = listener.await;
        let _ = stops.await;
        let _ = heart.await;
        let _ = reaper.await;
        // Saying so lets others retry what this worker leaves at once; if it cannot be said,
        // its heartbeat goes stale and they do so after the zombie threshold.
        let said =
            crate::transient::retry_for("unregister worker", Duration::from_secs(10), || {
                workers::stopped(&self.pool, &self.cfg.worker_id)
            })
            .await;
        if let Err(error) = said {
            tracing::warn!(%error, "could not record that this worker stopped");
        }
        tracing::info!("worker stopped");
        result
    }

    async fn claim_loop(
        &self,
        shutdown: &CancellationToken,
        cancels: &Cancels,
        secrets: &Secrets,
    ) -> Result<()> {
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut done: Vec<Finished> = Vec::new();
        let mut stopping = false;
        let mut grace_deadline = None;
        let mut db_backoff = backoff::ExponentialBackoff {
            max_elapsed_time: None,
            ..Default::default()
        };
        loop {
            while let Some(res) = running.try_join_next() {
                done.push(res.expect("try futures catch their own panics"));
            }
            let free = if stopping {
                0
            } else {
                self.cfg.concurrency.saturating_sub(running.len())
            };
            // Outcomes are recorded with a claim of the downstream they made runnable, in one
            // transaction; other runnable work is claimed on its own.
            let mut claims = Vec::new();
            let mut taken = 0;
            let mut more = true;
            if !done.is_empty() {
                self.logs.flush().await;
                match lifecycle::finish_and_claim(
                    &self.pool,
                    &self.cache,
                    &done,
                    &self.cfg.worker_id,
                    free,
                )
                .await
                {
                    Ok((res, claim)) => {
                        if res.stale > 0 {
                            tracing::warn!(
                                stale = res.stale,
                                "outcomes dropped: those tries were failed by another process meanwhile"
                            );
                        }
                        let mut c = cancels.lock().expect("cancel map poisoned");
                        for f in &done {
                            c.remove(&f.ti_id);
                        }
                        done.clear();
                        backoff::backoff::Backoff::reset(&mut db_backoff);
                        more = claim.left;
                        taken += claim.tries.len();
                        claims.push(claim);
                    }
                    Err(error) => {
                        // Keep the outcomes and try again: the tries stay `running` in the
                        // database until recorded, and nothing is lost while we wait.
                        let wait = backoff::backoff::Backoff::next_backoff(&mut db_backoff)
                            .unwrap_or(Duration::from_secs(5));
                        tracing::error!(error = %error, ?wait, "could not record outcomes; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            let room = free - taken;
            if more && room > 0 {
                match lifecycle::claim::claim(&self.pool, &self.cache, &self.cfg.worker_id, room)
                    .await
                {
                    Ok(claim) => {
                        taken += claim.tries.len();
                        claims.push(claim);
                    }
                    Err(error) => {
                        let wait = backoff::backoff::Backoff::next_backoff(&mut db_backoff)
                            .unwrap_or(Duration::from_secs(5));
                        tracing::error!(error = %error, ?wait, "could not claim task instances; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            if stopping && running.is_empty() {
                return Ok(());
            }
            let mut next_retry = None;
            let claimed_all = free > 0 && taken == free;
            for claim in claims {
                next_retry = next_retry.or(claim.next_retry_in);
                for (c, dag) in claim.tries {
                    let token = CancellationToken::new();
                    cancels
                        .lock()
                        .expect("cancel map poisoned")
                        .insert(c.id, (c.try_number, token.clone()));
                    running.spawn(execute(
                        c,
                        dag,
                        self.registry.clone(),
                        Given {
                            pool: self.task_pool.clone(),
                            secrets: secrets.clone(),
                        },
                        self.logs.clone(),
                        self.cfg.worker_id.clone(),
                        token,
                    ));
                }
            }
            if claimed_all && running.len() < self.cfg.concurrency {
                continue;
            }
            let idle = next_retry.unwrap_or(self.cfg.poll).min(self.cfg.poll);
            tokio::select! {
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    grace_deadline = Some(tokio::time::Instant::now() + self.cfg.shutdown_grace);
                    tracing::info!(running = running.len(), "worker stopping; letting running tries finish");
                }
                _ = async { tokio::time::sleep_until(grace_deadline.expect("set")).await }, if grace_deadline.is_some() => {
                    tracing::warn!(running = running.len(), "grace period over; stopping running tries");
                    for (_, token) in cancels.lock().expect("cancel map poisoned").values() {
                        token.cancel();
                    }
                    grace_deadline = None;
                }
                Some(res) = running.join_next(), if !running.is_empty() => {
                    done.push(res.expect("try futures catch their own panics"));
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }
}

/// What a worker hands each try's body.
struct Given {
    /// `TaskContext::pool`.
    pool: PgPool,
    secrets: Secrets,
}

/// Runs one try and says how it ended; never panics.
async fn execute(
    c: Claimed,
    dag: Option<Arc<crate::dag::Dag>>,
    registry: Registry,
    given: Given,
    logs: LogWriter,
    worker: String,
    cancel: CancellationToken,
) -> Finished {
    let Given { pool, secrets } = given;
    let log = logs.for_try(c.try_id);
    // The Fernet keys never show in a try's log, whatever the body does.
    for key in secrets.keys().map(|k| k.raw()).unwrap_or_default() {
        log.hide(key);
    }
    let finished = |end| Finished {
        ti_id: c.id,
        run_pk: c.run_pk,
        dag_id: c.dag_id.clone(),
        dag_hash: c.dag_hash.clone(),
        task_id: c.task_id.clone(),
        try_id: c.try_id,
        try_number: c.try_number,
        max_tries: c.max_tries,
        worker: worker.clone(),
        end,
    };
    let Some(dag) = dag else {
        return finished(TryEnd::Failed {
            error: "the DAG version of this run cannot be loaded".into(),
            retryable: true,
        });
    };
    let Some(task) = dag.task(&c.task_id) else {
        return finished(TryEnd::Failed {
            error: format!("task `{}` is not in this DAG version", c.task_id),
            retryable: false,
        });
    };
    let Some(kind) = registry.get(&task.kind) else {
        return finished(TryEnd::Failed {
            error: format!("this worker has no task kind `{}`", task.kind),
            retryable: true,
        });
    };
    let mut params = dag.params.clone();
    if let serde_json::Value::Object(conf) = &c.conf {
        params.extend(conf.clone());
    }
    let ctx = TaskContext {
        dag_id: c.dag_id.clone(),
        run_id: c.run_id.clone(),
        task_id: c.task_id.clone(),
        try_number: c.try_number,
        max_tries: c.max_tries,
        logical_date: c.logical_date,
        data_interval_start: c.data_interval_start,
        data_interval_end: c.data_interval_end,
        ds: c.logical_date.with_timezone(&dag.tz()).date_naive(),
        allowed_lateness: dag.allowed_lateness.unwrap_or_default(),
        params,
        pool,
        secrets,
        log: log.clone(),
    };
    log.info(format!(
        "try {} of {} of {}.{} ({}) on worker {worker}",
        c.try_number, c.max_tries, c.dag_id, c.task_id, c.run_id
    ))
    .await;
    let started = std::time::Instant::now();
    let body = AssertUnwindSafe(kind.run(&ctx, &task.config)).catch_unwind();
    let timeout = task.timeout.unwrap_or(Duration::MAX);
    // Dropping the body stops it: kinds kill their processes and roll back on drop.
    let end = tokio::select! {
        r = tokio::time::timeout(timeout, body) => match r {
            Ok(Ok(Ok(()))) => TryEnd::Succeeded,
            Ok(Ok(Err(TaskError::Retryable(error)))) => TryEnd::Failed { error, retryable: true },
            Ok(Ok(Err(TaskError::Fatal(error)))) => TryEnd::Failed { error, retryable: false },
            Ok(Err(panic)) => TryEnd::Panicked(panic_message(&panic)),
            Err(_) => TryEnd::TimedOut(timeout),
        },
        _ = cancel.cancelled() => TryEnd::Stopped,
    };
    // The error is stored beside the log: the same secrets are masked in it.
    let end = match end {
        TryEnd::Failed { error, retryable } => TryEnd::Failed {
            error: log.mask(error),
            retryable,
        },
        TryEnd::Panicked(message) => TryEnd::Panicked(log.mask(message)),
        end => end,
    };
    let elapsed = started.elapsed();
    match end.error() {
        None => log.info(format!("succeeded in {elapsed:.2?}")).await,
        Some(e) => {
            log.info(format!("{} after {elapsed:.2?}: {e}", end.outcome()))
                .await
        }
    }
    finished(end)
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Proves this worker alive, and stops local tries that another process already failed (so
/// no task instance runs twice at once). It does nothing else, so nothing slow (reaping,
/// task SQL) can delay a beat: it has the bookkeeping pool, which task bodies never use.
async fn heartbeat(
    pool: PgPool,
    cfg: WorkerConfig,
    cancels: Arc<Cancels>,
    stop: CancellationToken,
) {
    let mut tick = Ticker::new(cfg.heartbeat);
    while tick.next(&stop).await {
        if let Err(error) = workers::beat(&pool, &cfg.worker_id).await {
            tracing::warn!(%error, "heartbeat failed");
            continue;
        }
        let local = local_tries(&cancels);
        if local.is_empty() {
            continue;
        }
        if let Ok(mine) = store::tis::still_running_on(&pool, &local, &cfg.worker_id).await {
            let map = cancels.lock().expect("cancel map poisoned");
            for id in local.iter().filter(|id| !mine.contains(id)) {
                if let Some((_, token)) = map.get(id) {
                    tracing::warn!(ti = id, "this try was failed elsewhere; stopping it");
                    token.cancel();
                }
            }
        }
    }
}

/// Stops these local tries, `(task instance id, try number)` (they were marked elsewhere);
/// a later try of the same task instance is left alone.
fn stop_local(cancels: &Cancels, tries: &[(i64, i32)]) {
    let map = cancels.lock().expect("cancel map poisoned");
    for (id, try_number) in tries {
        if let Some((n, token)) = map.get(id)
            && n == try_number
        {
            tracing::info!(
                ti = id,
                try_number,
                "this task instance was marked; stopping its try"
            );
            token.cancel();
        }
    }
}

fn local_tries(cancels: &Cancels) -> Vec<i64> {
    cancels
        .lock()
        .expect("cancel map poisoned")
        .keys()
        .copied()
        .collect()
}

/// Fails the tries of dead workers, and this worker's own orphans: task instances the
/// database says this worker runs but it does not (a claim whose answer was lost with its
/// connection, say). Both then retry as zombies do.
async fn reap(
    pool: PgPool,
    cache: VersionCache,
    cfg: WorkerConfig,
    cancels: Arc<Cancels>,
    stop: CancellationToken,
) {
    let mut tick = Ticker::new(cfg.heartbeat);
    while tick.next(&stop).await {
        if let Err(error) = lifecycle::reap::reap_zombies(&pool, &cache, cfg.zombie_threshold).await
        {
            tracing::warn!(%error, "zombie check failed");
        }
        // Claims younger than the threshold may be on their way into the local map.
        let local = local_tries(&cancels);
        match lifecycle::reap::reap_orphans(
            &pool,
            &cache,
            &cfg.worker_id,
            &local,
            cfg.zombie_threshold,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                tries = n,
                "failed tries this worker was recorded as running but was not"
            ),
            Err(error) => tracing::warn!(%error, "orphan check failed"),
        }
    }
}

/// A steady period that skips missed ticks instead of bunching them up, until `stop`.
struct Ticker(tokio::time::Interval);

impl Ticker {
    fn new(period: Duration) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(tick)
    }

    /// Waits for the next tick; `false` once `stop` is cancelled.
    async fn next(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! { _ = stop.cancelled() => false, _ = self.0.tick() => true }
    }
}
