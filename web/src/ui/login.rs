//! `/login` and `/logout`: the login form (CSRF-protected by a double-submitted cookie, the
//! password checked off the async threads by `auth`) and the session cookie it starts.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::CookieJar;
use maud::{Markup, html};
use serde::Deserialize;

use super::{UiError, UserForm, bare_page, session};
use crate::AppState;
use crate::auth;
use crate::transport::Client;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
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

async fn login_page(
    client: Client,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> impl IntoResponse {
    let (token, cookie) = session::login_csrf(client.secure);
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
    client: Client,
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
    // Both refusals are failed sign-ins in the audit log (`crate::audit`).
    if !session::same_secret(&f.csrf, &twin) {
        return Ok(super::refused(Redirect::to(&again).into_response()));
    }
    let grant = match auth::sign_in(&s, &f.username, &f.password, client.addr).await {
        // Throttled: the form again, saying for how long (its CSRF token still holds).
        Err(crate::error::ApiError::TooManyRequests(message, secs)) => {
            let page = login_form(&next, Some(&message), &f.csrf);
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, page).into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Ok(super::refused(resp));
        }
        other => other?,
    };
    let Some(grant) = grant else {
        return Ok(super::refused(Redirect::to(&again).into_response()));
    };
    let cookie = session::start(&s.token_key, &f.username, grant, client.secure)?;
    let jar = jar.add(session::end_login_csrf(client.secure)).add(cookie);
    Ok((jar, Redirect::to(&next)).into_response())
}

/// Ends this session and revokes every other token and session of the user (as
/// `POST /auth/logout`).
async fn logout(
    State(s): State<AppState>,
    client: Client,
    jar: CookieJar,
    UserForm(user, _): UserForm<serde::de::IgnoredAny>,
) -> Result<impl IntoResponse, UiError> {
    auth::revoke_tokens(&s.pool, &user.username).await?;
    Ok((jar.add(session::end(client.secure)), Redirect::to("/login")))
}
