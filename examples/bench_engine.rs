//! Engine benchmark: a 40-task chain of noops run by one worker (trigger to success, and the
//! gap between a task's end and its downstream's start), then 1,000 independent noops
//! (tasks/s), in the default pool and again with pools and priority in use (four pools of
//! 16 slots, weights 1..10 and all three weight rules), alternating, so the cost of the
//! limits is measured against a baseline from the same run. Needs DATABASE_URL (a superuser: it creates its own database); `scripts/bench.sh`
//! starts a Postgres with default durability settings and runs this.
//!
//! Reference (issue #2): Apache Airflow 2.10.5, LocalExecutor + Postgres, same machine size:
//! 39.4 s for the 40-task chain, median gap 0.80 s.

#[path = "support/bench_db.rs"]
mod bench_db;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio_util::sync::CancellationToken;
use upiflow_engine::dag::load_dag_str;
use upiflow_engine::executor::{Worker, WorkerConfig};
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::store::dags::VersionCache;

const AIRFLOW_CHAIN_S: f64 = 39.4;
const AIRFLOW_GAP_MS: f64 = 800.0;

fn chain(n: usize) -> String {
    let mut s = String::from("dag_id = \"chain\"\n");
    for i in 0..n {
        s.push_str(&format!("[[tasks]]\nid = \"t{i}\"\nkind = \"noop\"\n"));
        if i > 0 {
            s.push_str(&format!("upstream = [\"t{}\"]\n", i - 1));
        }
    }
    s
}

fn wide(n: usize) -> String {
    let mut s = String::from("dag_id = \"wide\"\nmax_active_tasks = 1000\n");
    for i in 0..n {
        s.push_str(&format!("[[tasks]]\nid = \"t{i}\"\nkind = \"noop\"\n"));
    }
    s
}

