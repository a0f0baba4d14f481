//! API-key benchmark: what a Prometheus scrape pays to authenticate. `GET /metrics` and
//! `GET /api/v2/pools` (a cheap authenticated route) served by the real server on loopback,
//! one keep-alive connection sending requests one after another (a scraper's pattern), with
//! each of the three credentials a client can send, interleaved in rounds in the same run:
//! HTTP Basic (an argon2id hash per request, what a `basic_auth` scrape costs), an API key
//! (`upiflow tokens create`: one indexed lookup of its SHA-256) and a signed token (a JWT
//! check and the user's token-version lookup; but it expires in 24 h, so a scraper cannot
//! hold one). Prints the median and p90 latency of each.
//!
//! Needs DATABASE_URL (a superuser: it creates its own database); `scripts/bench.sh` starts a
//! Postgres with default durability settings and runs this.

#[path = "support/bench_db.rs"]
mod bench_db;

use std::net::SocketAddr;
use std::time::Instant;

use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use upiflow_web::auth::{self, Role};

/// Requests per credential and route (in rounds of [`ROUND`], the credentials alternating).
const REQUESTS: usize = 300;
const ROUND: usize = 20;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    authorization: &str,
) -> anyhow::Result<f64> {
    let req = hyper::Request::get(url)
        .header("authorization", authorization)
        .body(Empty::new())?;
    let t = Instant::now();
    let resp = client.request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status.is_success(), "{url}: {status}");
    anyhow::ensure!(!body.is_empty());
    Ok(ms)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = bench_db::BenchDb::create(16).await?;
    let pool = db.pool.clone();
    let password = "bench-password";
    auth::create_user(&pool, "prom", password, Role::Viewer)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let key =
        upiflow_web::api_keys::create(&pool, "prometheus", Role::Viewer, "bench", None).await?;
    let state = upiflow_web::AppState::new(pool.clone())
        .await?
        .with_product(upiflow_tasks::upi::product::UpiProduct::shared());
    let token = auth::issue_token(
        &state.token_key,
        "prom",
        auth::Grant {
            role: Role::Viewer,
            version: 0,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = upiflow_web::listen(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let server = tokio::spawn(upiflow_web::serve(listener, state, async move {
        s.cancelled().await
    }));

    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("prom:{password}"))
    );
    let creds = [
        ("HTTP Basic (argon2id)", basic),
        ("API key (upf_...)", format!("Bearer {key}")),
        ("signed token (JWT)", format!("Bearer {token}")),
    ];
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http();
    println!(
        "authentication cost on loopback: one keep-alive connection, {REQUESTS} sequential requests per credential and route, alternating in rounds of {ROUND}"
    );
    for route in ["/metrics", "/api/v2/pools"] {
        let url = format!("{base}{route}");
        // Warm up: the connection, plans, caches.
        for (_, c) in &creds {
            for _ in 0..10 {
                get(&client, &url, c).await?;
            }
        }
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); creds.len()];
        while lat[0].len() < REQUESTS {
            for (i, (_, c)) in creds.iter().enumerate() {
                for _ in 0..ROUND {
                    lat[i].push(get(&client, &url, c).await?);
                }
            }
        }
        let mut medians = Vec::new();
        for (i, (name, _)) in creds.iter().enumerate() {
            let l = &mut lat[i];
            l.sort_by(f64::total_cmp);
            let (p50, p90) = (pct(l, 0.5), pct(l, 0.9));
            medians.push(p50);
            println!(
                "GET {route} with {name}: {} requests, p50 {p50:.2} ms, p90 {p90:.2} ms",
                l.len()
            );
        }
        println!(
            "GET {route}: Basic / API key p50 = {:.1}x; API key / signed token p50 = {:.2}x",
            medians[0] / medians[1],
            medians[1] / medians[2]
        );
    }
    stop.cancel();
    server.await??;
    db.drop().await?;
    Ok(())
}
