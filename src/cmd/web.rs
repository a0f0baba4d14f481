//! `upiflow web` and `upiflow users create|list|delete|set-password|set-role`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use upiflow_web::auth::{self, Role};
use upiflow_web::tls::TlsConfig;
use upiflow_web::transport::Transport;

use super::connect;
use crate::Global;

#[derive(Args)]
pub struct WebArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// How browsers and clients reach the web (`upiflow web` and `upiflow standalone`).
#[derive(Args, Clone, Default)]
pub struct TransportArgs {
    /// Serve only https with this PEM certificate chain (the server's certificate first);
    /// needs --tls-key. Cookies are then `Secure` and answers carry HSTS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A proxy in front terminates the clients' connections: trust its `X-Forwarded-Proto`
    /// (https: `Secure` cookies and HSTS) and `X-Forwarded-For` (the client's address, the
    /// right-most entry). Only with a proxy that sets both, or clients could forge them.
    #[arg(long)]
    pub behind_proxy: bool,
}

impl TransportArgs {
    /// The certificate and key, read and checked (before anything listens); `None` without
    /// --tls-cert.
    pub fn tls(&self) -> Result<Option<TlsConfig>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsConfig::load(cert, key)?)),
            (None, None) => Ok(None),
            // clap's `requires` already refuses these; kept so no caller can get past it.
            (Some(_), None) => Err(anyhow!("--tls-cert needs --tls-key")),
            (None, Some(_)) => Err(anyhow!("--tls-key needs --tls-cert")),
        }
    }

    /// What the web trusts of a proxy; whether it speaks TLS itself is `serve`'s to say
    /// (`upiflow_web::serve_tls` marks it).
    pub fn transport(&self) -> Transport {
        Transport {
            tls: false,
            behind_proxy: self.behind_proxy,
        }
    }
}

/// Serves `state` on `listener`, over TLS when `tls` is given, until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsConfig>,
    state: upiflow_web::AppState,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let shutdown = async move { stop.cancelled().await };
    match tls {
        Some(tls) => upiflow_web::serve_tls(listener, &tls, state, shutdown).await,
        None => upiflow_web::serve(listener, state, shutdown).await,
    }
}

/// The URL the web is reached at (its scheme says whether it is TLS).
pub fn url(listener: &tokio::net::TcpListener, tls: &Option<TlsConfig>) -> Result<String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(format!("{scheme}://{}", listener.local_addr()?))
}

/// The web's state with the UPI product plugged in (its dashboard and ingest metrics).
pub async fn app_state(g: &Global, pool: sqlx::PgPool) -> Result<upiflow_web::AppState> {
    Ok(upiflow_web::AppState::new(pool)
        .await?
        .with_product(upiflow_tasks::upi::product::UpiProduct::shared())
        .with_process(upiflow_web::ProcessSettings {
            dags_folder: g.dags_folder.clone(),
            home: g.data_dir.clone(),
            kafka_bootstrap_servers: g.kafka_bootstrap_servers.clone(),
        }))
}

pub async fn web(g: &Global, a: WebArgs) -> Result<ExitCode> {
    // Bad certificate files are refused before anything connects or listens.
    let tls = a.transport.tls()?;
    let pool = connect(g).await?;
    let state = app_state(g, pool)
        .await?
        .with_transport(a.transport.transport());
    let stop = tokio_util::sync::CancellationToken::new();
    super::serve::cancel_on_signal(stop.clone());
    let listener = upiflow_web::listen(a.bind).await?;
    eprintln!("upiflow web: {}", url(&listener, &tls)?);
    serve(listener, tls, state, stop).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user of the web UI and API (an existing name is an error).
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List the users and their roles.
    List,
    /// Delete a user (never the last admin).
    Delete {
        #[arg(long)]
        username: String,
    },
    /// Set a user's password.
    SetPassword {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
    },
    /// Set a user's role (never taking the last admin's away).
    SetRole {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

/// Airflow's roles (what each may do: README's table, `upiflow_web::roles`).
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Everything, connections included.
    Admin,
    /// Trigger, clear, mark, pause, backfill; pools and variables.
    Op,
    /// Trigger, clear and mark DAG runs and task instances.
    User,
    /// Read only.
    Viewer,
}

impl RoleArg {
    pub fn role(self) -> Role {
        match self {
            RoleArg::Admin => Role::Admin,
            RoleArg::Op => Role::Op,
            RoleArg::User => Role::User,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

pub async fn users(g: &Global, c: UsersCommand) -> Result<ExitCode> {
    // Audit rows never carry a password.
    match c {
        UsersCommand::Create {
            username,
            password,
            role,
        } => {
            let role = role.role();
            super::Audit::new("cli_users_create")
                .extra("username", username.as_str())
                .extra("role", role.name())
                .around(g, async {
                    let pool = connect(g).await?;
                    auth::create_user(&pool, &username, &password, role)
                        .await
                        .map_err(|e| anyhow!(e))?;
                    println!("user `{username}` created ({})", role.name());
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        UsersCommand::List => {
            let pool = connect(g).await?;
            let rows = auth::list_users(&pool).await.map_err(|e| anyhow!(e))?;
            let mut t = super::table(&["username", "role", "created"]);
            for u in &rows {
                t.add_row(vec![
                    u.username.clone(),
                    u.role.name().to_string(),
                    super::fmt_time(Some(u.created_at)),
                ]);
            }
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Delete { username } => {
            super::Audit::new("cli_users_delete")
                .extra("username", username.as_str())
                .around(g, async {
                    let pool = connect(g).await?;
                    auth::delete_user(&pool, &username)
                        .await
                        .map_err(|e| anyhow!(e))?;
                    println!("user `{username}` deleted");
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        UsersCommand::SetPassword { username, password } => {
            super::Audit::new("cli_users_set_password")
                .extra("username", username.as_str())
                .around(g, async {
                    let pool = connect(g).await?;
                    auth::set_password(&pool, &username, &password)
                        .await
                        .map_err(|e| anyhow!(e))?;
                    println!("password of `{username}` changed");
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        UsersCommand::SetRole { username, role } => {
            let role = role.role();
            super::Audit::new("cli_users_set_role")
                .extra("username", username.as_str())
                .extra("role", role.name())
                .around(g, async {
                    let pool = connect(g).await?;
                    auth::set_role(&pool, &username, role)
                        .await
                        .map_err(|e| anyhow!(e))?;
                    println!("`{username}` is now {}", role.name());
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
    }
}
