//! Connections and variables in the database: the rules for what may be stored, the
//! encryption on the way in and out, and the operations the CLI and the API share (list, get,
//! add, put, patch, delete, import, export, rotate-key). SQL is `crate::store::secrets`'.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::connection::{check_conn_id, parse_extra};
use super::crypt::{KeyRing, open, seal};
use super::{Connection, Secrets};
use crate::error::{EngineError, Result};
use crate::store::filters::TextMatch;
use crate::store::secrets::{self as store, ConnOrder, ConnRow, VarOrder, VarRow};
use crate::transient::retry;

/// The longest variable key (Airflow's `ID_LEN`).
pub const VAR_KEY_MAX_LEN: usize = 250;

/// Refuses a variable key the table would not hold (or a terminal would garble).
pub fn check_var_key(key: &str) -> Result<()> {
    if (1..=VAR_KEY_MAX_LEN).contains(&key.chars().count()) && !key.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(EngineError::VariableKeyInvalid(key.to_string()))
    }
}

/// A stored connection, decrypted, with how it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnection {
    pub connection: Connection,
    /// Whether the password is encrypted at rest.
    pub is_encrypted: bool,
    /// Whether the extra is encrypted at rest.
    pub is_extra_encrypted: bool,
    pub updated_at: DateTime<Utc>,
}

/// A stored variable, decrypted, with how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVariable {
    pub key: String,
    /// The text as set (JSON values as their text).
    pub val: String,
    pub description: Option<String>,
    pub is_encrypted: bool,
    pub updated_at: DateTime<Utc>,
}

/// What happens to an import entry whose id or key exists already (Airflow's
/// `--action-on-existing-key` / `--overwrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExisting {
    Overwrite,
    Skip,
    /// The whole import fails and nothing is written.
    Fail,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub created: Vec<String>,
    pub overwritten: Vec<String>,
    pub skipped: Vec<String>,
}

/// What `rotate-key` re-encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotated {
    pub connections: usize,
    pub variables: usize,
    /// Of those, values that were stored unencrypted before (no key was configured).
    pub newly_encrypted: usize,
}

fn what_password(id: &str) -> String {
    format!("connection `{id}`'s password")
}
fn what_extra(id: &str) -> String {
    format!("connection `{id}`'s extra")
}
fn what_var(key: &str) -> String {
    format!("variable `{key}`")
}

/// The row for a connection: its rules checked, password and extra sealed.
fn to_row(keys: Option<&KeyRing>, c: &Connection) -> Result<ConnRow> {
    c.validate()?;
    let (password, is_encrypted) = match &c.password {
        Some(p) => {
            let (t, e) = seal(keys, p);
            (Some(t), e)
        }
        None => (None, false),
    };
    let (extra, is_extra_encrypted) = if c.extra.is_empty() {
        (None, false)
    } else {
        let (t, e) = seal(keys, &Value::Object(c.extra.clone()).to_string());
        (Some(t), e)
    };
    Ok(ConnRow {
        conn_id: c.conn_id.clone(),
        conn_type: c.conn_type.clone(),
        description: c.description.clone(),
        host: c.host.clone(),
        schema: c.schema.clone(),
        login: c.login.clone(),
        password,
        port: c.port.map(i32::from),
        extra,
        is_encrypted,
        is_extra_encrypted,
        updated_at: Utc::now(),
    })
}

/// The connection of a row, decrypted.
fn from_row(keys: Option<&KeyRing>, r: ConnRow) -> Result<StoredConnection> {
    let id = &r.conn_id;
    let password = r
        .password
        .as_deref()
        .map(|p| open(keys, p, r.is_encrypted, &what_password(id)))
        .transpose()?;
    let extra = match r.extra.as_deref() {
        None | Some("") => Map::new(),
        Some(x) => parse_extra(id, &open(keys, x, r.is_extra_encrypted, &what_extra(id))?)?,
    };
    let port = r
        .port
        .map(|p| super::connection::check_port(id, i64::from(p)))
        .transpose()?;
    Ok(StoredConnection {
        connection: Connection {
            conn_id: r.conn_id.clone(),
            conn_type: r.conn_type,
            description: r.description,
            host: r.host,
            schema: r.schema,
            login: r.login,
            password,
            port,
            extra,
        },
        is_encrypted: r.is_encrypted,
        is_extra_encrypted: r.is_extra_encrypted,
        updated_at: r.updated_at,
    })
}

