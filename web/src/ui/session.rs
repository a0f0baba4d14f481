//! Browser sessions: a signed, expiring session token in an HttpOnly SameSite=Strict cookie,
//! and CSRF tokens on every form (the session's own token for signed-in forms; a
//! double-submitted cookie for the login form).

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::UiError;
use crate::AppState;
use crate::auth::{Grant, Role};
use crate::roles::{self, Action, Permission};

pub const SESSION_COOKIE: &str = "upiflow_session";
pub const LOGIN_CSRF_COOKIE: &str = "upiflow_login_csrf";
/// How long a browser session lasts.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// Sessions carry this audience, so an API token is never a session and a session never an
/// API token (the API refuses tokens that name an audience).
const AUDIENCE: &str = "upiflow-ui";

#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    role: Role,
    exp: i64,
    aud: String,
    csrf: String,
    /// The user's token version when signed in (see `crate::auth::current_role`).
    ver: i32,
}

/// A signed-in user of the UI.
#[derive(Debug, Clone)]
pub struct UiUser {
    pub username: String,
    pub role: Role,
    /// The value every form of this session must send back as `csrf`.
    pub csrf: String,
    /// The registered product's dashboard `(path, title)` for the navigation bar, if any.
    pub dashboard: Option<(&'static str, &'static str)>,
}

impl UiUser {
    /// Whether the user's role may take `action` (forms and buttons are shown only then).
    pub fn may(&self, action: Action) -> bool {
        roles::may(self.role, action)
    }
}

pub fn random_token() -> String {
    crate::auth::random_base64url::<24>()
}

/// `secure`: the browser came over https (`crate::transport::Transport::secure`), so the
/// cookie is never sent over plain http.
fn cookie(name: &'static str, value: String, max_age_secs: i64, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
}

/// The session cookie for a user who just proved their password.
pub fn start(
    key: &[u8],
    username: &str,
    grant: Grant,
    secure: bool,
) -> Result<Cookie<'static>, UiError> {
    let claims = SessionClaims {
        sub: username.to_string(),
        role: grant.role,
        ver: grant.version,
        exp: chrono::Utc::now().timestamp() + SESSION_TTL_SECS,
        aud: AUDIENCE.into(),
        csrf: random_token(),
    };
    let token = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key))
        .map_err(|e| UiError::Internal(format!("cannot sign a session: {e}")))?;
    Ok(cookie(SESSION_COOKIE, token, SESSION_TTL_SECS, secure))
}

/// Removes the session cookie.
pub fn end(secure: bool) -> Cookie<'static> {
    cookie(SESSION_COOKIE, String::new(), 0, secure)
}

/// Removes the login form's CSRF cookie (once signed in), `Secure` like the cookie it ends.
pub fn end_login_csrf(secure: bool) -> Cookie<'static> {
    cookie(LOGIN_CSRF_COOKIE, String::new(), 0, secure)
}

/// A fresh token for the login form, and the cookie that carries its twin.
pub fn login_csrf(secure: bool) -> (String, Cookie<'static>) {
    let token = random_token();
    (
        token.clone(),
        cookie(LOGIN_CSRF_COOKIE, token, 3600, secure),
    )
}

/// A session's user and the token version it was signed in under.
fn decode(key: &[u8], token: &str) -> Option<(UiUser, i32)> {
    let mut v = Validation::default();
    v.set_audience(&[AUDIENCE]);
    let data =
        jsonwebtoken::decode::<SessionClaims>(token, &DecodingKey::from_secret(key), &v).ok()?;
    Some((
        UiUser {
            username: data.claims.sub,
            role: data.claims.role,
            csrf: data.claims.csrf,
            dashboard: None,
        },
        data.claims.ver,
    ))
}

/// Compares two secrets without stopping at the first difference.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Where to go back to after logging in: only a path on this site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

impl<S> FromRequestParts<S> for UiUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let jar = CookieJar::from_headers(&parts.headers);
        if let Some((user, version)) = jar
            .get(SESSION_COOKIE)
            .and_then(|c| decode(&state.token_key, c.value()))
        {
            // A revoked session (password or role changed, logged out, user deleted) is no
            // session: to the login page.
            let role = match crate::auth::current_role(&state.pool, &user.username, version).await {
                Ok(role) => role,
                Err(crate::error::HttpError::Unauthorized) => {
                    return Err(UiError::LoginRequired(here(parts)));
                }
                Err(e) => return Err(e.into()),
            };
            crate::audit::note_user(&parts.extensions, &user.username);
            let dashboard = state.product.as_ref().map(|p| {
                let d = p.dashboard();
                (d.path, d.title)
            });
            return Ok(UiUser {
                dashboard,
                role,
                ..user
            });
        }
        Err(UiError::LoginRequired(here(parts)))
    }
}

/// This request's path and query, to come back to after logging in.
fn here(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A submitted form of a signed-in user whose `csrf` field matches the session. A missing or
/// wrong token is a 403.
pub struct UserForm<T>(pub UiUser, pub T);

/// The same for a user whose role may take the action `P` (else a 403): every changing form
/// of the UI goes through this.
pub struct Permitted<P, T>(pub UiUser, pub T, pub PhantomData<P>);

impl<S, T> FromRequest<S> for UserForm<T>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = UiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let user = UiUser::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    UiError::TooLarge(format!(
                        "the form is larger than {} KiB",
                        crate::BODY_LIMIT / 1024
                    ))
                } else {
                    UiError::BadRequest(e.body_text())
                }
            })?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| UiError::BadRequest(format!("unreadable form: {e}")))?;
        if !same_secret(&field.csrf, &user.csrf) {
            return Err(UiError::Forbidden(
                "the form's CSRF token is missing or stale; reload the page and try again".into(),
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| UiError::BadRequest(format!("bad form: {e}")))?;
        Ok(UserForm(user, form))
    }
}

impl<S, P, T> FromRequest<S> for Permitted<P, T>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    P: Permission,
    T: DeserializeOwned,
{
    type Rejection = UiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let UserForm(user, form) = UserForm::from_request(req, state).await?;
        if !user.may(P::ACTION) {
            return Err(UiError::Forbidden(roles::refusal(
                &user.username,
                user.role,
                P::ACTION,
            )));
        }
        Ok(Permitted(user, form, PhantomData))
    }
}
