//! Connections and variables (Airflow's), as tasks see them: the environment first
//! (`UPIFLOW_CONN_<ID>`, then `AIRFLOW_CONN_<ID>`; `UPIFLOW_VAR_<KEY>`, then
//! `AIRFLOW_VAR_<KEY>`), then the database, where passwords, extras and variable values are
//! encrypted with Fernet (`UPIFLOW_FERNET_KEY`, a comma-separated key list as Airflow's
//! `MultiFernet`). Also which values are secret and how text is masked ([`mask`]).
//!
//! The module owns the rules for what may be stored (ids, ports, extras) and the encryption;
//! `crate::store::secrets` holds the SQL only and sees ciphertext.

mod connection;
pub mod crypt;
mod db;
pub mod mask;
mod probe;

pub use crate::store::secrets::{ConnOrder, VarOrder};
pub use connection::{CONN_ID_MAX_LEN, Connection, check_conn_id, valid_conn_id};
pub use crypt::{FERNET_KEY_ENV, KeyRing};
pub use db::{
    Imported, OnExisting, Rotated, StoredConnection, StoredVariable, VAR_KEY_MAX_LEN, check_var_key,
};
pub use mask::{Masker, is_sensitive_key};
pub use probe::{TestResult, masker_of};

use sqlx::PgPool;

use crate::error::{EngineError, Result};

/// Environment prefixes of connections, upiflow's first (Airflow's `AIRFLOW_CONN_`).
pub const CONN_ENV_PREFIXES: [&str; 2] = ["UPIFLOW_CONN_", "AIRFLOW_CONN_"];
/// Environment prefixes of variables, upiflow's first (Airflow's `AIRFLOW_VAR_`).
pub const VAR_ENV_PREFIXES: [&str; 2] = ["UPIFLOW_VAR_", "AIRFLOW_VAR_"];

/// The first set variable of `prefixes` + `name` upper-cased (Airflow's rule) in `env`, and
/// the variable's name.
fn env_lookup(
    env: &dyn Fn(&str) -> Option<String>,
    prefixes: &[&str],
    name: &str,
) -> Option<(String, String)> {
    let upper = name.to_uppercase();
    prefixes.iter().find_map(|p| {
        let var = format!("{p}{upper}");
        env(&var).map(|v| (var, v))
    })
}

fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// The connection the environment defines for `conn_id`, if any (an error if its value does
/// not parse: a misconfigured override must not fall through to the database silently).
pub fn connection_from_env(conn_id: &str) -> Result<Option<Connection>> {
    connection_in(&process_env, conn_id)
}

fn connection_in(
    env: &dyn Fn(&str) -> Option<String>,
    conn_id: &str,
) -> Result<Option<Connection>> {
    let Some((var, value)) = env_lookup(env, &CONN_ENV_PREFIXES, conn_id) else {
        return Ok(None);
    };
    Connection::from_env_value(conn_id, &value)
        .map(Some)
        .map_err(|e| EngineError::ConnInvalid {
            conn_id: conn_id.to_string(),
            reason: format!("environment variable {var}: {e}"),
        })
}

/// The variable the environment defines for `key`, if any.
pub fn variable_from_env(key: &str) -> Option<String> {
    env_lookup(&process_env, &VAR_ENV_PREFIXES, key).map(|(_, v)| v)
}