fn var_from_row(keys: Option<&KeyRing>, r: VarRow) -> Result<StoredVariable> {
    let val = open(keys, &r.val, r.is_encrypted, &what_var(&r.key))?;
    Ok(StoredVariable {
        key: r.key,
        val,
        description: r.description,
        is_encrypted: r.is_encrypted,
        updated_at: r.updated_at,
    })
}

/// An import file's text as a JSON object, or why not.
fn import_object(text: &str, what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EngineError::ImportInvalid(format!(
            "a {what} file must hold one JSON object"
        ))),
        Err(e) => Err(EngineError::ImportInvalid(format!(
            "the {what} file is not JSON: {e}"
        ))),
    }
}

impl Secrets {
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    /// The stored connection (the database only, not the environment).
    pub async fn stored_connection(&self, conn_id: &str) -> Result<Option<StoredConnection>> {
        check_conn_id(conn_id)?;
        let row = retry("get connection", || async {
            store::get_connection(&mut *self.conn().await?, conn_id, false).await
        })
        .await?;
        row.map(|r| from_row(self.keys(), r)).transpose()
    }

    /// Like [`Secrets::stored_connection`], an error if there is none.
    pub async fn get_connection(&self, conn_id: &str) -> Result<StoredConnection> {
        self.stored_connection(conn_id)
            .await?
            .ok_or_else(|| EngineError::ConnectionNotFound(conn_id.to_string()))
    }

    pub(super) async fn db_connection(&self, conn_id: &str) -> Result<Option<Connection>> {
        Ok(self.stored_connection(conn_id).await?.map(|s| s.connection))
    }

    /// One page of stored connections, decrypted, and how many match in all.
    pub async fn list_connections(
        &self,
        id_matches: &[TextMatch],
        order: &[(ConnOrder, bool)],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredConnection>, i64)> {
        let (rows, total) = retry("list connections", || async {
            store::list_connections(&mut *self.conn().await?, id_matches, order, limit, offset)
                .await
        })
        .await?;
        let list = rows
            .into_iter()
            .map(|r| from_row(self.keys(), r))
            .collect::<Result<_>>()?;
        Ok((list, total))
    }

    /// How many connections are stored.
    pub async fn count_connections(&self) -> Result<i64> {
        retry("count connections", || async {
            store::count_connections(&mut *self.conn().await?).await
        })
        .await
    }

    /// Creates a connection; an error if one of that id exists.
    pub async fn add_connection(&self, c: &Connection) -> Result<StoredConnection> {
        let row = to_row(self.keys(), c)?;
        let stored = retry("add connection", || async {
            store::insert_connection(&mut *self.conn().await?, &row).await
        })
        .await?
        .ok_or_else(|| EngineError::ConnectionExists(c.conn_id.clone()))?;
        from_row(self.keys(), stored)
    }

