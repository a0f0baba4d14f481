//! Requests that failed only on a transient database error (a deadlock, a lost connection,
//! Postgres restarting) are run again, whole, before the client hears of it.
//!
//! Handlers map such errors to a 503 marked with [`Transient`]; this layer buffers the
//! request (bodies are small: [`crate::BODY_LIMIT`]) and replays it with backoff while the
//! answer carries the mark, within [`BUDGET`]. A failed attempt changed nothing (its
//! transaction rolled back), so replaying it is safe. Only when the database stays away
//! longer does the client get the 503, with `Retry-After`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Marks a response whose request may simply be run again.
#[derive(Debug, Clone, Copy)]
pub struct Transient;

/// How long one request is replayed before the 503 goes out.
pub const BUDGET: Duration = Duration::from_secs(30);

pub async fn replay_transient(req: Request, next: Next) -> Response {
    let small = req.method() == Method::GET
        || req.method() == Method::HEAD
        || req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n <= crate::BODY_LIMIT);
    if !small {
        // Unknown or too large a body: it cannot be kept for a replay; the handler decides.
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, crate::BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            // The body ended early or lied about its length: let the handler's own
            // extractors answer as they would have.
            return next.run(Request::from_parts(parts, Body::empty())).await;
        }
    };
    let started = Instant::now();
    let mut wait = Duration::from_millis(25);
    loop {
        let mut again = Request::new(Body::from(body.clone()));
        *again.method_mut() = parts.method.clone();
        *again.uri_mut() = parts.uri.clone();
        *again.version_mut() = parts.version;
        *again.headers_mut() = parts.headers.clone();
        *again.extensions_mut() = parts.extensions.clone();
        let resp = next.clone().run(again).await;
        if resp.extensions().get::<Transient>().is_none() || started.elapsed() >= BUDGET {
            return resp;
        }
        tracing::warn!(method = %parts.method, path = %parts.uri.path(), ?wait, "request failed on a transient database error; running it again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}
