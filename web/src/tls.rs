//! Serving over TLS (`upiflow web --tls-cert FILE --tls-key FILE`): the certificate and key
//! are read and checked against each other before anything listens, then every accepted
//! connection is a TLS handshake (rustls, ring) before it reaches the router. A port served
//! this way speaks only TLS: a plain-http client fails its handshake.
//!
//! Handshakes run in tasks of their own, so one slow or silent client never holds up the
//! others, and are given [`HANDSHAKE_TIMEOUT`] to finish.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate or key cannot be served; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the TLS certificate {} is not a PEM certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "the TLS key {} holds no PEM private key (expected a `-----BEGIN PRIVATE KEY-----`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY` block): {reason}", path.display()
    )]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "the TLS key {} does not match the certificate {} (they are not one pair)",
        key.display(), cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "the TLS certificate {} and key {} cannot be served",
        cert.display(), key.display()
    )]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// A checked certificate chain and key, ready to serve.
#[derive(Clone)]
pub struct TlsConfig(Arc<ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Reads the PEM certificate chain (the server's certificate first, then any
    /// intermediates) and the PEM private key, and checks that the key is the certificate's.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("key", key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadCertificate {
                path: cert.to_path_buf(),
                reason: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::BadCertificate {
                path: cert.to_path_buf(),
                reason: "no `-----BEGIN CERTIFICATE-----` block in it".into(),
            });
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
            .map_err(|source| match source {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    TlsError::Mismatch {
                        cert: cert.to_path_buf(),
                        key: key.to_path_buf(),
                    }
                }
                source => TlsError::Unusable {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                    source,
                },
            })?;
        // The router speaks HTTP/1.1 only (axum's `http1` feature).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }
}

/// An [`axum::serve::Listener`] whose connections are TLS streams, each with its peer's
/// address (so `ConnectInfo<SocketAddr>` works as over plain TCP).
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` in the background; the accept loop ends once this listener is
    /// dropped (when the server has shut down).
    pub fn new(tcp: TcpListener, config: &TlsConfig) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config.0.clone()), tx));
        Ok(Self { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            r = tcp.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::error!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                // A client that does not speak TLS (plain http) or distrusts the certificate.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Errors of one connection, not of the listener (as axum's own TCP listener judges them).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends when this receiver is gone, so this never happens.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
