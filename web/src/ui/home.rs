//! `/`: every DAG with its schedule, next run, recent run states and pause switch, and the
//! DAG files that do not load.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Router, http::HeaderMap};
use maud::{Markup, html};
use serde::Deserialize;
use sqlx::FromRow;

use super::{AdminForm, Nav, UiError, UiUser, csrf_field, page, state_badge, ts_opt};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/dags/{dag_id}/pause", post(pause))
}

#[derive(FromRow)]
struct DagLine {
    dag_id: String,
    description: Option<String>,
    schedule: Option<String>,
    timezone: Option<String>,
    is_paused: bool,
    is_active: bool,
    next_dagrun: Option<chrono::DateTime<chrono::Utc>>,
    /// States of the latest runs, newest first.
    recent: Vec<String>,
    running: i64,
}

#[derive(FromRow)]
struct ImportError {
    fileloc: String,
    line: i32,
    message: String,
}

async fn list(
    State(s): State<AppState>,
    user: UiUser,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let dags: Vec<DagLine> = sqlx::query_as(
        "SELECT d.dag_id, d.description, d.schedule, d.timezone, d.is_paused, d.is_active,
                d.next_dagrun,
                COALESCE(ARRAY(SELECT r.state::text FROM dag_runs r WHERE r.dag_id = d.dag_id
                               ORDER BY r.logical_date DESC LIMIT 10), '{}') AS recent,
                (SELECT count(*) FROM dag_runs r WHERE r.dag_id = d.dag_id
                   AND r.state IN ('queued', 'running')) AS running
         FROM dags d ORDER BY d.dag_id",
    )
    .fetch_all(&s.pool)
    .await?;
    let errors: Vec<ImportError> =
        sqlx::query_as("SELECT fileloc, line, message FROM import_errors ORDER BY fileloc, line")
            .fetch_all(&s.pool)
            .await?;
    let table = html! {
        @if !errors.is_empty() {
            div.error-message role="alert" {
                strong { "DAG files that do not load:" }
                @for e in &errors { div { (e.fileloc) ":" (e.line) ": " (e.message) } }
            }
        }
        table id="dag-list" {
            thead { tr {
                th { "Paused" } th { "DAG" } th { "Schedule" } th { "Next run" }
                th { "Recent runs" } th.num { "Active runs" }
            } }
            tbody {
                @for d in &dags {
                    tr data-dag=(d.dag_id) {
                        td {
                            form.switch method="post" action={ "/dags/" (d.dag_id) "/pause" } {
                                (csrf_field(&user))
                                input type="hidden" name="paused" value=(!d.is_paused);
                                button.secondary type="submit" disabled[!user.is_admin()]
                                    title=(if d.is_paused { "Resume scheduling" } else { "Pause scheduling" }) {
                                    (if d.is_paused { "Paused" } else { "On" })
                                }
                            }
                        }
                        td {
                            a href={ "/dags/" (d.dag_id) } { strong { (d.dag_id) } }
                            @if !d.is_active { " " span.muted { "(file removed)" } }
                            @if let Some(desc) = &d.description { div.muted { (desc) } }
                        }
                        td { code { (d.schedule.as_deref().unwrap_or("none")) } " " span.muted { (d.timezone.as_deref().unwrap_or("UTC")) } }
                        td { (ts_opt(d.next_dagrun)) }
                        td { @for st in &d.recent { span title=(st) { (state_badge(st)) } " " } }
                        td.num { (d.running) }
                    }
                }
            }
        }
    };
    if headers.contains_key("x-fragment") {
        return Ok(table);
    }
    Ok(page(
        "DAGs",
        &user,
        Nav::Dags,
        html! {
            h1 { "DAGs" }
            div data-refresh="/" data-every="5" { (table) }
        },
    ))
}

#[derive(Deserialize)]
struct PauseForm {
    paused: bool,
    /// The page to go back to (a DAG's own page sends its address); the list by default.
    next: Option<String>,
}

async fn pause(
    State(s): State<AppState>,
    Path(dag_id): Path<String>,
    AdminForm(_, f): AdminForm<PauseForm>,
) -> Result<impl IntoResponse, UiError> {
    let mut tx = s.pool.begin().await?;
    upiflow_engine::ops::set_paused(&mut tx, &s.cache, &dag_id, f.paused).await?;
    tx.commit().await?;
    Ok(Redirect::to(&super::session::safe_next(f.next.as_deref())))
}
