//! `upiflow tokens create|list|revoke`: API keys for machines (`upiflow_web::api_keys`).

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use upiflow_web::api_keys;

use super::connect;
use super::web::RoleArg;
use crate::Global;

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Make an API key (a bearer token for a machine, e.g. a Prometheus scraper); the key is
    /// printed once and only its hash is kept.
    Create {
        /// 1-64 letters, digits, `_`, `-` or `.`; it owns what the key does in the audit log.
        #[arg(long)]
        name: String,
        /// What the key may do, as a user of that role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// How long the key is valid (`90d`, `12h`, `30m`); left out, until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Every key made (revoked ones too), never the keys themselves.
    List,
    /// Revoke a name's key: its next request, to any web process, is refused.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

pub async fn run(g: &Global, c: TokensCommand) -> Result<ExitCode> {
    // Audit rows carry the name and role, never the key.
    match c {
        TokensCommand::Create {
            name,
            role,
            expires_in,
        } => {
            let role = role.role();
            let mut audit = super::Audit::new("cli_tokens_create")
                .extra("name", name.as_str())
                .extra("role", role.name());
            if let Some(e) = &expires_in {
                audit = audit.extra("expires_in", e.as_str());
            }
            audit
                .around(g, async {
                    let expires_in = expires_in.as_deref().map(parse_expiry).transpose()?;
                    let pool = connect(g).await?;
                    let key =
                        api_keys::create(&pool, &name, role, &super::os_user(), expires_in).await?;
                    eprintln!(
                        "API key `{name}` created ({}); it is shown this once, store it now:",
                        role.name()
                    );
                    println!("{key}");
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        TokensCommand::List => {
            super::rerun_on_transient("tokens list", async || list(g).await).await
        }
        TokensCommand::Revoke { name } => {
            super::Audit::new("cli_tokens_revoke")
                .extra("name", name.as_str())
                .around(g, async {
                    api_keys::check_name(&name)?;
                    let pool = connect(g).await?;
                    api_keys::revoke(&pool, &name).await?;
                    println!("API key `{name}` revoked");
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
    }
}

/// `--expires-in` as a duration (humantime's units: `90d`, `12h`, `1h 30m`, ...).
fn parse_expiry(text: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        anyhow!("--expires-in `{text}`: {e} (expected a duration such as 90d, 12h or 30m)")
    })
}

async fn list(g: &Global) -> Result<ExitCode> {
    let pool = connect(g).await?;
    let rows = api_keys::list(&pool).await?;
    let mut t = super::table(&[
        "name",
        "role",
        "created",
        "created_by",
        "last_used",
        "expires",
        "revoked",
    ]);
    for k in &rows {
        let mut expires = super::fmt_time(k.expires_at);
        if k.expired && k.revoked_at.is_none() {
            expires.push_str(" (expired)");
        }
        t.add_row(vec![
            k.name.clone(),
            k.role.name().to_string(),
            super::fmt_time(Some(k.created_at)),
            k.created_by.clone().unwrap_or_default(),
            super::fmt_time(k.last_used_at),
            expires,
            super::fmt_time(k.revoked_at),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
