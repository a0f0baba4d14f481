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
    /// Whether the browser reached us over https, so cookies must be `Secure` and
    /// `Strict-Transport-Security` is sent: this server speaks TLS, or (`--behind-proxy`) the
    /// proxy says the client used https. Without `--behind-proxy` the header is ignored, since
    /// any client could send it.
    pub fn secure(&self, headers: &HeaderMap) -> bool {
        self.tls
            || (self.behind_proxy
                && last_entry(headers, "x-forwarded-proto")
                    .is_some_and(|p| p.eq_ignore_ascii_case("https")))
    }

    /// The client's address: the peer's, or with `--behind-proxy` the right-most entry of
    /// `X-Forwarded-For`, the one the trusted proxy added (entries to its left come from the
    /// client and prove nothing). Without `--behind-proxy`, or when the proxy sent no usable
    /// address, the peer's.
    pub fn client_addr(&self, ext: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        if !self.behind_proxy {
            return peer;
        }
        last_entry(headers, "x-forwarded-for")
            .and_then(parse_addr)
            .or(peer)
    }
}

/// The right-most comma-separated entry of the last `name` header, trimmed (a proxy
/// appends its own entry, so the last one is what the trusted proxy wrote).
fn last_entry<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    (!last.is_empty()).then_some(last)
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:4711` or
/// `203.0.113.7:4711`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn peer() -> Extensions {
        let mut e = Extensions::new();
        e.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 5000))));
        e
    }

    const PROXY: Transport = Transport {
        tls: false,
        behind_proxy: true,
    };
    const DIRECT: Transport = Transport {
        tls: false,
        behind_proxy: false,
    };

    #[test]
    fn forwarded_headers_count_only_behind_a_proxy() {
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert!(PROXY.secure(&h));
        assert!(!DIRECT.secure(&h));
        assert_eq!(
            PROXY.client_addr(&peer(), &h),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            DIRECT.client_addr(&peer(), &h),
            Some("10.0.0.9".parse().unwrap())
        );
        let tls = Transport {
            tls: true,
            behind_proxy: false,
        };
        assert!(tls.secure(&HeaderMap::new()));
    }

    #[test]
    fn the_right_most_entry_is_the_proxys() {
        // A client's forged entries come first; the proxy appends the address it saw.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "6.6.6.6, [2001:db8::1]:4711"),
            ("x-forwarded-proto", "https, http"),
        ]);
        assert_eq!(
            PROXY.client_addr(&peer(), &h),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(!PROXY.secure(&h));
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.2:80"),
            ("x-forwarded-proto", "HTTPS"),
        ]);
        assert_eq!(
            PROXY.client_addr(&peer(), &h),
            Some("198.51.100.2".parse().unwrap())
        );
        assert!(PROXY.secure(&h));
    }

    #[test]
    fn an_unusable_forwarded_for_falls_back_to_the_peer() {
        for bad in ["", "unknown", "not an address, ", "999.1.1.1"] {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(bad).unwrap());
            assert_eq!(
                PROXY.client_addr(&peer(), &h),
                Some("10.0.0.9".parse().unwrap()),
                "{bad:?}"
            );
        }
        assert!(!PROXY.secure(&HeaderMap::new()));
    }
}
