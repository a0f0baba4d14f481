//! Transform benchmark: the shipped `daily_upi_aggregation` DAG's SQL models over 10,000,000
//! clean UPI events spread over 30 Kolkata days (about 333,000 a day), run by the real engine
//! with an in-process worker:
//!   (b) a 30-day backfill of the DAG from empty model tables, request to all-success;
//!       target under 30 s;
//!   (a) one day's run (staging -> fact -> daily -> merchant, and dim_merchants beside them)
//!       with the other 29 days already staged, request to success; target under 2 s;
//! and, as a baseline measured here too, the seed's approach: recomputing the whole daily
//! summary from every clean row with one GROUP BY, which every daily run of the seed paid.
//!
//! Needs DATABASE_URL (a superuser: it creates and drops its own database);
//! `scripts/bench.sh` starts a Postgres with default durability settings and runs this.
//! BENCH_TXN_IDS=ordered numbers txn ids in time order instead of making them random.

#[path = "support/bench_db.rs"]
mod bench_db;
#[path = "support/clean_events.rs"]
mod clean_events;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use upiflow_engine::Dag;
use upiflow_engine::backfill::{self, Request};
use upiflow_engine::executor::{Worker, WorkerConfig};
use upiflow_engine::store::dags::VersionCache;

const EVENTS: i64 = 10_000_000;
const DAYS: i64 = 30;
const FIRST_DAY: &str = "2024-01-01";
const LAST_DAY: &str = "2024-01-30";
/// Days measured one by one in (a), each with the other 29 days already staged.
const SINGLE_DAYS: [&str; 3] = ["2024-01-28", "2024-01-29", "2024-01-30"];
/// A day re-run while still staged.
const RERUN_DAY: &str = "2024-01-15";
const TARGET_DAY_S: f64 = 2.0;
const TARGET_BACKFILL_S: f64 = 30.0;

/// The seed's daily job: every day, the whole summary again from every clean row (grouped
/// by the Kolkata day here, so its numbers can be checked against the models').
const NAIVE: &str = "
INSERT INTO daily_upi_summary (date, total_txns, success_txns, failed_txns, pending_txns, total_amount)
SELECT (event_time AT TIME ZONE 'Asia/Kolkata')::date,
       count(*),
       count(*) FILTER (WHERE status = 'SUCCESS'),
       count(*) FILTER (WHERE status = 'FAILED'),
       count(*) FILTER (WHERE status = 'PENDING'),
       sum(amount)
FROM clean_upi_transactions
GROUP BY 1
ON CONFLICT (date) DO UPDATE
SET total_txns = EXCLUDED.total_txns, success_txns = EXCLUDED.success_txns,
    failed_txns = EXCLUDED.failed_txns, pending_txns = EXCLUDED.pending_txns,
    total_amount = EXCLUDED.total_amount, updated_at = now()";

/// The shipped DAG file, reduced to its `sql` tasks (the transforms); tasks of other kinds
/// (the ingest supervisor needs Kafka) are not what this measures.
fn shipped_transforms() -> anyhow::Result<Dag> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dags/daily_upi_aggregation.toml");
    let mut dag = upiflow_engine::dag::load_dag_file(&path, &upiflow_tasks::registry())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    dag.tasks.retain(|t| t.kind == "sql");
    let kept: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
    for task in &mut dag.tasks {
        task.upstream.retain(|u| kept.contains(u));
    }
    Dag::from_json(dag.to_json()).map_err(anyhow::Error::msg)
}

/// Loads the events with the table's indexes dropped and rebuilt afterwards from their own
/// definitions (a bulk load's usual shape: one sort per index instead of 10M random
/// insertions), then VACUUM ANALYZE, as autovacuum would have done to day-old data.
async fn generate(pool: &PgPool, start: DateTime<Utc>, random_ids: bool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let t0 = Instant::now();
    let loaded = clean_events::load(&mut conn, EVENTS, DAYS, start, random_ids).await?;
    let (inserted, indexed) = (loaded.insert_s, loaded.index_s);

    let t2 = Instant::now();
    sqlx::query("VACUUM ANALYZE clean_upi_transactions")
        .execute(&mut *conn)
        .await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    let vacuumed = t2.elapsed().as_secs_f64();
    println!(
        "generated {EVENTS} clean events over {DAYS} days in {:.1} s: INSERT ... SELECT generate_series {inserted:.1} s, \
         {} indexes {indexed:.1} s, VACUUM ANALYZE {vacuumed:.1} s",
        t0.elapsed().as_secs_f64(),
        loaded.indexes
    );
    Ok(())
}

