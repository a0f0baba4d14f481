//! History-size benchmark (issue #13): does the scheduler stay as fast, and the grid page as
//! quick, when the history grows from 10k to 1M task-instance rows, and after `db clean`?
//!
//! 10 DAGs of 10 noop tasks, each with one running and one queued run (`max_active_runs = 1`,
//! so a pass checks them and starts nothing) and a few recent finished runs. History is added
//! in steps with `generate_series` (finished runs more than 60 days old, each task instance
//! with one try and one log line; not through the scheduler), then ANALYZEd. At each size:
//! - the scheduling pass (`Scheduler::schedule`: due DAGs, run creation, starting queued runs,
//!   closing backfills), median of `--passes` passes;
//! - the grid page `/dags/{dag_id}` (default 25 runs) and the DAGs page `/`, through the whole
//!   web router (session cookie, queries, HTML) with tower's `oneshot`, median of
//!   `--requests`.
//!
//! Then `db clean --older-than 30d` (the engine's `clean::clean`, what the CLI runs, which
//! vacuums what it cleaned) and the same measurements again. The baseline is the first size, measured in the same run; the
//! ratios largest/first and after-clean/first show whether the times are flat.
//!
//! `--sizes 10000,100000,1000000` (task-instance rows; 1M is the target, the default).
//! Needs DATABASE_URL (a superuser: it creates its own database); `scripts/bench.sh` runs it.

#[path = "support/bench_db.rs"]
mod bench_db;
#[path = "support/bench_session.rs"]
mod bench_session;

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use upiflow_engine::clean::{self, Table};
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};

const DAGS: i64 = 10;
const TASKS: i64 = 10;

struct Opts {
    sizes: Vec<i64>,
    passes: usize,
    requests: usize,
}

fn opts() -> Result<Opts> {
    let mut o = Opts {
        sizes: vec![10_000, 100_000, 1_000_000],
        passes: 50,
        requests: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                o.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<i64>().context("--sizes: numbers"))
                    .collect::<Result<_>>()?;
                anyhow::ensure!(
                    o.sizes.windows(2).all(|w| w[0] < w[1]) && o.sizes[0] > 0,
                    "--sizes must grow"
                );
            }
            "--passes" => o.passes = value()?.parse()?,
            "--requests" => o.requests = value()?.parse()?,
            other => anyhow::bail!(
                "unknown argument {other} (--sizes N,N,..., --passes N, --requests N)"
            ),
        }
    }
    Ok(o)
}

fn dag_toml(i: i64) -> String {
    let mut s = format!(
        "dag_id = \"hist_{i:02}\"\nschedule = \"@daily\"\nstart_date = \"2020-01-01\"\n\
         catchup = false\nmax_active_runs = 1\n"
    );
    for t in 0..TASKS {
        s.push_str(&format!("[[tasks]]\nid = \"t{t}\"\nkind = \"noop\"\n"));
        if t > 0 {
            s.push_str(&format!("upstream = [\"t{}\"]\n", t - 1));
        }
    }
    s
}