    /// Creates the connection or replaces the one of its id; whether it was created.
    pub async fn put_connection(&self, c: &Connection) -> Result<(StoredConnection, bool)> {
        let row = to_row(self.keys(), c)?;
        let (stored, created) = retry("put connection", || async {
            let mut tx = self.pool.begin().await?;
            let out = store::upsert_connection(&mut tx, &row).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await?;
        Ok((from_row(self.keys(), stored)?, created))
    }

    /// Changes a stored connection in one transaction: `change` gets it decrypted and may
    /// change any field but its id; the result is checked and sealed again.
    pub async fn patch_connection(
        &self,
        conn_id: &str,
        change: &(dyn Fn(&mut Connection) -> Result<()> + Sync),
    ) -> Result<StoredConnection> {
        check_conn_id(conn_id)?;
        let row = retry("patch connection", || async {
            let mut tx = self.pool.begin().await?;
            let Some(row) = store::get_connection(&mut tx, conn_id, true).await? else {
                return Err(EngineError::ConnectionNotFound(conn_id.to_string()));
            };
            let mut c = from_row(self.keys(), row)?.connection;
            change(&mut c)?;
            if c.conn_id != conn_id {
                return Err(EngineError::ConnInvalid {
                    conn_id: conn_id.to_string(),
                    reason: "a patch cannot change the connection id".into(),
                });
            }
            let row = store::update_connection(&mut tx, &to_row(self.keys(), &c)?)
                .await?
                .expect("locked above");
            tx.commit().await?;
            Ok(row)
        })
        .await?;
        from_row(self.keys(), row)
    }

    /// Deletes a stored connection; an error if there is none.
    pub async fn delete_connection(&self, conn_id: &str) -> Result<()> {
        check_conn_id(conn_id)?;
        let deleted = retry("delete connection", || async {
            store::delete_connection(&mut *self.conn().await?, conn_id).await
        })
        .await?;
        if deleted {
            Ok(())
        } else {
            Err(EngineError::ConnectionNotFound(conn_id.to_string()))
        }
    }

    /// Imports Airflow's connections JSON (`{"ID": {"conn_type": ..., ...}, ...}`, as
    /// `airflow connections export` writes it) in one transaction: every entry is checked
    /// first, and a bad one writes nothing.
    pub async fn import_connections(
        &self,
        text: &str,
        on_existing: OnExisting,
    ) -> Result<Imported> {
        let entries = import_object(text, "connections")?;
        let mut rows = Vec::with_capacity(entries.len());
        for (id, v) in &entries {
            let c = Connection::from_json(id, v)
                .map_err(|e| EngineError::ImportInvalid(format!("entry `{id}`: {e}")))?;
            rows.push(
                to_row(self.keys(), &c)
                    .map_err(|e| EngineError::ImportInvalid(format!("entry `{id}`: {e}")))?,
            );
        }
        retry("import connections", || async {
            let mut tx = self.pool.begin().await?;
            let mut done = Imported::default();
            for row in &rows {
                let exists = store::get_connection(&mut tx, &row.conn_id, true)
                    .await?
                    .is_some();
                match (exists, on_existing) {
                    (false, _) => {
                        store::upsert_connection(&mut tx, row).await?;
                        done.created.push(row.conn_id.clone());
                    }
                    (true, OnExisting::Overwrite) => {
                        store::upsert_connection(&mut tx, row).await?;
                        done.overwritten.push(row.conn_id.clone());
                    }
                    (true, OnExisting::Skip) => done.skipped.push(row.conn_id.clone()),
                    (true, OnExisting::Fail) => {
                        return Err(EngineError::ImportInvalid(format!(
                            "connection `{}` already exists",
                            row.conn_id
                        )));
                    }
                }
            }
            tx.commit().await?;
            Ok(done)
        })
        .await
    }

    /// Every stored connection in Airflow's export form (`{"ID": {...}}`), decrypted.
    pub async fn export_connections(&self) -> Result<Value> {
        let rows = retry("export connections", || async {
            store::all_connections(&mut *self.conn().await?, false).await
        })
        .await?;
        let mut out = Map::new();
        for r in rows {
            let c = from_row(self.keys(), r)?.connection;
            out.insert(c.conn_id.clone(), c.to_json());
        }
        Ok(Value::Object(out))
    }

    /// The stored variable (the database only).
    pub async fn stored_variable(&self, key: &str) -> Result<Option<StoredVariable>> {
        check_var_key(key)?;
        let row = retry("get variable", || async {
            store::get_variable(&mut *self.conn().await?, key, false).await
        })
        .await?;
        row.map(|r| var_from_row(self.keys(), r)).transpose()
    }

    /// Like [`Secrets::stored_variable`], an error if there is none.
    pub async fn get_variable(&self, key: &str) -> Result<StoredVariable> {
        self.stored_variable(key)
            .await?
            .ok_or_else(|| EngineError::VariableNotFound(key.to_string()))
    }

    /// One page of stored variables, decrypted, and how many match in all.
    pub async fn list_variables(
        &self,
        key_matches: &[TextMatch],
        order: &[(VarOrder, bool)],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredVariable>, i64)> {
        let (rows, total) = retry("list variables", || async {
            store::list_variables(&mut *self.conn().await?, key_matches, order, limit, offset).await
        })
        .await?;
        let list = rows
            .into_iter()
            .map(|r| var_from_row(self.keys(), r))
            .collect::<Result<_>>()?;
        Ok((list, total))
    }

    /// How many variables are stored.
    pub async fn count_variables(&self) -> Result<i64> {
        retry("count variables", || async {
            store::count_variables(&mut *self.conn().await?).await
        })
        .await
    }

    /// Sets a variable (creating it or replacing its value and description); whether it was
    /// created.
    pub async fn set_variable(
        &self,
        key: &str,
        val: &str,
        description: Option<&str>,
    ) -> Result<(StoredVariable, bool)> {
        check_var_key(key)?;
        let (sealed, enc) = seal(self.keys(), val);
        let (row, created) = retry("set variable", || async {
            store::upsert_variable(&mut *self.conn().await?, key, &sealed, description, enc).await
        })
        .await?;
        Ok((var_from_row(self.keys(), row)?, created))
    }

    /// Creates a variable; an error if one of that key exists.
    pub async fn add_variable(
        &self,
        key: &str,
        val: &str,
        description: Option<&str>,
    ) -> Result<StoredVariable> {
        check_var_key(key)?;
        let (sealed, enc) = seal(self.keys(), val);
        let row = retry("add variable", || async {
            store::insert_variable(&mut *self.conn().await?, key, &sealed, description, enc).await
        })
        .await?
        .ok_or_else(|| EngineError::VariableExists(key.to_string()))?;
        var_from_row(self.keys(), row)
    }

    /// Changes a stored variable in one transaction: `change` gets its value and description.
    pub async fn patch_variable(
        &self,
        key: &str,
        change: &(dyn Fn(&mut String, &mut Option<String>) -> Result<()> + Sync),
    ) -> Result<StoredVariable> {
        check_var_key(key)?;
        let row = retry("patch variable", || async {
            let mut tx = self.pool.begin().await?;
            let Some(row) = store::get_variable(&mut tx, key, true).await? else {
                return Err(EngineError::VariableNotFound(key.to_string()));
            };
            let mut v = var_from_row(self.keys(), row)?;
            change(&mut v.val, &mut v.description)?;
            let (sealed, enc) = seal(self.keys(), &v.val);
            let (row, _) =
                store::upsert_variable(&mut tx, key, &sealed, v.description.as_deref(), enc)
                    .await?;
            tx.commit().await?;
            Ok(row)
        })
        .await?;
        var_from_row(self.keys(), row)
    }

    /// Deletes a stored variable; an error if there is none.
    pub async fn delete_variable(&self, key: &str) -> Result<()> {
        check_var_key(key)?;
        let deleted = retry("delete variable", || async {
            store::delete_variable(&mut *self.conn().await?, key).await
        })
        .await?;
        if deleted {
            Ok(())
        } else {
            Err(EngineError::VariableNotFound(key.to_string()))
        }
    }

    /// Imports a variables file, as Airflow's `variables import`: one JSON object of
    /// `"KEY": VALUE` (text stored as is, any other JSON as its text) or
    /// `"KEY": {"value": VALUE, "description": "..."}`. All or nothing: every entry is checked
    /// first and the whole import is one transaction.
    pub async fn import_variables(&self, text: &str, on_existing: OnExisting) -> Result<Imported> {
        let entries = import_object(text, "variables")?;
        let mut vars = Vec::with_capacity(entries.len());
        for (key, v) in &entries {
            check_var_key(key).map_err(|e| EngineError::ImportInvalid(e.to_string()))?;
            let (value, description) = match v {
                Value::Object(o) if o.contains_key("value") => {
                    if let Some(k) = o.keys().find(|k| *k != "value" && *k != "description") {
                        return Err(EngineError::ImportInvalid(format!(
                            "entry `{key}`: unknown field `{k}` (an entry is a value or {{\"value\": ..., \"description\": ...}})"
                        )));
                    }
                    let d = match o.get("description") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => {
                            return Err(EngineError::ImportInvalid(format!(
                                "entry `{key}`: the description must be text, not {other}"
                            )));
                        }
                    };
                    (&o["value"], d)
                }
                other => (other, None),
            };
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => {
                    return Err(EngineError::ImportInvalid(format!(
                        "entry `{key}`: the value is null"
                    )));
                }
                other => other.to_string(),
            };
            let (sealed, enc) = seal(self.keys(), &text);
            vars.push((key.clone(), sealed, description, enc));
        }
        retry("import variables", || async {
            let mut tx = self.pool.begin().await?;
            let mut done = Imported::default();
            for (key, val, description, enc) in &vars {
                let exists = store::get_variable(&mut tx, key, true).await?.is_some();
                match (exists, on_existing) {
                    (true, OnExisting::Skip) => {
                        done.skipped.push(key.clone());
                        continue;
                    }
                    (true, OnExisting::Fail) => {
                        return Err(EngineError::ImportInvalid(format!(
                            "variable `{key}` already exists"
                        )));
                    }
                    (true, OnExisting::Overwrite) => done.overwritten.push(key.clone()),
                    (false, _) => done.created.push(key.clone()),
                }
                store::upsert_variable(&mut tx, key, val, description.as_deref(), *enc).await?;
            }
            tx.commit().await?;
            Ok(done)
        })
        .await
    }

