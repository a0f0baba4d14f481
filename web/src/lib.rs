//! upiflow's HTTP side, one axum router ([`app`]):
//!
//! - [`api`]: a JSON API compatible with Airflow 3's `/api/v2` (token, version, health,
//!   DAGs, DAG versions, DAG runs, task instances, tries, logs, clear, backfills), checked
//!   against Airflow's OpenAPI document in the tests;
//! - [`ui`]: the server-rendered web UI (maud): DAGs, grid, graph, runs, logs, trigger,
//!   backfills, the missed-interval ledger, and the registered product's dashboard;
//! - [`metrics`]: `/metrics` in the Prometheus text format;
//! - [`audit`]: the layers that write every change and sign-in to the audit log.
//!
//! Every route authenticates ([`auth`]); changing anything needs a role that may ([`roles`]). Handlers
//! translate requests and render answers: they read and write through
//! `upiflow_engine::store` and `upiflow_engine::lifecycle`, hold no SQL, and answer errors
//! through the one [`error::HttpError`]. A product (the UPI pipeline) plugs in through
//! [`AppState::with_product`]; the web names none of its tables.

pub mod api;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod error;
pub mod hardening;
pub mod metrics;
pub mod retry;
pub mod roles;
pub mod throttle;
pub mod tls;
pub mod transport;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sqlx::PgPool;
use upiflow_engine::product::Product;
use upiflow_engine::store::dags::VersionCache;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub cache: VersionCache,
    pub token_key: Arc<Vec<u8>>,
    /// The product plugged into the web (the binary registers the UPI pipeline's): its
    /// dashboard page and its families in `/metrics`. `None`: neither.
    pub product: Option<Arc<dyn Product>>,
    /// Connections and variables, decrypted with the process's Fernet key.
    pub secrets: upiflow_engine::secrets::Secrets,
    /// How requests reach this server (TLS, a proxy): `Secure` cookies, the client's address.
    pub transport: transport::Transport,
    /// How failed sign-ins are throttled (`UPIFLOW_AUTH_RATE_LIMIT`, see [`throttle`]).
    pub throttle: throttle::Limit,
    /// The process's folders and brokers as its command line resolved them (what
    /// `GET /api/v2/config` reports).
    pub process: ProcessSettings,
}

/// Where the process reads DAG files and keeps its state, and its Kafka brokers: the CLI's
/// flags or their environment variables, resolved. Without [`AppState::with_process`], the
/// environment variables with the CLI's defaults.
#[derive(Clone, Debug)]
pub struct ProcessSettings {
    pub dags_folder: std::path::PathBuf,
    pub home: std::path::PathBuf,
    pub kafka_bootstrap_servers: Option<String>,
}

impl ProcessSettings {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        ProcessSettings {
            dags_folder: var("UPIFLOW_DAGS_FOLDER").unwrap_or("./dags".into()).into(),
            home: var("UPIFLOW_HOME").unwrap_or("./.upiflow".into()).into(),
            kafka_bootstrap_servers: var("KAFKA_BOOTSTRAP_SERVERS"),
        }
    }
}

impl AppState {
    pub async fn new(pool: PgPool) -> Result<Self, upiflow_engine::EngineError> {
        let key = upiflow_engine::transient::retry("read the token signing key", || async {
            auth::signing_key(&pool).await
        })
        .await?;
        let token_key = Arc::new(key);
        let secrets = upiflow_engine::secrets::Secrets::from_env(pool.clone())?;
        Ok(Self {
            secrets,
            pool,
            cache: VersionCache::new(),
            token_key,
            product: None,
            transport: transport::Transport::default(),
            throttle: throttle::Limit::from_env()?,
            process: ProcessSettings::from_env(),
        })
    }

    /// With the process's settings as its command line resolved them.
    pub fn with_process(mut self, process: ProcessSettings) -> Self {
        self.process = process;
        self
    }

    /// Reached as `transport` says (see [`AppState::transport`]).
    pub fn with_transport(mut self, transport: transport::Transport) -> Self {
        self.transport = transport;
        self
    }

    /// With `product` plugged in (see [`AppState::product`]).
    pub fn with_product(mut self, product: Arc<dyn Product>) -> Self {
        self.product = Some(product);
        self
    }
}

/// The largest request body accepted (a 413 beyond it).
pub const BODY_LIMIT: usize = 256 * 1024;

/// The whole application (handlers are tested through this with `oneshot`).
pub fn app(state: AppState) -> Router {
    let mut routes = Router::new()
        .merge(api::router())
        .merge(ui::router())
        .merge(metrics::router());
    if let Some(p) = &state.product {
        routes = routes.merge(ui::dashboard::router(p.dashboard()));
    }
    routes
        .route_layer(axum::middleware::from_fn(audit::capture))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(retry::replay_transient))
        // Outermost, so a replayed request is one audit row, written once it is answered.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.transport,
            hardening::headers,
        ))
}

/// Binds `bind`, with a message that names the address when it cannot.
pub async fn listen(bind: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {bind}: {e} (choose another address with --bind)"),
        )
    })
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "web UI and API listening");
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves over TLS only (see [`tls`]) until `shutdown` completes; cookies are `Secure` and
/// answers carry `Strict-Transport-Security`.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: &tls::TlsConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    tracing::info!(address = %listener.local_addr()?, "web UI and API listening over TLS");
    let transport = transport::Transport {
        tls: true,
        ..state.transport
    };
    // `tap_io` gives the TLS listener axum's `ConnectInfo<SocketAddr>` (the peer address).
    let listener = tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
    axum::serve(
        listener,
        app(state.with_transport(transport))
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
