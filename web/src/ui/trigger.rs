//! `/dags/{dag_id}/trigger`: a manual run with an optional logical date and a conf checked
//! against the DAG's params. A refused request shows the form again with the message and
//! what the user typed.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::Dag;
use upiflow_engine::ErrorKind;
use upiflow_engine::dag::parse_datetime_in;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::store::dags::DagRow;

use super::dag_header::{Tab, header, load};
use super::links::{dag_url, run_url};
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new().route("/dags/{dag_id}/trigger", get(form_page).post(submit))
}

/// A date as a form sends it: `datetime-local` (`YYYY-MM-DDTHH:MM`), a date, a local
/// date-time or RFC 3339; local times are in the DAG's time zone.
pub(super) fn parse_form_date(text: &str, dag: &Dag) -> Result<DateTime<Utc>, String> {
    parse_datetime_in(&with_seconds(text), dag.tz()).map_err(|e| e.to_string())
}

/// `YYYY-MM-DDTHH:MM` (what a `datetime-local` input sends) with `:00` added.
fn with_seconds(text: &str) -> String {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() == 16 && matches!(b[10], b'T' | b' ') && b[13] == b':' {
        format!("{text}:00")
    } else {
        text.to_string()
    }
}

#[derive(Deserialize, Default)]
struct TriggerForm {
    #[serde(default)]
    logical_date: String,
    #[serde(default)]
    conf: String,
}

fn form(
    user: &UiUser,
    row: &DagRow,
    dag: &Dag,
    input: &TriggerForm,
    error: Option<&str>,
) -> Markup {
    let action = format!("{}/trigger", dag_url(&dag.dag_id));
    html! {
        (header(user, row, dag, Tab::Trigger, &action))
        h2 { "Trigger a run" }
        @if !user.may(crate::roles::Action::Trigger) {
            p.notice { "Your role (" (user.role.name()) ") may not trigger runs: the form is shown read-only." }
        }
        @if row.is_paused {
            p.notice { "The DAG is paused: the run waits in the queue until it is resumed." }
        }
        @if let Some(e) = error {
            p.error-message role="alert" id="form-error" { (e) }
        }
        form.card.form id="trigger-form" method="post" action=(action) {
            (csrf_field(user))
            fieldset disabled[!user.may(crate::roles::Action::Trigger)] {
                label {
                    "Logical date (optional; " (dag.timezone) " unless an offset is given)"
                    input type="text" name="logical_date" value=(input.logical_date)
                        placeholder="2026-01-05, 2026-01-05T10:30 or 2026-01-05T10:30:00+05:30";
                    span.hint { "Empty: the latest complete interval. A scheduled DAG's run covers the interval containing the date." }
                }
                label {
                    "Conf (a JSON object overriding the params)"
                    textarea name="conf" rows="10" spellcheck="false" { (input.conf) }
                }
                button type="submit" { "Trigger" }
                " "
                a.button.secondary href=(dag_url(&dag.dag_id)) { "Cancel" }
            }
        }
    }
}

async fn form_page(
    State(s): State<AppState>,
    user: UiUser,
    Path(dag_id): Path<String>,
) -> Result<Markup, UiError> {
    let (row, dag) = load(&s, &dag_id).await?;
    let conf = serde_json::to_string_pretty(&serde_json::Value::Object(dag.params.clone()))
        .unwrap_or_else(|_| "{}".into());
    let input = TriggerForm {
        logical_date: String::new(),
        conf,
    };
    Ok(page(
        &format!("Trigger {dag_id}"),
        &user,
        Nav::Dags,
        form(&user, &row, &dag, &input, None),
    ))
}

async fn submit(
    State(s): State<AppState>,
    Path(dag_id): Path<String>,
    Permitted(user, f, _): Permitted<may::Trigger, TriggerForm>,
) -> Result<Response, UiError> {
    let (row, dag) = load(&s, &dag_id).await?;
    let again = |status: StatusCode, message: String, f: &TriggerForm| -> Response {
        let body = page(
            &format!("Trigger {dag_id}"),
            &user,
            Nav::Dags,
            form(&user, &row, &dag, f, Some(&message)),
        );
        (status, body).into_response()
    };
    let logical_date = match f.logical_date.trim() {
        "" => None,
        t => match parse_form_date(t, &dag) {
            Ok(d) => Some(d),
            Err(e) => {
                return Ok(again(
                    StatusCode::BAD_REQUEST,
                    format!("Logical date: {e}"),
                    &f,
                ));
            }
        },
    };
    let conf = match f.conf.trim() {
        "" => serde_json::json!({}),
        t => match serde_json::from_str(t) {
            Ok(v) => v,
            Err(e) => {
                return Ok(again(
                    StatusCode::BAD_REQUEST,
                    format!("Conf is not valid JSON: {e}"),
                    &f,
                ));
            }
        },
    };
    if let Err(e) = upiflow_engine::conf::check(&dag, &conf) {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, e.to_string(), &f));
    }
    let req = Trigger {
        logical_date,
        conf,
        triggered_by: Some(user.username.clone()),
        ..Trigger::default()
    };
    match ops::trigger(&s.pool, &s.cache, &dag, &req).await {
        Ok(run) => {
            tracing::info!(user = %user.username, %dag_id, run_id = %run.run_id, "triggered from the UI");
            Ok(Redirect::to(&run_url(&dag_id, &run.run_id)).into_response())
        }
        Err(e) if e.kind() == ErrorKind::Invalid => Ok(again(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.client_message(),
            &f,
        )),
        Err(e) if e.kind() == ErrorKind::Conflict => {
            Ok(again(StatusCode::CONFLICT, e.client_message(), &f))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datetime_local_value_gets_seconds() {
        assert_eq!(with_seconds(" 2026-01-05T10:30 "), "2026-01-05T10:30:00");
        assert_eq!(with_seconds("2026-01-05"), "2026-01-05");
        assert_eq!(with_seconds("2026-01-05T10:30:00Z"), "2026-01-05T10:30:00Z");
    }
}
