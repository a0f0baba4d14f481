//! The server-rendered web UI (maud templates, so everything shown is escaped unless a
//! template says otherwise). Pages that change over time mark a region with
//! `data-refresh="URL"`; `app.js` re-fetches that URL every few seconds and swaps the region,
//! so the page updates without a full reload.
//!
//! This file holds the router, the error page (`UiError`) and the page layout (`page`,
//! `bare_page`, `Nav`); each page is a module of its own, named for it. What several pages
//! share: `dag_header` (loading a DAG, its header and tabs), `links` (page addresses),
//! `extract` (query string, fragment requests), `format` (timestamps, durations), `badges`
//! (state colours). Pages read the orchestrator's tables only through `upiflow_engine::store`.

mod assets;
mod backfill;
mod badges;
mod charts;
mod dag_header;
pub mod dashboard;
mod events;
mod extract;
mod format;
mod gantt;
mod graph;
mod graph_layout;
mod grid;
mod home;
mod links;
mod login;
mod missed;
mod panels;
mod pools;
mod run;
mod secrets;
pub mod session;
mod task;
mod trigger;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

pub use session::{Permitted, UiUser, UserForm};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(login::router())
        .merge(assets::router())
        .merge(home::router())
        .merge(grid::router())
        .merge(graph::router())
        .merge(run::router())
        .merge(task::router())
        .merge(trigger::router())
        .merge(backfill::router())
        .merge(missed::router())
        .merge(pools::router())
        .merge(secrets::router())
        .merge(events::router())
}

/// What went wrong, as a page (or, for a missing session, a redirect to the login page): the
/// one HTTP error type (`crate::error::HttpError`), shown as HTML.
pub type UiError = crate::error::HttpError<crate::error::Page>;

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::LoginRequired(here) => return refused(login_redirect(here)),
            // Code shared with the API refused the credentials: the UI's answer is the login.
            Self::Unauthorized => return refused(login_redirect("/")),
            // The UI has no 422 page: bad input is a 400, as a form expects.
            Self::Unprocessable(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "page failed on a transient database error");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "page failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            other => other.status(),
        };
        let body = bare_page(
            status.canonical_reason().unwrap_or("Error"),
            html! {
                main.narrow {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error-message { (self.to_string()) }
                    p { a href="/" { "Back to the DAGs" } }
                }
            },
        );
        let mut resp = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.extensions_mut().insert(crate::retry::Transient);
        }
        if let Some(v) = self.retry_after() {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// A redirect that is a refusal, for the audit log (its status alone says success).
pub(crate) fn refused(mut resp: Response) -> Response {
    resp.extensions_mut().insert(crate::audit::Outcome::Refused);
    resp
}

/// To the login page, coming back to `here` once logged in.
fn login_redirect(here: &str) -> Response {
    let to = format!(
        "/login?{}",
        serde_urlencoded::to_string([("next", here)]).unwrap_or_default()
    );
    Redirect::to(&to).into_response()
}

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dags,
    Backfills,
    Pools,
    Connections,
    Variables,
    Events,
    Payments,
    None,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · upiflow" }
            link rel="icon" type="image/svg+xml" href="/static/favicon.svg";
            link rel="stylesheet" href="/static/app.css";
            script src="/static/app.js" defer {}
        }
    }
}

/// A page without the navigation bar (login, errors).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { (body) }
        }
    }
}

/// A page of a signed-in user: navigation bar, then `body`.
pub fn page(title: &str, user: &UiUser, nav: Nav, body: Markup) -> Markup {
    let item = |n: Nav, href: &str, label: &str| {
        html! { a.nav-item.active[n == nav] href=(href) { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.topbar {
                    a.brand href="/" { "upiflow" }
                    nav {
                        (item(Nav::Dags, "/", "DAGs"))
                        (item(Nav::Backfills, "/backfills", "Backfills"))
                        (item(Nav::Pools, "/pools", "Pools"))
                        (item(Nav::Connections, "/connections", "Connections"))
                        (item(Nav::Variables, "/variables", "Variables"))
                        (item(Nav::Events, "/events", "Audit log"))
                        @if let Some((path, title)) = user.dashboard {
                            (item(Nav::Payments, &format!("/{path}"), title))
                        }
                    }
                    div.user {
                        span.who { (user.username) " · " (format!("{:?}", user.role).to_lowercase()) }
                        form method="post" action="/logout" {
                            (csrf_field(user))
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden field every form of a signed-in page carries.
pub fn csrf_field(user: &UiUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}
