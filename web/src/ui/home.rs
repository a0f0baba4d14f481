//! `/`: every DAG with its schedule, next run, recent run states and pause switch, and the
//! DAG files that do not load.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Router, http::HeaderMap};
use maud::{Markup, html};
use serde::Deserialize;
use upiflow_engine::store::dag_overview;

use super::badges::state_badge;
use super::extract::wants_fragment;
use super::format::ts_opt;
use super::{Nav, Permitted, UiError, UiUser, csrf_field, page};
use crate::AppState;
use crate::roles::may;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/dags/{dag_id}/pause", post(pause))
}

async fn list(
    State(s): State<AppState>,
    user: UiUser,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let (dags, errors) = {
        let mut conn = s.pool.acquire().await?;
        let dags = dag_overview::list(&mut conn).await?;
        (dags, dag_overview::import_errors(&mut conn).await?)
    };
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
                                button.secondary type="submit" disabled[!user.may(crate::roles::Action::Pause)]
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
                        td { @for st in &d.recent { span title=(st.as_str()) { (state_badge(st.as_str())) } " " } }
                        td.num { (d.running) }
                    }
                }
            }
        }
    };
    if wants_fragment(&headers) {
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
    Permitted(_, f, _): Permitted<may::Pause, PauseForm>,
) -> Result<impl IntoResponse, UiError> {
    let mut tx = s.pool.begin().await?;
    upiflow_engine::ops::set_paused(&mut tx, &s.cache, &dag_id, f.paused).await?;
    tx.commit().await?;
    Ok(Redirect::to(&super::session::safe_next(f.next.as_deref())))
}