/// Per task: the mean and total duration of the tries that started since `since` (of the
/// runs of `days`, or of all runs), in the order the tasks first started.
async fn task_times(
    pool: &PgPool,
    since: DateTime<Utc>,
    days: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> anyhow::Result<String> {
    let (from, to) = days.unzip();
    let times: Vec<(String, f64, f64)> = sqlx::query_as(
        "SELECT ti.task_id,
                avg(EXTRACT(EPOCH FROM tt.ended_at - tt.started_at))::float8 * 1000,
                sum(EXTRACT(EPOCH FROM tt.ended_at - tt.started_at))::float8
         FROM task_tries tt
         JOIN task_instances ti ON ti.id = tt.ti_id
         JOIN dag_runs r ON r.id = ti.run_pk
         WHERE tt.started_at >= $1
           AND ($2::timestamptz IS NULL OR r.logical_date BETWEEN $2 AND $3)
         GROUP BY ti.task_id ORDER BY min(tt.started_at)",
    )
    .bind(since)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(times
        .iter()
        .map(|(task, mean, total)| match days {
            Some((a, b)) if a == b => format!("{task} {mean:.0} ms"),
            _ => format!("{task} {mean:.0} ms (total {total:.1} s)"),
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// Backfills `from..=to` (re-running finished days with `reset`) and returns the time from
/// the request until every run succeeded.
async fn backfill_days(
    pool: &PgPool,
    cache: &VersionCache,
    dag: &Dag,
    from: &str,
    to: &str,
    reset: bool,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let b = backfill::start(
        pool,
        cache,
        dag,
        &Request {
            from: day_start(dag, from)?,
            to: day_start(dag, to)?,
            rerun_failed: false,
            reset,
            created_by: "bench".into(),
            max_active_runs: None,
            yield_to_scheduled: true,
        },
    )
    .await?;
    loop {
        let p = backfill::progress(pool, &b).await?;
        anyhow::ensure!(p.failed == 0, "a run failed: {p:?}");
        if p.success == p.total {
            return Ok(t0.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn day_start(dag: &Dag, day: &str) -> anyhow::Result<DateTime<Utc>> {
    upiflow_engine::dag::parse_datetime_in(day, dag.tz()).map_err(anyhow::Error::msg)
}

/// Removes a day from the model tables (as if it had never run; merchants stay known) and
/// vacuums staging, as autovacuum would have after earlier deletes.
async fn forget_day(pool: &PgPool, day: NaiveDate) -> anyhow::Result<()> {
    for table in [
        "stg_upi_transactions WHERE txn_date = $1",
        "fact_upi_aggregates WHERE txn_date = $1",
        "daily_upi_summary WHERE date = $1",
        "merchant_upi_summary WHERE date = $1",
    ] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .bind(day)
            .execute(pool)
            .await?;
    }
    sqlx::query("VACUUM ANALYZE stg_upi_transactions")
        .execute(pool)
        .await?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn verdict(seconds: f64, target: f64) -> &'static str {
    if seconds < target { "met" } else { "MISSED" }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let random_ids = match std::env::var("BENCH_TXN_IDS").as_deref() {
        Err(_) | Ok("random") => true,
        Ok("ordered") => false,
        Ok(other) => {
            anyhow::bail!("BENCH_TXN_IDS is `random` (default) or `ordered`, not `{other}`")
        }
    };
    let db = bench_db::BenchDb::create(20).await?;
    let pool = db.pool.clone();
    let settings: (String, String, String) = sqlx::query_as(
        "SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('shared_buffers')",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "postgres fsync={} synchronous_commit={} shared_buffers={}; txn ids {}",
        settings.0,
        settings.1,
        settings.2,
        if random_ids {
            "random"
        } else {
            "in time order"
        }
    );

    let dag = shipped_transforms()?;
    generate(&pool, day_start(&dag, FIRST_DAY)?, random_ids).await?;

    let cache = VersionCache::new();
    let stop = CancellationToken::new();
    let worker = Worker::new(
        pool.clone(),
        upiflow_tasks::registry(),
        WorkerConfig {
            concurrency: 8,
            ..WorkerConfig::default()
        },
    );
    let handle = tokio::spawn(worker.run(stop.clone()));

    // (b) The 30-day backfill, from empty model tables.
    let since = Utc::now();
    let backfill_s = backfill_days(&pool, &cache, &dag, FIRST_DAY, LAST_DAY, false).await?;
    let summarised = || async {
        let (days, total): (i64, i64) =
            sqlx::query_as("SELECT count(*), sum(total_txns)::bigint FROM daily_upi_summary")
                .fetch_one(&pool)
                .await?;
        anyhow::ensure!(
            days == DAYS && total == EVENTS,
            "the models summarised {total} events in {days} days"
        );
        Ok(())
    };
    summarised().await?;
    println!(
        "(b) {DAYS}-day backfill, {} days at a time: {backfill_s:.1} s ({:.2} s/day, {:.0} events/s); target < {TARGET_BACKFILL_S} s: {}",
        dag.max_active_runs,
        backfill_s / DAYS as f64,
        EVENTS as f64 / backfill_s,
        verdict(backfill_s, TARGET_BACKFILL_S)
    );
    println!("    per task: {}", task_times(&pool, since, None).await?);

    // (a) One new day with the rest of the month already staged: the day is removed from the
    // model tables, then run again, request to success.
    let mut walls = Vec::new();
    for day in SINGLE_DAYS {
        forget_day(&pool, day.parse()?).await?;
        let since = Utc::now();
        let wall = backfill_days(&pool, &cache, &dag, day, day, true).await?;
        let at = day_start(&dag, day)?;
        println!(
            "    day {day}: {wall:.2} s [{}]",
            task_times(&pool, since, Some((at, at))).await?
        );
        walls.push(wall);
    }
    summarised().await?;
    let day_s = median(walls);
    println!(
        "(a) one day's run (staging -> fact -> daily -> merchant, dim_merchants beside): median {day_s:.2} s; target < {TARGET_DAY_S} s: {}",
        verdict(day_s, TARGET_DAY_S)
    );
    let rerun = backfill_days(&pool, &cache, &dag, RERUN_DAY, RERUN_DAY, true).await?;
    summarised().await?;
    println!(
        "    re-run of a day that is still staged (backfill --reset of one day): {rerun:.2} s"
    );

    // Baseline: the seed's full recomputation, measured on the same data, then rolled back
    // after checking that it agrees with the models.
    let mut tx = pool.begin().await?;
    let t0 = Instant::now();
    sqlx::query(NAIVE).execute(&mut *tx).await?;
    let naive_s = t0.elapsed().as_secs_f64();
    let disagreeing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM daily_upi_summary d
         FULL JOIN fact_upi_aggregates f ON f.txn_date = d.date
         WHERE (d.total_txns, d.success_txns, d.failed_txns, d.pending_txns, d.total_amount)
               IS DISTINCT FROM (f.total_txns, f.success_txns, f.failed_txns, f.pending_txns, f.total_amount)",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.rollback().await?;
    anyhow::ensure!(
        disagreeing == 0,
        "the naive recomputation disagrees with the models on {disagreeing} days"
    );
    println!(
        "baseline (seed): the whole daily summary recomputed from all {EVENTS} clean rows with one GROUP BY: \
         {naive_s:.2} s for every daily run, growing with history ({DAYS} days the seed's way: {:.0} s); \
         its numbers agree with the models'",
        naive_s * DAYS as f64
    );

    stop.cancel();
    handle.await??;
    db.drop().await?;
    Ok(())
}
