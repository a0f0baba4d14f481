//! Testing a connection (Airflow's `connections test` / `POST /connections/test`): opens it
//! and runs `SELECT 1`. Only Postgres-protocol connections can be tested.

use std::time::Duration;

use sqlx::Connection as _;

use super::Connection;
use super::mask::{Masker, is_sensitive_key};

/// What a test found, as Airflow reports it: whether the connection works and a message
/// (with the connection's secrets masked).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TestResult {
    pub status: bool,
    pub message: String,
}

/// A masker of a connection's secrets ([`Connection::secret_texts`]).
pub fn masker_of(c: &Connection) -> Masker {
    let mut m = Masker::default();
    for text in c.secret_texts() {
        m.add(&text);
    }
    m
}

impl Connection {
    /// What must never show of this connection: its password and the values of extras under
    /// sensitive keys (a value that is not a string as its JSON text).
    pub fn secret_texts(&self) -> Vec<String> {
        let mut out: Vec<String> = self.password.iter().cloned().collect();
        for (k, v) in &self.extra {
            if is_sensitive_key(k) {
                out.push(match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
        }
        out
    }

    /// Opens the connection and runs `SELECT 1`, waiting at most `timeout`. A type that
    /// cannot be tested (anything but `postgres`) is a failed test that says so.
    pub async fn test(&self, timeout: Duration) -> TestResult {
        let fail = |message: String| TestResult {
            status: false,
            message,
        };
        if self.conn_type != "postgres" {
            return fail(format!(
                "testing is not supported for connections of type `{}` (only Postgres-protocol connections, type `postgres`)",
                self.conn_type
            ));
        }
        let url = match self.postgres_url() {
            Ok(u) => u,
            Err(e) => return fail(e.to_string()),
        };
        let target = format!(
            "{}:{}/{}",
            self.host.as_deref().unwrap_or_default(),
            self.port.unwrap_or(5432),
            self.schema.as_deref().unwrap_or_default()
        );
        let attempt = async {
            let mut pg = sqlx::PgConnection::connect(&url).await?;
            let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut pg).await?;
            let _ = pg.close().await;
            Ok::<i32, sqlx::Error>(one)
        };
        let masker = masker_of(self);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(1)) => TestResult {
                status: true,
                message: format!("ok (SELECT 1 on {target})"),
            },
            Ok(Ok(n)) => fail(format!("SELECT 1 on {target} returned {n}")),
            Ok(Err(e)) => fail(format!(
                "cannot reach {target}: {}",
                masker.mask(&e.to_string())
            )),
            Err(_) => fail(format!(
                "no answer from {target} within {}",
                humantime::format_duration(timeout)
            )),
        }
    }
}