/// Adds finished runs `from..to` (per DAG) more than 60 days old, with their task instances,
/// one try and one log line each.
async fn add_history(pool: &sqlx::PgPool, from: i64, to: i64) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query(
        "INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start, data_interval_end,
                               run_type, state, dag_hash, queued_at, start_date, end_date)
         SELECT d.dag_id, 'scheduled__hist' || i, t, t, t + interval '1 hour', 'scheduled',
                CASE WHEN i % 13 = 0 THEN 'failed' ELSE 'success' END::run_state, d.latest_hash,
                t + interval '1 hour', t + interval '1 hour', t + interval '1 hour 2 minutes'
         FROM dags d, generate_series($1, $2 - 1) AS i,
              LATERAL (SELECT now() - interval '60 days' - i * interval '1 hour' AS t) x",
    )
    .bind(from)
    .bind(to)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, state, try_number, max_tries,
                                     worker, queued_at, start_date, end_date)
         SELECT r.id, r.dag_id, r.run_id, 't' || k,
                CASE WHEN r.state = 'success' OR k < 9 THEN 'success' ELSE 'failed' END::ti_state,
                1, 1, 'bench', r.start_date, r.start_date + k * interval '10 seconds',
                r.start_date + (k + 1) * interval '10 seconds'
         FROM dag_runs r, generate_series(0, $3 - 1) AS k
         WHERE r.run_id LIKE 'scheduled__hist%'
           AND substr(r.run_id, 16)::bigint >= $1 AND substr(r.run_id, 16)::bigint < $2",
    )
    .bind(from)
    .bind(to)
    .bind(TASKS)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "WITH tr AS (
           INSERT INTO task_tries (ti_id, try_number, worker, started_at, ended_at, outcome)
           SELECT ti.id, 1, 'bench', ti.start_date, ti.end_date,
                  CASE WHEN ti.state = 'success' THEN 'success' ELSE 'failed' END::try_outcome
           FROM task_instances ti
           WHERE ti.run_id LIKE 'scheduled__hist%'
             AND substr(ti.run_id, 16)::bigint >= $1 AND substr(ti.run_id, 16)::bigint < $2
           RETURNING id, started_at)
         INSERT INTO task_logs (try_id, at, stream, line)
         SELECT id, started_at, 'stdout', 'done' FROM tr",
    )
    .bind(from)
    .bind(to)
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

/// The live part: per DAG one running and one queued run and 3 recent finished runs.
async fn add_live(pool: &sqlx::PgPool) -> Result<()> {
    sqlx::raw_sql(&format!(
        "INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start, data_interval_end,
                               run_type, state, dag_hash, queued_at, start_date, end_date)
         SELECT d.dag_id, 'scheduled__live' || i, t, t, t + interval '1 hour', 'scheduled',
                (CASE i WHEN 0 THEN 'queued' WHEN 1 THEN 'running' ELSE 'success' END)::run_state,
                d.latest_hash, t, CASE WHEN i > 0 THEN t END, CASE WHEN i > 1 THEN t END
         FROM dags d, generate_series(0, 4) AS i,
              LATERAL (SELECT now() - i * interval '1 day' AS t) x;
         INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, state, try_number, max_tries)
         SELECT r.id, r.dag_id, r.run_id, 't' || k,
                CASE WHEN r.state = 'success' THEN 'success'::ti_state
                     WHEN r.state = 'running' AND k = 0 THEN 'running'::ti_state END,
                CASE WHEN r.state = 'queued' THEN 0 ELSE 1 END, 1
         FROM dag_runs r, generate_series(0, {TASKS} - 1) AS k
         WHERE r.run_id LIKE 'scheduled__live%';"
    ))
    .execute(pool)
    .await?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn scheduler_ms(s: &Scheduler, passes: usize) -> Result<f64> {
    for _ in 0..3 {
        s.schedule().await?;
    }
    let mut t = Vec::with_capacity(passes);
    for _ in 0..passes {
        let t0 = Instant::now();
        let pass = s.schedule().await?;
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(pass.started == 0, "a pass started a run: {pass:?}");
    }
    Ok(median(t))
}