    /// Every stored variable in Airflow's export form: `"KEY": VALUE` (a JSON value where the
    /// text is JSON, else the text), `{"value": ..., "description": ...}` when described.
    pub async fn export_variables(&self) -> Result<Value> {
        let rows = retry("export variables", || async {
            store::all_variables(&mut *self.conn().await?, false).await
        })
        .await?;
        let mut out = Map::new();
        for r in rows {
            let v = var_from_row(self.keys(), r)?;
            let val = serde_json::from_str::<Value>(&v.val).unwrap_or(Value::String(v.val));
            let entry = match v.description {
                Some(d) => serde_json::json!({"value": val, "description": d}),
                None => val,
            };
            out.insert(v.key, entry);
        }
        Ok(Value::Object(out))
    }

    /// Re-encrypts every stored password, extra and variable value with the first key (as
    /// `airflow rotate-fernet-key`), in one transaction; values stored unencrypted (before a
    /// key was configured) are encrypted too. Needs a key; a value no key decrypts fails the
    /// whole rotation, naming it, and nothing changes.
    pub async fn rotate_key(&self) -> Result<Rotated> {
        let Some(keys) = self.keys() else {
            return Err(EngineError::FernetKeyInvalid(
                "rotate-key needs the key list: set UPIFLOW_FERNET_KEY=NEW_KEY,OLD_KEY".into(),
            ));
        };
        retry("rotate key", || async {
            let mut tx = self.pool.begin().await?;
            let done = rotate_in(&mut tx, keys).await?;
            tx.commit().await?;
            Ok(done)
        })
        .await
    }
}

async fn rotate_in(tx: &mut PgConnection, keys: &KeyRing) -> Result<Rotated> {
    let mut done = Rotated::default();
    for row in store::all_connections(&mut *tx, true).await? {
        let plain_before = (row.password.is_some() && !row.is_encrypted)
            || (row.extra.is_some() && !row.is_extra_encrypted);
        let c = from_row(Some(keys), row)?.connection;
        store::update_connection(&mut *tx, &to_row(Some(keys), &c)?).await?;
        done.connections += 1;
        done.newly_encrypted += usize::from(plain_before);
    }
    for row in store::all_variables(&mut *tx, true).await? {
        let plain_before = !row.is_encrypted;
        let v = var_from_row(Some(keys), row)?;
        let (sealed, enc) = seal(Some(keys), &v.val);
        store::upsert_variable(&mut *tx, &v.key, &sealed, v.description.as_deref(), enc).await?;
        done.variables += 1;
        done.newly_encrypted += usize::from(plain_before);
    }
    Ok(done)
}