static PROCESS_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the key list [`Secrets::from_env`] uses when `UPIFLOW_FERNET_KEY` is unset (the
/// binary's way to pass standalone's generated key to every part of the process without
/// changing its environment). The first call wins; whether this one did.
pub fn set_process_key(list: String) -> bool {
    PROCESS_KEY.set(list).is_ok()
}

/// The key list in effect: `UPIFLOW_FERNET_KEY` if set and not blank, else the process key.
pub fn configured_key() -> Option<String> {
    std::env::var(FERNET_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .or_else(|| PROCESS_KEY.get().cloned())
}

/// Connections and variables as tasks see them (see the module doc). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Secrets {
    pool: PgPool,
    keys: Option<KeyRing>,
}

impl Secrets {
    /// `fernet_key`: the comma-separated key list, `None` (or blank) when no key is configured
    /// (values are then stored unencrypted and flagged so, as Airflow does).
    pub fn new(pool: PgPool, fernet_key: Option<String>) -> Result<Secrets> {
        let keys = match fernet_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(list) => Some(KeyRing::parse(list)?),
        };
        Ok(Secrets { pool, keys })
    }

    /// Reads the key list from `UPIFLOW_FERNET_KEY`, or when that is unset or blank, the
    /// key the binary set for the process with [`set_process_key`] (standalone's generated
    /// key), so every part of one process encrypts alike.
    pub fn from_env(pool: PgPool) -> Result<Secrets> {
        Secrets::new(pool, configured_key())
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The configured keys, if any.
    pub fn keys(&self) -> Option<&KeyRing> {
        self.keys.as_ref()
    }

    /// Registers the configured Fernet keys with `masker` (a key must never show in a log).
    pub fn mask_keys(&self, masker: &mut Masker) {
        if let Some(k) = &self.keys {
            for key in k.raw() {
                masker.add(key);
            }
        }
    }

    /// Whether a connection exists in the environment (for validate without a database).
    pub fn connection_in_env(conn_id: &str) -> bool {
        env_lookup(&process_env, &CONN_ENV_PREFIXES, conn_id).is_some()
    }

    /// The connection: from the environment if it defines one, else from the database
    /// (decrypted).
    pub async fn connection(&self, conn_id: &str) -> Result<Option<Connection>> {
        check_conn_id(conn_id)?;
        if let Some(c) = connection_from_env(conn_id)? {
            return Ok(Some(c));
        }
        self.db_connection(conn_id).await
    }

    /// The variable's text (JSON values as text): from the environment if it defines one,
    /// else from the database (decrypted).
    pub async fn variable(&self, key: &str) -> Result<Option<String>> {
        check_var_key(key)?;
        if let Some(v) = variable_from_env(key) {
            return Ok(Some(v));
        }
        Ok(self.stored_variable(key).await?.map(|v| v.val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn upiflow_conn_wins_over_airflow_conn_and_ids_are_upper_cased() {
        let e = env(&[
            ("AIRFLOW_CONN_A", "postgres://a@h1/db"),
            ("AIRFLOW_CONN_MY_B", "postgres://b@h2/db"),
            (
                "UPIFLOW_CONN_MY_B",
                r#"{"conn_type": "http", "host": "h3"}"#,
            ),
        ]);
        let a = connection_in(&e, "a").unwrap().unwrap();
        assert_eq!(
            (a.login.as_deref(), a.host.as_deref()),
            (Some("a"), Some("h1"))
        );
        assert_eq!(a.conn_id, "a");
        let b = connection_in(&e, "My_b").unwrap().unwrap();
        assert_eq!(
            (b.conn_type.as_str(), b.host.as_deref()),
            ("http", Some("h3"))
        );
        assert!(connection_in(&e, "none").unwrap().is_none());
    }

    #[test]
    fn a_malformed_environment_connection_is_an_error_naming_the_variable() {
        let e = env(&[("AIRFLOW_CONN_BAD", "postgres://u:p@h:notaport/db")]);
        let err = connection_in(&e, "bad").unwrap_err();
        assert!(err.to_string().contains("AIRFLOW_CONN_BAD"), "{err}");
        assert!(err.to_string().contains("notaport"), "{err}");
    }

    #[test]
    fn variables_come_from_upiflow_var_then_airflow_var() {
        let e = env(&[
            ("AIRFLOW_VAR_V", "airflow"),
            ("UPIFLOW_VAR_W", "upiflow"),
            ("AIRFLOW_VAR_W", "airflow"),
        ]);
        let get = |k| env_lookup(&e, &VAR_ENV_PREFIXES, k).map(|(_, v)| v);
        assert_eq!(get("v").as_deref(), Some("airflow"));
        assert_eq!(get("w").as_deref(), Some("upiflow"));
        assert_eq!(get("x"), None);
    }

    #[tokio::test]
    async fn the_fernet_keys_are_masked_and_untestable_types_say_so() {
        let key = KeyRing::generate_key();
        let pool = PgPool::connect_lazy("postgres://u@localhost/db").unwrap();
        let s = Secrets::new(pool, Some(format!(" {key} ,"))).unwrap();
        let mut m = Masker::default();
        s.mask_keys(&mut m);
        assert_eq!(m.mask(&format!("k={key}")), "k=***");
        let r = Connection::from_uri("h", "http://h")
            .unwrap()
            .test(std::time::Duration::from_secs(1))
            .await;
        assert!(!r.status && r.message.contains("not supported"), "{r:?}");
    }
}
