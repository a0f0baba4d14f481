//! `/connections` and `/variables`: what is stored, with passwords and sensitive values as
//! `***` (Airflow's redaction), for every user; for admins a form that adds or replaces a
//! connection (Airflow's URI form) or sets a variable, a delete button per row and, for
//! connections, a test button. The rules are the engine's (`upiflow_engine::secrets`); a
//! refusal is an error page with its message.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use upiflow_engine::secrets::{Connection, StoredConnection, StoredVariable, redact};

use super::format::ts;
use super::links::{connection_url, variable_delete_url};
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/connections", get(connections).post(set_connection))
        .route("/connections/{id}/delete", post(delete_connection))
        .route("/connections/{id}/test", post(test_connection))
        .route("/variables", get(variables).post(set_variable))
        .route("/variables/{key}/delete", post(delete_variable))
}

/// Every stored connection or variable fits one page: these tables hold tens of rows.
const ALL: i64 = 1000;

fn connection_table(user: &UiUser, rows: &[StoredConnection]) -> Markup {
    html! {
        table id="connection-list" {
            thead { tr {
                th { "Connection" } th { "Type" } th { "Host" } th.num { "Port" }
                th { "Schema" } th { "Login" } th { "Password" } th { "Extra" }
                th { "Description" } th { "Changed" }
                @if user.may(crate::roles::Action::Connections) { th {} }
            } }
            tbody {
                @for r in rows {
                    @let c = &r.connection;
                    tr data-conn=(c.conn_id) {
                        td { strong { (c.conn_id) } }
                        td { (c.conn_type) }
                        td { (c.host.as_deref().unwrap_or("")) }
                        td.num { (c.port.map(|p| p.to_string()).unwrap_or_default()) }
                        td { (c.schema.as_deref().unwrap_or("")) }
                        td { (c.login.as_deref().unwrap_or("")) }
                        td data-col="password" { @if c.password.is_some() { (redact::MASK) } }
                        td data-col="extra" {
                            @if !c.extra.is_empty() {
                                code { (Value::Object(redact::extra(&c.extra)).to_string()) }
                            }
                        }
                        td { (c.description.as_deref().unwrap_or("")) }
                        td { (ts(r.updated_at)) }
                        @if user.may(crate::roles::Action::Connections) {
                            td {
                                form.inline method="post" action=(connection_url(&c.conn_id, "test")) {
                                    (csrf_field(user))
                                    button type="submit" { "Test" }
                                }
                                form.inline method="post" action=(connection_url(&c.conn_id, "delete")) {
                                    (csrf_field(user))
                                    button.danger type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn connections_body(user: &UiUser, rows: &[StoredConnection], notice: Option<&str>) -> Markup {
    html! {
        h1 { "Connections" }
        p.muted {
            "Tasks reach other systems through connections: " code { "conn = \"ID\"" }
            " on a " code { "sql" } " or " code { "quality" } " task, " code { "{{ conn.ID.host }}" }
            " in a " code { "command" } ". " code { "UPIFLOW_CONN_ID" } " or " code { "AIRFLOW_CONN_ID" }
            " in the environment takes precedence over what is stored here."
        }
        @if let Some(n) = notice {
            p.notice role="status" { (n) }
        }
        (connection_table(user, rows))
        @if user.may(crate::roles::Action::Connections) {
            h2 { "Add or replace a connection" }
            form.card.form id="connection-form" method="post" action="/connections" {
                (csrf_field(user))
                label { "Connection id" input type="text" name="conn_id" required; }
                label {
                    "URI"
                    input type="password" name="uri" required autocomplete="off";
                    span.hint { "Airflow's form, e.g. postgres://user:password@host:5432/db?sslmode=require" }
                }
                label { "Description" input type="text" name="description"; }
                button type="submit" { "Save connection" }
            }
        }
    }
}

async fn all_connections(s: &AppState) -> Result<Vec<StoredConnection>, UiError> {
    Ok(s.secrets.list_connections(&[], &[], ALL, 0).await?.0)
}

async fn connections(State(s): State<AppState>, user: UiUser) -> Result<Markup, UiError> {
    let rows = all_connections(&s).await?;
    Ok(page(
        "Connections",
        &user,
        Nav::Connections,
        connections_body(&user, &rows, None),
    ))
}

#[derive(Deserialize)]
struct ConnectionForm {
    conn_id: String,
    uri: String,
    #[serde(default)]
    description: String,
}

async fn set_connection(
    State(s): State<AppState>,
    Permitted(user, f, _): Permitted<may::Connections, ConnectionForm>,
) -> Result<Redirect, UiError> {
    let id = f.conn_id.trim();
    let mut c = Connection::from_uri(id, f.uri.trim())?;
    c.description = Some(f.description.trim().to_string()).filter(|d| !d.is_empty());
    let (_, created) = s.secrets.put_connection(&c).await?;
    tracing::info!(user = %user.username, conn_id = %id, created, "connection saved from the UI");
    Ok(Redirect::to("/connections"))
}

#[derive(Deserialize)]
struct EmptyForm {}

async fn delete_connection(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Permitted(user, EmptyForm {}, _): Permitted<may::Connections, EmptyForm>,
) -> Result<Redirect, UiError> {
    s.secrets.delete_connection(&id).await?;
    tracing::info!(user = %user.username, conn_id = %id, "connection deleted from the UI");
    Ok(Redirect::to("/connections"))
}

async fn test_connection(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Permitted(user, EmptyForm {}, _): Permitted<may::Connections, EmptyForm>,
) -> Result<Markup, UiError> {
    let c = s.secrets.get_connection(&id).await?.connection;
    // The message comes masked (the connection's password and sensitive extras).
    let tested = c.test(Duration::from_secs(10)).await;
    let notice = format!(
        "Test of `{id}`: {} — {}",
        if tested.status { "ok" } else { "failed" },
        tested.message
    );
    let rows = all_connections(&s).await?;
    Ok(page(
        "Connections",
        &user,
        Nav::Connections,
        connections_body(&user, &rows, Some(&notice)),
    ))
}

fn variable_table(user: &UiUser, rows: &[StoredVariable]) -> Markup {
    html! {
        table id="variable-list" {
            thead { tr {
                th { "Key" } th { "Value" } th { "Description" } th { "Encrypted" } th { "Changed" }
                @if user.may(crate::roles::Action::Variables) { th {} }
            } }
            tbody {
                @for v in rows {
                    tr data-var=(v.key) {
                        td { strong { (v.key) } }
                        td data-col="value" { code { (redact::variable(&v.key, &v.val)) } }
                        td { (v.description.as_deref().unwrap_or("")) }
                        td { @if v.is_encrypted { "yes" } @else { "no" } }
                        td { (ts(v.updated_at)) }
                        @if user.may(crate::roles::Action::Variables) {
                            td {
                                form.inline method="post" action=(variable_delete_url(&v.key)) {
                                    (csrf_field(user))
                                    button.danger type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn variables(State(s): State<AppState>, user: UiUser) -> Result<Markup, UiError> {
    let rows = s.secrets.list_variables(&[], &[], ALL, 0).await?.0;
    Ok(page(
        "Variables",
        &user,
        Nav::Variables,
        html! {
            h1 { "Variables" }
            p.muted {
                "Tasks read variables as " code { "{{ var.KEY }}" } " in a " code { "command" }
                " and " code { ":var.KEY" } " in SQL. " code { "UPIFLOW_VAR_KEY" }
                " in the environment takes precedence. A key naming a password, secret, token or API key reads "
                code { (redact::MASK) } "."
            }
            (variable_table(&user, &rows))
            @if user.may(crate::roles::Action::Variables) {
                h2 { "Set a variable" }
                form.card.form id="variable-form" method="post" action="/variables" {
                    (csrf_field(&user))
                    label { "Key" input type="text" name="key" required; }
                    label { "Value" textarea name="value" rows="3" {} }
                    label { "Description" input type="text" name="description"; }
                    button type="submit" { "Set variable" }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct VariableForm {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    description: String,
}

async fn set_variable(
    State(s): State<AppState>,
    Permitted(user, f, _): Permitted<may::Variables, VariableForm>,
) -> Result<Redirect, UiError> {
    let key = f.key.trim();
    let description = Some(f.description.trim()).filter(|d| !d.is_empty());
    let (_, created) = s.secrets.set_variable(key, &f.value, description).await?;
    tracing::info!(user = %user.username, key = %key, created, "variable set from the UI");
    Ok(Redirect::to("/variables"))
}

async fn delete_variable(
    State(s): State<AppState>,
    Path(key): Path<String>,
    Permitted(user, EmptyForm {}, _): Permitted<may::Variables, EmptyForm>,
) -> Result<Redirect, UiError> {
    s.secrets.delete_variable(&key).await?;
    tracing::info!(user = %user.username, key = %key, "variable deleted from the UI");
    Ok(Redirect::to("/variables"))
}