async fn page_ms(app: &axum::Router, cookie: &str, uri: &str, n: usize) -> Result<f64> {
    let mut t = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let req = Request::get(uri)
            .header(header::COOKIE, cookie)
            .body(Body::empty())?;
        let t0 = Instant::now();
        let resp = app.clone().oneshot(req).await?;
        let status = resp.status();
        axum::body::to_bytes(resp.into_body(), 64 << 20).await?;
        anyhow::ensure!(status == StatusCode::OK, "{uri}: {status}");
        if i >= 5 {
            t.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(median(t))
}

struct Sample {
    label: String,
    tis: i64,
    scheduler: f64,
    grid: f64,
    home: f64,
}

async fn ti_rows(pool: &sqlx::PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM task_instances")
        .fetch_one(pool)
        .await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = opts()?;
    let db = bench_db::BenchDb::create(10).await?;
    let pool = db.pool.clone();
    let registry = upiflow_tasks::registry();
    {
        let mut conn = pool.acquire().await?;
        for i in 0..DAGS {
            let dag =
                upiflow_engine::dag::load_dag_str(Path::new("hist.toml"), &dag_toml(i), &registry)
                    .map_err(|e| anyhow!("{e:?}"))?;
            upiflow_engine::store::dags::sync(&mut conn, &dag).await?;
        }
    }
    add_live(&pool).await?;
    // The scheduler reads DAGs from the database; its folder is not read by `schedule`.
    let sched = Scheduler::new(
        pool.clone(),
        registry.clone(),
        SchedulerConfig::new(std::env::temp_dir().join("upiflow-bench-history-none")),
    );
    let state = upiflow_web::AppState::new(pool.clone()).await?;
    let cookie = bench_session::viewer_cookie(&state).await?;
    let app = upiflow_web::app(state);

    let mut samples = Vec::new();
    let mut per_dag_done = 0;
    let live = ti_rows(&pool).await?;
    for &size in &o.sizes {
        let per_dag = ((size - live).max(0) / (DAGS * TASKS)).max(per_dag_done);
        let t0 = Instant::now();
        add_history(&pool, per_dag_done, per_dag).await?;
        per_dag_done = per_dag;
        let tis = ti_rows(&pool).await?;
        println!(
            "history: {tis} task-instance rows ({} runs per DAG) in {:.1} s",
            per_dag + 5,
            t0.elapsed().as_secs_f64()
        );
        samples.push(Sample {
            label: format!("{tis} task instances"),
            tis,
            scheduler: scheduler_ms(&sched, o.passes).await?,
            grid: page_ms(&app, &cookie, "/dags/hist_00", o.requests).await?,
            home: page_ms(&app, &cookie, "/", o.requests).await?,
        });
    }

    let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
    let tables = [Table::DagRuns];
    let t0 = Instant::now();
    let planned = clean::count(&pool, cutoff, &tables).await?;
    let count_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let done = clean::clean(
        &pool,
        cutoff,
        &tables,
        NonZeroU32::new(1000).unwrap(),
        |_| {},
    )
    .await?;
    let clean_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        done[0].rows == planned[0].rows,
        "clean deleted what it counted"
    );
    println!(
        "db clean --older-than 30d: counted {} runs in {count_s:.1} s, deleted them with {:?} in {clean_s:.1} s ({:.0} task instances/s)",
        done[0].rows,
        done[0].dependents,
        done[0].dependents[0].1 as f64 / clean_s
    );
    // No VACUUM or ANALYZE of our own here: the clean vacuums what it cleaned.
    let tis = ti_rows(&pool).await?;
    samples.push(Sample {
        label: format!("after db clean ({tis})"),
        tis,
        scheduler: scheduler_ms(&sched, o.passes).await?,
        grid: page_ms(&app, &cookie, "/dags/hist_00", o.requests).await?,
        home: page_ms(&app, &cookie, "/", o.requests).await?,
    });

    println!(
        "\n{:<34} {:>14} {:>12} {:>12}",
        "history", "scheduler ms", "grid ms", "DAGs page ms"
    );
    for s in &samples {
        println!(
            "{:<34} {:>14.2} {:>12.2} {:>12.2}",
            s.label, s.scheduler, s.grid, s.home
        );
    }
    let base = &samples[0];
    let largest = &samples[samples.len() - 2];
    let after = &samples[samples.len() - 1];
    for (name, s) in [
        (format!("ratio {}/{}", largest.tis, base.tis), largest),
        (format!("ratio after clean/{}", base.tis), after),
    ] {
        println!(
            "{name:<34} {:>14.2} {:>12.2} {:>12.2}",
            s.scheduler / base.scheduler,
            s.grid / base.grid,
            s.home / base.home
        );
    }
    println!("(medians; flat means ratios near 1)");
    db.drop().await?;
    Ok(())
}
