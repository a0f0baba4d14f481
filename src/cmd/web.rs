//! `upiflow web` and `upiflow users create`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use upiflow_web::auth::{self, Role};

use super::connect;
use crate::Global;

#[derive(Args)]
pub struct WebArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
}

/// The web's state with the UPI product plugged in (its dashboard and ingest metrics).
pub async fn app_state(pool: sqlx::PgPool) -> Result<upiflow_web::AppState> {
    Ok(upiflow_web::AppState::new(pool)
        .await?
        .with_product(upiflow_tasks::upi::product::UpiProduct::shared()))
}

pub async fn web(g: &Global, a: WebArgs) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let state = app_state(pool).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    super::serve::cancel_on_signal(stop.clone());
    let listener = upiflow_web::listen(a.bind).await?;
    eprintln!("upiflow web: http://{}", listener.local_addr()?);
    upiflow_web::serve(listener, state, async move { stop.cancelled().await }).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create (or update) a user of the web UI and API.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Viewer,
}

pub async fn users(g: &Global, c: UsersCommand) -> Result<ExitCode> {
    let UsersCommand::Create {
        username,
        password,
        role,
    } = c;
    let role = match role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Viewer => Role::Viewer,
    };
    // Never the password.
    super::Audit::new("cli_users_create")
        .extra("username", username.as_str())
        .extra("role", format!("{role:?}").to_lowercase())
        .around(g, async {
            let pool = connect(g).await?;
            auth::create_user(&pool, &username, &password, role)
                .await
                .map_err(|e| anyhow!(e))?;
            println!("user `{username}` saved");
            Ok(ExitCode::SUCCESS)
        })
        .await
}
