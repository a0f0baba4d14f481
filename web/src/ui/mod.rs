//! The server-rendered web UI (maud templates, so everything shown is escaped unless a
//! template says otherwise). Pages that change over time mark a region with
//! `data-refresh="URL"`; `app.js` re-fetches that URL every few seconds and swaps the region,
//! so the page updates without a full reload.

mod backfill;
mod charts;
mod dag;
pub mod dashboard;
mod graph;
mod home;
mod missed;
mod panels;
mod run;
pub mod session;
mod task;
mod trigger;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_extra::extract::cookie::CookieJar;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use upiflow_engine::EngineError;

pub use session::{AdminForm, UiUser, UserForm};

use crate::AppState;
use crate::auth;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .merge(home::router())
        .merge(dag::router())
        .merge(graph::router())
        .merge(run::router())
        .merge(task::router())
        .merge(trigger::router())
        .merge(backfill::router())
        .merge(missed::router())
}

/// What went wrong, as a page (or, for a missing session, a redirect to the login page).
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("log in to see {0}")]
    LoginRequired(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The database failed transiently: a 503 the request is replayed on (`crate::retry`).
    #[error("the database is unavailable for the moment; try again")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::LoginRequired(here) => {
                let to = format!(
                    "/login?{}",
                    serde_urlencoded::to_string([("next", here.as_str())]).unwrap_or_default()
                );
                return Redirect::to(&to).into_response();
            }
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "page failed on a transient database error");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "page failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
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
        resp
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(m) | ApiError::Unprocessable(m) => Self::BadRequest(m),
            ApiError::Unauthorized => Self::LoginRequired("/".into()),
            ApiError::Forbidden(m) => Self::Forbidden(m),
            ApiError::NotFound(m) => Self::NotFound(m),
            ApiError::Conflict(m) => Self::Conflict(m),
            ApiError::TooLarge(m) => Self::TooLarge(m),
            ApiError::Unavailable(m) => Self::Unavailable(m),
            ApiError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<EngineError> for UiError {
    fn from(e: EngineError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dags,
    Backfills,
    Payments,
    None,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · upiflow" }
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
                        (item(Nav::Payments, "/payments", "Payments"))
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

/// A coloured state label (task or run state; `none` for a task not yet ready).
pub fn state_badge(state: &str) -> Markup {
    html! { span class={ "state state-" (state) } { (state.replace('_', " ")) } }
}

/// A duration as a person reads it: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn human_duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{} min {:02} s", (secs / 60.0) as i64, (secs % 60.0) as i64)
    } else {
        format!(
            "{} h {:02} min",
            (secs / 3600.0) as i64,
            ((secs % 3600.0) / 60.0) as i64
        )
    }
}

/// A timestamp in UTC to the second (the UI shows UTC, as Airflow does by default).
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn ts_opt(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(ts).unwrap_or_default()
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
    error: Option<String>,
}

fn login_form(next: &str, error: Option<&str>, csrf: &str) -> Markup {
    bare_page(
        "Log in",
        html! {
            main.narrow.login {
                h1 { "upiflow" }
                @if let Some(e) = error { p.error-message role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label { "Username" input name="username" autocomplete="username" required autofocus; }
                    label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

async fn login_page(jar: CookieJar, Query(q): Query<NextQuery>) -> impl IntoResponse {
    let (token, cookie) = session::login_csrf();
    let next = session::safe_next(q.next.as_deref());
    let error = q
        .error
        .is_some()
        .then_some("Wrong username or password, or the form expired.");
    (jar.add(cookie), login_form(&next, error, &token))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Result<Response, UiError> {
    let next = session::safe_next(f.next.as_deref());
    let again = format!(
        "/login?{}",
        serde_urlencoded::to_string([("next", next.as_str()), ("error", "1")]).unwrap_or_default()
    );
    let twin = jar
        .get(session::LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    if !session::same_secret(&f.csrf, &twin) {
        return Ok(Redirect::to(&again).into_response());
    }
    let Some(role) = auth::check_password(&s.pool, &f.username, &f.password).await? else {
        return Ok(Redirect::to(&again).into_response());
    };
    let cookie = session::start(&s.token_key, &f.username, role)?;
    let jar = jar
        .remove(axum_extra::extract::cookie::Cookie::from(
            session::LOGIN_CSRF_COOKIE,
        ))
        .add(cookie);
    Ok((jar, Redirect::to(&next)).into_response())
}

async fn logout(
    jar: CookieJar,
    UserForm(_, _): UserForm<serde::de::IgnoredAny>,
) -> impl IntoResponse {
    (jar.add(session::end()), Redirect::to("/login"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("static/app.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("static/app.js"),
    )
}
