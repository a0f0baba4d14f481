//! Catch-up benchmark (issue #3): 2,000 hourly intervals of a 5-task noop DAG, created and run
//! by 2 schedulers and 2 workers (in this process, each with its own connection pool) against
//! one database: time from start to all-success, and task instances per second.
//! Needs DATABASE_URL (a superuser); `scripts/bench.sh` provides one.

#[path = "support/bench_db.rs"]
mod bench_db;

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use tokio_util::sync::CancellationToken;
use upiflow_engine::executor::{Worker, WorkerConfig};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_engine::store;

const INTERVALS: i32 = 2_000;
const TASKS: i64 = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = bench_db::BenchDb::create(2).await?;
    let url = db.url.clone();

    let hour = chrono::Duration::hours(1);
    let start = Utc::now().duration_trunc(hour)? - hour * INTERVALS;
    let dir = std::env::temp_dir().join(format!("upiflow-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("catchup.toml"),
        format!(
            "dag_id = \"catchup\"\nschedule = \"@hourly\"\nstart_date = \"{}\"\ncatchup = true\nmax_active_runs = 64\n\
             [[tasks]]\nid = \"extract\"\nkind = \"noop\"\n\
             [[tasks]]\nid = \"a\"\nkind = \"noop\"\nupstream = [\"extract\"]\n\
             [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"extract\"]\n\
             [[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"extract\"]\n\
             [[tasks]]\nid = \"load\"\nkind = \"noop\"\nupstream = [\"a\", \"b\", \"c\"]\n",
            start.to_rfc3339()
        ),
    )?;

    let registry = upiflow_tasks::registry();
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let pool = store::connect(&url, 8).await?;
        let s = Scheduler::new(pool, registry.clone(), SchedulerConfig::new(dir.clone()));
        handles.push(tokio::spawn(s.run(stop.clone())));
    }
    for _ in 0..2 {
        let pool = store::connect(&url, 8).await?;
        let w = Worker::new(
            pool,
            registry.clone(),
            WorkerConfig {
                concurrency: 32,
                ..WorkerConfig::default()
            },
        );
        handles.push(tokio::spawn(w.run(stop.clone())));
    }
    let watch = store::connect(&url, 1).await?;
    let expected = INTERVALS as i64;
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE state = 'success'")
            .fetch_one(&watch)
            .await?;
        if done >= expected {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("catch-up did not finish in 10 minutes ({done}/{expected})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let (tis, tries): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM task_instances WHERE state = 'success'), (SELECT count(*) FROM task_tries)",
    )
    .fetch_one(&watch)
    .await?;
    stop.cancel();
    for h in handles {
        h.await??;
    }
    println!(
        "catch-up of {INTERVALS} hourly intervals x {TASKS} noop tasks, 2 schedulers + 2 workers: \
         {secs:.2} s to all-success, {:.0} task instances/s ({tis} task instances, {tries} tries); target 1,000/s",
        tis as f64 / secs
    );
    watch.close().await;
    db.drop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
