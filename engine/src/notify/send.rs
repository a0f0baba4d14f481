//! Delivering one notification by its notifier's kind: a webhook POST, an email through
//! SMTP, or a command reading it on stdin. Each returns the receiver's answer (recorded with
//! the attempt) or why delivery failed.

use std::process::Stdio;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;

use crate::dag::{EmailTls, HeaderPart, Notifier, NotifierSpec, header_parts};
use crate::secrets::{Connection, Secrets};

/// What delivering needs across attempts: one HTTP client, the connections.
pub(super) struct Sender {
    http: reqwest::Client,
    secrets: Result<Secrets, String>,
}

/// An error with its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

fn text_of<'a>(payload: &'a Value, key: &str) -> &'a str {
    payload.get(key).and_then(Value::as_str).unwrap_or("")
}

impl Sender {
    pub fn new(pool: PgPool) -> Self {
        Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("upiflow/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the HTTP client builds"),
            secrets: Secrets::from_env(pool).map_err(|e| e.to_string()),
        }
    }

    /// Delivers `payload` by `notifier`: `Ok(answer)` when the receiver took it.
    pub async fn send(&self, notifier: &Notifier, payload: &Value) -> Result<String, String> {
        match &notifier.spec {
            NotifierSpec::Webhook { url, headers, conn } => {
                self.webhook(notifier, url, headers, conn.as_deref(), payload)
                    .await
            }
            NotifierSpec::Email { .. } => self.email(notifier, payload).await,
            NotifierSpec::Command { command } => command_send(notifier, command, payload).await,
        }
    }

    async fn connection(&self, conn_id: &str) -> Result<Connection, String> {
        let secrets = self
            .secrets
            .as_ref()
            .map_err(|e| format!("cannot read connection `{conn_id}`: {e}"))?;
        match secrets.connection(conn_id).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(format!(
                "connection `{conn_id}` does not exist (add it with `upiflow connections add {conn_id} --uri URI`, or set UPIFLOW_CONN_{})",
                conn_id.to_uppercase()
            )),
            Err(e) => Err(format!("cannot read connection `{conn_id}`: {}", chain(&e))),
        }
    }

    /// A header value with its `{{ conn.ID.FIELD }}` placeholders filled in.
    async fn header_value(&self, template: &str) -> Result<String, String> {
        let mut out = String::new();
        for part in header_parts(template)? {
            match part {
                HeaderPart::Text(t) => out.push_str(t),
                HeaderPart::Conn { conn_id, field } => {
                    let c = self.connection(conn_id).await?;
                    let value = match field {
                        "login" => c.login.clone(),
                        "password" => c.password.clone(),
                        "host" => c.host.clone(),
                        "schema" => c.schema.clone(),
                        "port" => c.port.map(|p| p.to_string()),
                        _ => None,
                    };
                    let value =
                        value.ok_or_else(|| format!("connection `{conn_id}` has no {field}"))?;
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }

    async fn webhook(
        &self,
        notifier: &Notifier,
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
        conn: Option<&str>,
        payload: &Value,
    ) -> Result<String, String> {
        let mut req = self
            .http
            .post(url)
            .timeout(notifier.timeout)
            .header("Idempotency-Key", text_of(payload, "id"))
            .json(payload);
        for (name, template) in headers {
            let value = self.header_value(template).await?;
            req = req.header(name.as_str(), value);
        }
        if let Some(conn_id) = conn {
            let c = self.connection(conn_id).await?;
            req = match (&c.login, &c.password) {
                (Some(login), password) if !login.is_empty() => {
                    req.basic_auth(login, password.as_deref())
                }
                (_, Some(password)) => req.bearer_auth(password),
                _ => {
                    return Err(format!(
                        "connection `{conn_id}` has neither a login nor a password to authenticate with"
                    ));
                }
            };
        }
        let resp = req.send().await.map_err(|e| chain(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(format!("HTTP {status}"));
        }
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(200).collect();
        Err(if body.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {body}")
        })
    }

    async fn email(&self, notifier: &Notifier, payload: &Value) -> Result<String, String> {
        let NotifierSpec::Email {
            host,
            port,
            tls,
            from,
            to,
            conn,
        } = &notifier.spec
        else {
            unreachable!("called for email notifiers only");
        };
        let from: Mailbox = from.parse().map_err(|e| format!("`from` {from}: {e}"))?;
        let mut msg = Message::builder()
            .from(from)
            .subject(email_subject(payload))
            .header(ContentType::TEXT_PLAIN);
        if let Some(id) = payload.get("id").and_then(Value::as_str) {
            msg = msg.message_id(Some(format!("<{id}@upiflow>")));
        }
        for addr in to {
            let mb: Mailbox = addr.parse().map_err(|e| format!("`to` {addr}: {e}"))?;
            msg = msg.to(mb);
        }
        let msg = msg
            .body(email_body(payload))
            .map_err(|e| format!("cannot build the email: {e}"))?;
        let builder = match tls {
            EmailTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("SMTP {host}: {}", chain(&e)))?,
            EmailTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("SMTP {host}: {}", chain(&e)))?,
        };
        let mut builder = builder.port(*port).timeout(Some(notifier.timeout));
        if let Some(conn_id) = conn {
            let c = self.connection(conn_id).await?;
            builder = builder.credentials(Credentials::new(
                c.login.clone().unwrap_or_default(),
                c.password.clone().unwrap_or_default(),
            ));
        }
        let resp = builder
            .build()
            .send(msg)
            .await
            .map_err(|e| format!("SMTP {host}:{port}: {}", chain(&e)))?;
        Ok(format!(
            "SMTP {}: {}",
            resp.code(),
            resp.message().collect::<Vec<_>>().join(" ")
        ))
    }
}

