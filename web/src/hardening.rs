//! Browser hardening: the security headers every answer carries (OWASP's secure-headers
//! list, as a security review of an orchestrator's web tier asks). The UI runs no inline
//! script (its JavaScript is `/static/app.js`), so the policy allows scripts from this origin
//! only; style attributes (bar widths and heights, chart swatches) are the one inline thing
//! allowed. No page may be framed by another site (`frame-ancestors 'none'` and, for older
//! browsers, `X-Frame-Options: DENY`), content types are not sniffed, and no address leaves
//! the site in a `Referer`. Over https (TLS here, or a trusted proxy reporting it) answers
//! also carry `Strict-Transport-Security`, so the browser never uses plain http for a year.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::transport::Transport;

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     style-src-attr 'unsafe-inline'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
];

/// HSTS for a year (OWASP's recommended minimum); sent only over https, where browsers
/// honour it.
pub const HSTS: &str = "max-age=31536000";

/// Adds the security headers to every answer that does not set its own.
pub async fn headers(State(transport): State<Transport>, req: Request, next: Next) -> Response {
    let https = transport.secure(req.headers());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in HEADERS {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    resp
}