/// `wide` with every task in one of four pools, a priority weight from 1 to 10 and a weight
/// rule of each kind.
fn wide_pooled(n: usize) -> String {
    let mut s = String::from("dag_id = \"wide_pooled\"\nmax_active_tasks = 1000\n");
    let rules = ["downstream", "upstream", "absolute"];
    for i in 0..n {
        s.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\nkind = \"noop\"\npool = \"bench{}\"\npriority_weight = {}\nweight_rule = \"{}\"\n",
            i % 4,
            1 + i % 10,
            rules[i % 3]
        ));
    }
    s
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = bench_db::BenchDb::create(20).await?;
    let pool = db.pool.clone();
    let durability: (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(&pool)
            .await?;
    println!(
        "postgres fsync={} synchronous_commit={}",
        durability.0, durability.1
    );

    let registry = upiflow_tasks::registry();
    let cache = VersionCache::new();
    let stop = CancellationToken::new();
    let worker = Worker::new(
        pool.clone(),
        registry.clone(),
        WorkerConfig {
            concurrency: 32,
            ..WorkerConfig::default()
        },
    );
    let handle = tokio::spawn(worker.run(stop.clone()));

    // 1. The 40-task chain, 10 runs.
    let chain_dag = load_dag_str(Path::new("chain.toml"), &chain(40), &registry)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut walls = Vec::new();
    for day in 1..=11u32 {
        let t0 = Instant::now();
        let run = ops::trigger(
            &pool,
            &cache,
            &chain_dag,
            &Trigger {
                logical_date: Some(Utc.with_ymd_and_hms(2024, 1, day, 0, 0, 0).unwrap()),
                ..Trigger::default()
            },
        )
        .await?;
        ops::wait_until_done(&pool, run.id, Duration::from_millis(1)).await?;
        if day > 1 {
            // The first run warms caches and connections.
            walls.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut gaps: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM d.started_at - u.ended_at)::float8 * 1000
         FROM task_tries d
         JOIN task_instances dti ON dti.id = d.ti_id
         JOIN task_instances uti ON uti.run_pk = dti.run_pk
              AND uti.task_id = 't' || (substr(dti.task_id, 2)::int - 1)
         JOIN task_tries u ON u.ti_id = uti.id
         WHERE dti.dag_id = 'chain' AND dti.task_id <> 't0'",
    )
    .fetch_all(&pool)
    .await?;
    walls.sort_by(f64::total_cmp);
    gaps.sort_by(f64::total_cmp);
    let wall_p50 = pct(&walls, 0.5);
    let gap_p50 = pct(&gaps, 0.5);
    println!(
        "chain of 40 noops, 1 worker, {} runs: trigger->success p50 {:.1} ms (min {:.1}, max {:.1}); \
         upstream end -> downstream start p50 {:.2} ms, p99 {:.2} ms ({} gaps)",
        walls.len(),
        wall_p50,
        walls[0],
        walls[walls.len() - 1],
        gap_p50,
        pct(&gaps, 0.99),
        gaps.len()
    );
    println!(
        "  vs Airflow 2.10.5 reference: chain {:.0}x faster ({} s -> {:.3} s), median gap {:.0}x smaller ({} ms -> {:.2} ms)",
        AIRFLOW_CHAIN_S * 1000.0 / wall_p50,
        AIRFLOW_CHAIN_S,
        wall_p50 / 1000.0,
        AIRFLOW_GAP_MS / gap_p50,
        AIRFLOW_GAP_MS,
        gap_p50
    );

    // 2. 1,000 independent noops in one run: default pool and pooled, alternating, 3 each.
    for i in 0..4 {
        sqlx::query("INSERT INTO pools (name, slots) VALUES ($1, 16)")
            .bind(format!("bench{i}"))
            .execute(&pool)
            .await?;
    }
    let wide_dag = load_dag_str(Path::new("wide.toml"), &wide(1000), &registry)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let pooled_dag = load_dag_str(Path::new("wide_pooled.toml"), &wide_pooled(1000), &registry)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (mut rates, mut pooled_rates) = (Vec::new(), Vec::new());
    let mut batches: Vec<(i64, i64)> = Vec::new();
    for day in 1..=3u32 {
        for (dag, out) in [(&wide_dag, &mut rates), (&pooled_dag, &mut pooled_rates)] {
            let t0 = Instant::now();
            let run = ops::trigger(
                &pool,
                &cache,
                dag,
                &Trigger {
                    logical_date: Some(Utc.with_ymd_and_hms(2024, 2, day, 0, 0, 0).unwrap()),
                    ..Trigger::default()
                },
            )
            .await?;
            ops::wait_until_done(&pool, run.id, Duration::from_millis(5)).await?;
            out.push(1000.0 / t0.elapsed().as_secs_f64());
            // Tries claimed by one statement share its start time, and tries recorded by
            // one transaction share their end time: how well claims and finishes batch.
            let (claims, finishes): (i64, i64) = sqlx::query_as(
                "SELECT count(DISTINCT tr.started_at), count(DISTINCT ti.end_date)
                 FROM task_instances ti JOIN task_tries tr ON tr.ti_id = ti.id
                 WHERE ti.run_pk = $1",
            )
            .bind(run.id)
            .fetch_one(&pool)
            .await?;
            batches.push((claims, finishes));
        }
    }
    batches.sort_unstable();
    let (claims, finishes) = batches[batches.len() / 2];
    rates.sort_by(f64::total_cmp);
    pooled_rates.sort_by(f64::total_cmp);
    println!(
        "1,000 independent noops, 1 worker (concurrency 32), {} runs: median {:.0} tasks/s (min {:.0}, max {:.0}); target 2,000",
        rates.len(),
        pct(&rates, 0.5),
        rates[0],
        rates[rates.len() - 1]
    );
    println!(
        "  the same with pools and priority in use (4 pools of 16 slots, weights 1..10, 3 weight rules): \
         median {:.0} tasks/s (min {:.0}, max {:.0}), {:.2}x the default pool's",
        pct(&pooled_rates, 0.5),
        pooled_rates[0],
        pooled_rates[pooled_rates.len() - 1],
        pct(&pooled_rates, 0.5) / pct(&rates, 0.5)
    );
    println!(
        "  batching (median run): {claims} claim statements and {finishes} finishing transactions \
         for 1,000 tries ({:.1} and {:.1} tries each)",
        1000.0 / claims as f64,
        1000.0 / finishes as f64
    );

    stop.cancel();
    handle.await??;
    db.drop().await?;
    Ok(())
}
