//! `upiflow connections ...`, `upiflow variables ...` and the Fernet key (`db rotate-key`,
//! `db generate-key`, standalone's generated key), as Airflow's commands of those names.
//!
//! Output never shows a secret unless asked: passwords print as `***` (`connections get
//! --show-password` shows it), extra values and variable values under a sensitive key
//! (Airflow's list) print as `***` in lists.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};
use upiflow_engine::secrets::{
    self, Connection, FERNET_KEY_ENV, KeyRing, Masker, OnExisting, Secrets, StoredConnection,
    is_sensitive_key, masker_of,
};

use super::{Audit, connect, table};
use crate::Global;

/// Standalone's key file in the data directory.
pub const KEY_FILE: &str = "fernet.key";

/// When `UPIFLOW_FERNET_KEY` is unset, the data directory's key file (written by standalone)
/// becomes the process's key, so commands run beside a standalone encrypt as it does.
pub fn configure_key(g: &Global) -> Result<()> {
    if secrets::configured_key().is_some() {
        return Ok(());
    }
    let path = g.data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(k) => {
            secrets::set_process_key(k.trim().to_string());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// For standalone: without `UPIFLOW_FERNET_KEY`, uses the data directory's key file, creating
/// it (mode 0600) with a new key the first time. Returns the line to say on start.
pub fn ensure_standalone_key(data_dir: &Path) -> Result<String> {
    if std::env::var(FERNET_KEY_ENV).is_ok_and(|k| !k.trim().is_empty()) {
        return Ok(format!(
            "connections and variables are encrypted with the key in {FERNET_KEY_ENV}"
        ));
    }
    let path = data_dir.join(KEY_FILE);
    let generated = match std::fs::read_to_string(&path) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = KeyRing::generate_key();
            write_private(&path, format!("{key}\n").as_bytes(), true)?;
            true
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let key = std::fs::read_to_string(&path)?.trim().to_string();
    KeyRing::parse(&key).with_context(|| format!("{} holds no usable key", path.display()))?;
    secrets::set_process_key(key);
    Ok(if generated {
        format!(
            "generated a Fernet key into {} (mode 0600): connections and variables are encrypted with it; keep it, or set {FERNET_KEY_ENV} to use your own",
            path.display()
        )
    } else {
        format!(
            "connections and variables are encrypted with the Fernet key in {}",
            path.display()
        )
    })
}

/// Writes a file only its owner can read (`new`: it must not exist yet).
fn write_private(path: &Path, bytes: &[u8], new: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if new {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: make it private too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    Ok(())
}

async fn open(g: &Global) -> Result<Secrets> {
    Ok(Secrets::from_env(connect(g).await?)?)
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args, Clone)]
pub struct ConnFields {
    /// The connection as Airflow's URI, e.g. postgres://user:pass@host:5432/db?sslmode=require
    #[arg(long, alias = "conn-uri", conflicts_with_all = ["json", "conn_type", "host", "port", "login", "password", "schema", "extra"])]
    uri: Option<String>,
    /// The connection as Airflow's JSON form: {"conn_type": ..., "host": ..., ...}
    #[arg(long, alias = "conn-json", conflicts_with_all = ["conn_type", "host", "port", "login", "password", "schema", "extra"])]
    json: Option<String>,
    #[arg(long, alias = "conn-type")]
    conn_type: Option<String>,
    #[arg(long, alias = "conn-host")]
    host: Option<String>,
    /// 1-65535.
    #[arg(long, alias = "conn-port", allow_negative_numbers = true)]
    port: Option<i64>,
    #[arg(long, alias = "conn-login")]
    login: Option<String>,
    #[arg(long, alias = "conn-password")]
    password: Option<String>,
    /// The database (Airflow's name for it).
    #[arg(long, alias = "conn-schema")]
    schema: Option<String>,
    /// A JSON object.
    #[arg(long, alias = "conn-extra")]
    extra: Option<String>,
    #[arg(long, alias = "conn-description")]
    description: Option<String>,
}

#[derive(Subcommand, Clone)]
pub enum ConnectionsCommand {
    /// Create a connection from a URI (--uri), Airflow's JSON form (--json) or fields.
    Add {
        conn_id: String,
        #[command(flatten)]
        fields: Box<ConnFields>,
    },
    /// Every stored connection; passwords show as *** (and extra values under sensitive keys).
    List {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// One connection (the environment's UPIFLOW_CONN_/AIRFLOW_CONN_ first, then the
    /// database). The password shows as *** unless --show-password (Airflow shows it).
    Get {
        conn_id: String,
        #[arg(long)]
        show_password: bool,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a stored connection.
    Delete { conn_id: String },
    /// Open the connection and run SELECT 1 (Postgres-protocol connections).
    Test {
        conn_id: String,
        /// How long to wait for the server.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Import Airflow's connections JSON ({"ID": {"conn_type": ...}, ...}); every entry is
    /// checked first and a bad one imports nothing. Existing ids are skipped unless --overwrite.
    Import {
        file: PathBuf,
        #[arg(long)]
        overwrite: bool,
    },
    /// Write every stored connection as Airflow's JSON, passwords included (file mode 0600;
    /// `-` for stdout).
    Export { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExistingKey {
    Overwrite,
    Skip,
    Fail,
}

#[derive(Subcommand, Clone)]
pub enum VariablesCommand {
    /// Create a variable or replace its value.
    Set {
        key: String,
        value: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// A variable's value (the environment's UPIFLOW_VAR_/AIRFLOW_VAR_ first, then the
    /// database); exit 1 if there is none, unless --default.
    Get {
        key: String,
        #[arg(long, short)]
        default: Option<String>,
        /// Print the value as (pretty) JSON; an error if it is not JSON.
        #[arg(long, short = 'j')]
        deserialize_json: bool,
    },
    /// Every stored variable; values under sensitive keys show as ***.
    List {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a stored variable.
    Delete { key: String },
    /// Import a JSON object of variables, all or nothing.
    Import {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "overwrite")]
        action_on_existing_key: ExistingKey,
    },
    /// Write every stored variable as a JSON object (file mode 0600; `-` for stdout).
    Export { file: PathBuf },
}

/// A connection from the command's fields.
fn from_fields(conn_id: &str, f: ConnFields) -> Result<Connection> {
    let mut c = if let Some(uri) = &f.uri {
        Connection::from_uri(conn_id, uri)?
    } else if let Some(j) = &f.json {
        Connection::from_env_value(conn_id, j)?
    } else {
        let Some(conn_type) = f.conn_type.clone() else {
            bail!("give the connection as --uri URI, --json JSON or fields with --conn-type");
        };
        let mut o = Map::new();
        o.insert("conn_type".into(), json!(conn_type));
        for (k, v) in [
            ("host", &f.host),
            ("login", &f.login),
            ("password", &f.password),
            ("schema", &f.schema),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
        if let Some(p) = f.port {
            o.insert("port".into(), json!(p));
        }
        if let Some(e) = &f.extra {
            o.insert("extra".into(), json!(e));
        }
        Connection::from_json(conn_id, &Value::Object(o))?
    };
    if f.description.is_some() {
        c.description = f.description.filter(|d| !d.is_empty());
    }
    c.validate()?;
    Ok(c)
}

/// The extra with values under sensitive keys as `***`.
fn masked_extra(extra: &Map<String, Value>) -> Map<String, Value> {
    extra
        .iter()
        .map(|(k, v)| {
            let v = if is_sensitive_key(k) {
                json!("***")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn masked_json(c: &Connection) -> Value {
    let mut v = c.to_json();
    if c.password.is_some() {
        v["password"] = json!("***");
    }
    if !c.extra.is_empty() {
        v["extra"] = Value::Object(masked_extra(&c.extra));
    }
    v
}

pub async fn connections(g: &Global, c: ConnectionsCommand) -> Result<ExitCode> {
    match c {
        ConnectionsCommand::Add { conn_id, fields } => {
            // The id only: the fields may carry the password.
            let audit = Audit::new("cli_connections_add").extra("conn_id", conn_id.as_str());
            audit
                .around(g, async {
                    let conn = from_fields(&conn_id, *fields)?;
                    let s = open(g).await?;
                    let stored = s.add_connection(&conn).await?;
                    println!(
                        "connection {conn_id} added ({}): {}",
                        at_rest(&stored),
                        masker_of(&conn).mask(&conn.to_uri())
                    );
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        ConnectionsCommand::List { output } => {
            super::rerun_on_transient("connections list", async || list(g, output).await).await
        }
        ConnectionsCommand::Get {
            conn_id,
            show_password,
            output,
        } => {
            super::rerun_on_transient("connections get", async || {
                get(g, &conn_id, show_password, output).await
            })
            .await
        }
        ConnectionsCommand::Delete { conn_id } => {
            let audit = Audit::new("cli_connections_delete").extra("conn_id", conn_id.as_str());
            audit
                .around(g, async {
                    open(g).await?.delete_connection(&conn_id).await?;
                    println!("connection {conn_id} deleted");
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        ConnectionsCommand::Test { conn_id, timeout } => test(g, &conn_id, timeout).await,
        ConnectionsCommand::Import { file, overwrite } => {
            let audit = Audit::new("cli_connections_import")
                .extra("file", file.display().to_string())
                .extra("overwrite", overwrite);
            audit
                .around(g, async {
                    let text = read_import(&file)?;
                    let s = open(g).await?;
                    let on = if overwrite {
                        OnExisting::Overwrite
                    } else {
                        OnExisting::Skip
                    };
                    let done = s.import_connections(&text, on).await?;
                    report_import("connection", &done);
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        ConnectionsCommand::Export { file } => {
            check_json_path(&file)?;
            let v = open(g).await?.export_connections().await?;
            let n = v.as_object().map_or(0, Map::len);
            write_export(&file, &v)?;
            eprintln!("{n} connection(s) exported to {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn at_rest(s: &StoredConnection) -> String {
    let c = &s.connection;
    let mut parts = Vec::new();
    if c.password.is_some() {
        parts.push(("password", s.is_encrypted));
    }
    if !c.extra.is_empty() {
        parts.push(("extra", s.is_extra_encrypted));
    }
    match parts.as_slice() {
        [] => "no password or extra to encrypt".into(),
        ps if ps.iter().all(|(_, e)| *e) => {
            let names: Vec<&str> = ps.iter().map(|(n, _)| *n).collect();
            format!("{} encrypted", names.join(" and "))
        }
        _ => "stored unencrypted: no Fernet key is configured".into(),
    }
}

async fn list(g: &Global, output: Output) -> Result<ExitCode> {
    let s = open(g).await?;
    let (rows, _) = s.list_connections(&[], &[], i64::MAX, 0).await?;
    if output == Output::Json {
        let all: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut v = masked_json(&r.connection);
                v["conn_id"] = json!(r.connection.conn_id);
                v["is_encrypted"] = json!(r.is_encrypted);
                v["is_extra_encrypted"] = json!(r.is_extra_encrypted);
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "conn_id",
        "conn_type",
        "host",
        "port",
        "schema",
        "login",
        "password",
        "extra",
        "encrypted",
        "description",
    ]);
    for r in &rows {
        let c = &r.connection;
        t.add_row(vec![
            c.conn_id.clone(),
            c.conn_type.clone(),
            c.host.clone().unwrap_or_default(),
            c.port.map(|p| p.to_string()).unwrap_or_default(),
            c.schema.clone().unwrap_or_default(),
            c.login.clone().unwrap_or_default(),
            if c.password.is_some() { "***" } else { "" }.to_string(),
            if c.extra.is_empty() {
                String::new()
            } else {
                Value::Object(masked_extra(&c.extra)).to_string()
            },
            (r.is_encrypted || r.is_extra_encrypted).to_string(),
            c.description.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

async fn get(g: &Global, conn_id: &str, show_password: bool, output: Output) -> Result<ExitCode> {
    let (c, source) = match secrets::connection_from_env(conn_id)? {
        Some(c) => (c, "environment"),
        None => {
            let s = open(g).await?;
            match s.stored_connection(conn_id).await? {
                Some(st) => (st.connection, "database"),
                None => bail!(upiflow_engine::EngineError::ConnectionNotFound(
                    conn_id.to_string()
                )),
            }
        }
    };
    let masker = if show_password {
        Masker::default()
    } else {
        masker_of(&c)
    };
    if output == Output::Json {
        let mut v = if show_password {
            c.to_json()
        } else {
            masked_json(&c)
        };
        v["conn_id"] = json!(c.conn_id);
        v["source"] = json!(source);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let extra = if show_password {
        c.extra.clone()
    } else {
        masked_extra(&c.extra)
    };
    let password = match (&c.password, show_password) {
        (None, _) => String::new(),
        (Some(p), true) => p.clone(),
        (Some(_), false) => "***".into(),
    };
    let mut t = table(&["field", "value"]);
    for (k, v) in [
        ("conn_id", c.conn_id.clone()),
        ("conn_type", c.conn_type.clone()),
        ("description", c.description.clone().unwrap_or_default()),
        ("host", c.host.clone().unwrap_or_default()),
        ("schema", c.schema.clone().unwrap_or_default()),
        ("login", c.login.clone().unwrap_or_default()),
        ("password", password),
        ("port", c.port.map(|p| p.to_string()).unwrap_or_default()),
        (
            "extra",
            if extra.is_empty() {
                String::new()
            } else {
                Value::Object(extra).to_string()
            },
        ),
        ("uri", masker.mask(&c.to_uri()).into_owned()),
        ("source", source.to_string()),
    ] {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
    if !show_password && c.password.is_some() {
        eprintln!("(the password is masked; --show-password shows it)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn test(g: &Global, conn_id: &str, timeout: Duration) -> Result<ExitCode> {
    let c = match secrets::connection_from_env(conn_id)? {
        Some(c) => c,
        None => open(g).await?.get_connection(conn_id).await?.connection,
    };
    let r = c.test(timeout).await;
    if r.status {
        println!("connection {conn_id}: {}", r.message);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("connection {conn_id}: failed: {}", r.message);
        Ok(ExitCode::FAILURE)
    }
}

fn read_import(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Export files are JSON (Airflow also writes YAML and .env; upiflow only JSON).
fn check_json_path(file: &Path) -> Result<()> {
    match file.extension().and_then(|e| e.to_str()) {
        _ if file == Path::new("-") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("json") => Ok(()),
        _ => bail!(
            "{}: export files are JSON: name the file *.json (or `-` for stdout)",
            file.display()
        ),
    }
}

fn write_export(file: &Path, v: &Value) -> Result<()> {
    let text = format!("{}\n", serde_json::to_string_pretty(v)?);
    if file == Path::new("-") {
        print!("{text}");
        Ok(())
    } else {
        write_private(file, text.as_bytes(), false)
    }
}

fn report_import(what: &str, done: &secrets::Imported) {
    for id in &done.skipped {
        eprintln!("{what} {id} exists already: skipped");
    }
    println!(
        "{} {what}(s) imported: {} created, {} overwritten, {} skipped",
        done.created.len() + done.overwritten.len(),
        done.created.len(),
        done.overwritten.len(),
        done.skipped.len()
    );
}

pub async fn variables(g: &Global, c: VariablesCommand) -> Result<ExitCode> {
    match c {
        VariablesCommand::Set {
            key,
            value,
            description,
        } => {
            // The key only: values are never logged (Airflow masks them too).
            let audit = Audit::new("cli_variables_set").extra("key", key.as_str());
            audit
                .around(g, async {
                    let s = open(g).await?;
                    let (v, created) = s.set_variable(&key, &value, description.as_deref()).await?;
                    let how = if v.is_encrypted {
                        "encrypted"
                    } else {
                        "stored unencrypted: no Fernet key is configured"
                    };
                    let verb = if created { "created" } else { "set" };
                    println!("variable {key} {verb} ({how})");
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        VariablesCommand::Get {
            key,
            default,
            deserialize_json,
        } => {
            let value = match secrets::variable_from_env(&key) {
                Some(v) => Some(v),
                None => open(g).await?.stored_variable(&key).await?.map(|v| v.val),
            };
            let Some(value) = value.or(default) else {
                eprintln!("error: no variable `{key}` (in the environment or the database)");
                return Ok(ExitCode::FAILURE);
            };
            if deserialize_json {
                let v: Value = serde_json::from_str(&value)
                    .with_context(|| format!("variable `{key}` is not JSON"))?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        VariablesCommand::List { output } => {
            super::rerun_on_transient("variables list", async || list_variables(g, output).await)
                .await
        }
        VariablesCommand::Delete { key } => {
            let audit = Audit::new("cli_variables_delete").extra("key", key.as_str());
            audit
                .around(g, async {
                    open(g).await?.delete_variable(&key).await?;
                    println!("variable {key} deleted");
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        VariablesCommand::Import {
            file,
            action_on_existing_key,
        } => {
            let on = match action_on_existing_key {
                ExistingKey::Overwrite => OnExisting::Overwrite,
                ExistingKey::Skip => OnExisting::Skip,
                ExistingKey::Fail => OnExisting::Fail,
            };
            let audit = Audit::new("cli_variables_import")
                .extra("file", file.display().to_string())
                .extra("action_on_existing_key", format!("{on:?}").to_lowercase());
            audit
                .around(g, async {
                    let text = read_import(&file)?;
                    let done = open(g).await?.import_variables(&text, on).await?;
                    report_import("variable", &done);
                    Ok(ExitCode::SUCCESS)
                })
                .await
        }
        VariablesCommand::Export { file } => {
            check_json_path(&file)?;
            let v = open(g).await?.export_variables().await?;
            let n = v.as_object().map_or(0, Map::len);
            write_export(&file, &v)?;
            eprintln!("{n} variable(s) exported to {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list_variables(g: &Global, output: Output) -> Result<ExitCode> {
    let s = open(g).await?;
    let (rows, _) = s.list_variables(&[], &[], i64::MAX, 0).await?;
    let shown = |key: &str, val: &str| {
        if is_sensitive_key(key) {
            "***".to_string()
        } else {
            val.to_string()
        }
    };
    if output == Output::Json {
        let all: Vec<Value> = rows
            .iter()
            .map(|v| {
                json!({"key": v.key, "value": shown(&v.key, &v.val),
                       "description": v.description, "is_encrypted": v.is_encrypted})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["key", "value", "encrypted", "description"]);
    for v in &rows {
        t.add_row(vec![
            v.key.clone(),
            shown(&v.key, &v.val),
            v.is_encrypted.to_string(),
            v.description.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// `upiflow db rotate-key`: re-encrypts everything with the first key of the list.
pub async fn rotate_key(g: &Global) -> Result<ExitCode> {
    Audit::new("cli_rotate_fernet_key")
        .around(g, async {
            let s = open(g).await?;
            let done = s.rotate_key().await?;
            println!(
                "re-encrypted {} connection(s) and {} variable(s) with the first key of {FERNET_KEY_ENV} ({} value(s) were unencrypted before); the other keys can now be dropped from the list",
                done.connections, done.variables, done.newly_encrypted
            );
            Ok(ExitCode::SUCCESS)
        })
        .await
}

/// `upiflow db generate-key`: a new Fernet key for `UPIFLOW_FERNET_KEY`.
pub fn generate_key() -> Result<ExitCode> {
    println!("{}", KeyRing::generate_key());
    Ok(ExitCode::SUCCESS)
}