/// "upiflow alert: daily_summary failed in upi_daily (scheduled__...)", as Airflow's
/// "Airflow alert: <TaskInstance ...>".
pub(super) fn email_subject(p: &Value) -> String {
    let dag = text_of(p, "dag_id");
    let run = text_of(p, "run_id");
    let task = p.get("task_id").and_then(Value::as_str);
    let what = match (text_of(p, "event"), task) {
        ("on_failure", Some(t)) => format!("{t} failed in {dag} ({run})"),
        ("on_retry", Some(t)) => format!("{t} up for retry in {dag} ({run})"),
        ("on_success", Some(t)) => format!("{t} succeeded in {dag} ({run})"),
        ("on_failure", None) => format!("run {run} of {dag} failed"),
        ("on_success", None) => format!("run {run} of {dag} succeeded"),
        ("on_deadline_miss", _) => format!("run {run} of {dag} missed its deadline"),
        (other, _) => format!("{other} in {dag} ({run})"),
    };
    format!("upiflow alert: {what}")
}

fn email_body(p: &Value) -> String {
    let mut out = String::new();
    out.push_str(text_of(p, "text"));
    out.push_str("\n\n");
    for key in [
        "event",
        "dag_id",
        "run_id",
        "task_id",
        "try_number",
        "state",
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "deadline_at",
        "error",
        "url",
        "id",
    ] {
        match p.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => out.push_str(&format!("{key}: {s}\n")),
            Some(v) => out.push_str(&format!("{key}: {v}\n")),
        }
    }
    out
}

/// Runs the notifier's argv with the payload as JSON on stdin; exit 0 is delivered.
async fn command_send(
    notifier: &Notifier,
    argv: &[String],
    payload: &Value,
) -> Result<String, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "the command is empty".to_string())?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let mut input = serde_json::to_vec(payload).expect("a payload serialises");
    input.push(b'\n');
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let run = async move {
        // A command that does not read its stdin still gets judged by its exit status.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(notifier.timeout, run)
        .await
        .map_err(|_| {
            format!(
                "`{program}` did not finish within {}; killed",
                humantime::format_duration(notifier.timeout)
            )
        })?
        .map_err(|e| format!("`{program}`: {e}"))?;
    if out.status.success() {
        return Ok("exit status 0".into());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(if tail.is_empty() {
        format!("`{program}` exited with {}", out.status)
    } else {
        format!("`{program}` exited with {}: {tail}", out.status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_say_what_happened_where() {
        let p = serde_json::json!({
            "event": "on_failure", "dag_id": "upi_daily", "run_id": "scheduled__x",
            "task_id": "daily_summary"
        });
        assert_eq!(
            email_subject(&p),
            "upiflow alert: daily_summary failed in upi_daily (scheduled__x)"
        );
        let p = serde_json::json!({
            "event": "on_failure", "dag_id": "upi_daily", "run_id": "r", "task_id": null
        });
        assert_eq!(
            email_subject(&p),
            "upiflow alert: run r of upi_daily failed"
        );
    }
}
