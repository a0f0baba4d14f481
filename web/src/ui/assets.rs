//! `/static/app.css`, `/static/app.js` and `/static/favicon.svg`, compiled into the binary and cached for five
//! minutes.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/favicon.svg", get(favicon))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("static/app.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("static/app.js"),
    )
}

/// The pages name it, so browsers do not ask for a `/favicon.ico` that is not there (a 404
/// in every page's console).
async fn favicon() -> Response {
    asset("image/svg+xml", include_str!("static/favicon.svg"))
}
