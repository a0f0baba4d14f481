//! Grid page benchmark: a DAG of 6 tasks with 1,000 runs × 6 task instances (rows inserted
//! directly), then the page `/dags/{dag_id}` rendered through the whole router (session
//! cookie, queries, maud) with tower's `oneshot`: the default 25 runs, the 1,000-run maximum,
//! and the refreshing fragment. Prints p50/p99 in ms; the target is a p50 under 50 ms.
//! Needs DATABASE_URL (a superuser: it creates its own database); `scripts/bench.sh` runs it.

#[path = "support/bench_db.rs"]
mod bench_db;
#[path = "support/bench_session.rs"]
mod bench_session;

use std::path::Path;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use upiflow_engine::dag::load_dag_str;

const DAG: &str = r#"dag_id = "grid_bench"
schedule = "@daily"
[[tasks]]
id = "extract"
kind = "noop"
[[tasks]]
id = "validate"
kind = "noop"
upstream = ["extract"]
[[tasks]]
id = "banks"
kind = "noop"
upstream = ["validate"]
[[tasks]]
id = "merchants"
kind = "noop"
upstream = ["validate"]
[[tasks]]
id = "load"
kind = "noop"
upstream = ["banks", "merchants"]
[[tasks]]
id = "notify"
kind = "noop"
upstream = ["load"]
"#;

const RUNS: i64 = 1000;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Renders `uri` `n` times (after a few warm-up requests); returns sorted times in ms and the
/// size of the page.
async fn measure(
    app: &axum::Router,
    cookie: &str,
    uri: &str,
    fragment: bool,
    n: usize,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for i in 0..n + 5 {
        let mut req = Request::get(uri).header(header::COOKIE, cookie);
        if fragment {
            req = req.header("x-fragment", "1");
        }
        let t0 = Instant::now();
        let resp = app.clone().oneshot(req.body(Body::empty())?).await?;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(status == StatusCode::OK, "{uri}: {status}");
        size = body.len();
        if i >= 5 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times, size))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = bench_db::BenchDb::create(10).await?;
    let pool = db.pool.clone();
    let dag = load_dag_str(
        Path::new("grid_bench.toml"),
        DAG,
        &upiflow_tasks::registry(),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut conn = pool.acquire().await?;
    let hash = upiflow_engine::store::dags::sync(&mut conn, &dag).await?;
    let t0 = Instant::now();
    sqlx::query(
        "INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start, data_interval_end,
                               run_type, state, dag_hash, queued_at, start_date, end_date)
         SELECT $1, 'scheduled__' || to_char(d, 'YYYY-MM-DD') || 'T00:00:00+00:00', d, d,
                d + interval '1 day', 'scheduled',
                CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'success' END::run_state, $2,
                d + interval '1 day', d + interval '1 day',
                d + interval '1 day' + (30 + i % 90) * interval '1 second'
         FROM generate_series(0, $3 - 1) AS i,
              LATERAL (SELECT '2023-01-01'::timestamptz + i * interval '1 day' AS d) AS x",
    )
    .bind(&dag.dag_id)
    .bind(&hash)
    .bind(RUNS)
    .execute(&mut *conn)
    .await?;
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
    sqlx::query(
        "INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, state, try_number, max_tries,
                                     worker, queued_at, start_date, end_date)
         SELECT r.id, r.dag_id, r.run_id, t.id,
                CASE WHEN r.state = 'success' THEN 'success'
                     WHEN t.n < 4 THEN 'success'
                     WHEN t.n = 4 THEN 'failed' ELSE 'upstream_failed' END::ti_state,
                1, 1, 'bench', r.start_date, r.start_date + t.n * interval '5 seconds',
                r.start_date + (t.n + 1) * interval '5 seconds'
         FROM dag_runs r, UNNEST($2::text[]) WITH ORDINALITY AS t(id, n)
         WHERE r.dag_id = $1",
    )
    .bind(&dag.dag_id)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    drop(conn);
    println!(
        "inserted {RUNS} runs x {} task instances in {:.1} s",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );

    let state = upiflow_web::AppState::new(pool.clone()).await?;
    let cookie = bench_session::viewer_cookie(&state).await?;
    let app = upiflow_web::app(state);
    let mut worst_p50: f64 = 0.0;
    for (label, uri, fragment, n) in [
        ("grid page, default 25 runs", "/dags/grid_bench", false, 300),
        (
            "grid fragment (refresh), 25 runs",
            "/dags/grid_bench",
            true,
            300,
        ),
        (
            "grid page, 1000 runs",
            "/dags/grid_bench?runs=1000",
            false,
            100,
        ),
        (
            "grid page, 25 runs 500 back",
            "/dags/grid_bench?runs=25&offset=500",
            false,
            300,
        ),
    ] {
        let (t, size) = measure(&app, &cookie, uri, fragment, n).await?;
        let p50 = pct(&t, 0.5);
        worst_p50 = worst_p50.max(p50);
        println!(
            "{label:<34} p50 {p50:6.2} ms  p99 {:6.2} ms  ({n} requests, {} KiB)",
            pct(&t, 0.99),
            size / 1024
        );
    }
    println!(
        "target p50 < 50 ms: {}",
        if worst_p50 < 50.0 { "met" } else { "MISSED" }
    );
    db.drop().await?;
    Ok(())
}
