//! `upiflow web` and `upiflow users create|list|delete|set-password|set-role`.

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

fn role_name(role: Role) -> &'static str {
    role.name()
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
                .extra("role", role_name(role))
                .around(g, async {
                    let pool = connect(g).await?;
                    auth::create_user(&pool, &username, &password, role)
                        .await
                        .map_err(|e| anyhow!(e))?;
                    println!("user `{username}` created ({})", role_name(role));
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
                    role_name(u.role).to_string(),
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
                .extra("role", role_name(role))
                .around(g, async {
                    let pool = connect(g).await?;
                    auth::set_role(&pool, &username, role)
                        .await
                        .map_err(|e| anyhow!(e))?;
                    println!("`{username}` is now {}", role_name(role));
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
    }
}
