//! How requests reach the server: directly, over TLS, or through a proxy that says what the
//! client used (`--behind-proxy`). Decides whether cookies are `Secure` and who the client is.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

/// How this server is reached (set by `upiflow web --tls-cert/--tls-key/--behind-proxy`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Transport {
    /// The server itself speaks TLS.
    pub tls: bool,
    /// A proxy in front sets `X-Forwarded-Proto` and `X-Forwarded-For`, and is trusted.
    pub behind_proxy: bool,
}

impl Transport {
    /// Whether the browser reached us over https, so cookies must be `Secure`.
    pub fn secure(&self, _headers: &HeaderMap) -> bool {
        self.tls
    }

    /// The client's address: the peer's, or with `--behind-proxy` the one the proxy names.
    pub fn client_addr(&self, ext: &Extensions, _headers: &HeaderMap) -> Option<IpAddr> {
        ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
    }
}

/// The client of this request, as [`Transport`] sees it: its address and whether it came
/// over https.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: Option<IpAddr>,
    pub secure: bool,
}

impl<S> axum::extract::FromRequestParts<S> for Client
where
    crate::AppState: axum::extract::FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let t = <crate::AppState as axum::extract::FromRef<S>>::from_ref(state).transport;
        Ok(Client {
            addr: t.client_addr(&parts.extensions, &parts.headers),
            secure: t.secure(&parts.headers),
        })
    }
}
