//! Users, passwords (argon2id) and API tokens (signed, expiring JWTs), and the extractors
//! that make every route authenticate: [`Viewer`] to read, [`Allowed`] to change, as the
//! user's role may ([`crate::roles`]).
//!
//! Every token and session names the user's token version; each request checks it against
//! `users` ([`current_role`]), so a password or role change, a deletion or a logout refuses
//! everything issued before, at once and in every process. Sign-ins (the login form,
//! `/auth/token`, HTTP Basic) go through [`sign_in`], throttled by [`crate::throttle`].

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use upiflow_engine::EngineError;
use upiflow_engine::store::users;

use std::marker::PhantomData;
use std::net::IpAddr;

use crate::AppState;
use crate::error::ApiError;
use crate::roles::{self, Permission};

/// What a user may do (stored in `users`, see `upiflow_engine::store::users`).
pub use upiflow_engine::store::users::Role;

/// How long an API token is valid.
pub const TOKEN_TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: i64,
    /// The user's token version when issued.
    ver: i32,
}

/// What a proven password grants: the user's role, and the token version to issue under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub version: i32,
}

/// An argon2id hash of `password` with a fresh salt, in PHC string form.
fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Creates a user (an existing name is an error).
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    password: &str,
    role: Role,
) -> Result<(), String> {
    if username.trim().is_empty() {
        return Err("a username is required".into());
    }
    check_strength(password)?;
    let hash = hash_password(password)?;
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| format!("cannot store the user: {e}"))?;
    let created = users::insert(&mut conn, username, &hash, role)
        .await
        .map_err(|e| format!("cannot store the user: {}", cause(&e)))?;
    if !created {
        return Err(format!(
            "user `{username}` exists already: change its password with `upiflow users \
             set-password` or its role with `upiflow users set-role`"
        ));
    }
    Ok(())
}

/// Refuses a password shorter than [`MIN_PASSWORD_LEN`] characters.
fn check_strength(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password is too short ({n} characters): at least {MIN_PASSWORD_LEN} are required"
        ));
    }
    Ok(())
}

/// Every user (name, role, created).
pub async fn list_users(pool: &PgPool) -> Result<Vec<users::UserRow>, String> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| format!("cannot read the users: {e}"))?;
    users::list(&mut conn)
        .await
        .map_err(|e| format!("cannot read the users: {}", cause(&e)))
}

/// Replaces a user's password (at least 8 characters, as for a new user).
pub async fn set_password(pool: &PgPool, username: &str, password: &str) -> Result<(), String> {
    check_strength(password)?;
    let hash = hash_password(password)?;
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| format!("cannot store the password: {e}"))?;
    match users::set_password(&mut conn, username, &hash).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("there is no user `{username}`")),
        Err(e) => Err(format!("cannot store the password: {}", cause(&e))),
    }
}

/// Sets a user's role; refused if it would leave no admin.
pub async fn set_role(pool: &PgPool, username: &str, role: Role) -> Result<(), String> {
    admin_change(pool, username, "change the role", async |tx| {
        users::set_role(tx, username, role).await
    })
    .await
}

/// Deletes a user; refused for the last admin.
pub async fn delete_user(pool: &PgPool, username: &str) -> Result<(), String> {
    admin_change(pool, username, "delete the user", async |tx| {
        users::delete(tx, username).await
    })
    .await
}

async fn admin_change(
    pool: &PgPool,
    username: &str,
    what: &str,
    change: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<users::AdminChange, EngineError>,
) -> Result<(), String> {
    let fail = |e: EngineError| format!("cannot {what}: {}", cause(&e));
    let mut tx = pool.begin().await.map_err(|e| fail(e.into()))?;
    let done = change(&mut tx).await.map_err(fail)?;
    match done {
        users::AdminChange::Done => {
            tx.commit().await.map_err(|e| fail(e.into()))?;
            Ok(())
        }
        users::AdminChange::NoSuchUser => Err(format!("there is no user `{username}`")),
        users::AdminChange::LastAdmin => Err(format!(
            "cannot {what}: `{username}` is the last admin (make another user admin first)"
        )),
    }
}

/// `N` bytes of the thread's CSPRNG (ChaCha, seeded by the OS) in unpadded base64url: the
/// first admin's password, CSRF tokens, API keys.
pub fn random_base64url<const N: usize>() -> String {
    let bytes: [u8; N] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// On first start (no user at all), creates the admin `admin` with a generated password and
/// returns that password, which is shown once; afterwards returns `None`.
pub async fn ensure_first_admin(pool: &PgPool) -> Result<Option<String>, String> {
    let password = random_base64url::<15>();
    let hash = hash_password(&password)?;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let created = users::create_first_admin(&mut tx, &hash)
        .await
        .map_err(|e| format!("cannot store the first admin: {}", cause(&e)))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(created.then_some(password))
}

/// A sign-in: refused at once (429) while `username` or `addr` is throttled
/// ([`crate::throttle`], as `state.throttle` says), before any hashing; otherwise what the
/// password grants. Only a wrong password counts as a failure (against both).
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: &str,
    addr: Option<IpAddr>,
) -> Result<Option<Grant>, ApiError> {
    let pool = &state.pool;
    let attempt = crate::throttle::check(pool, state.throttle, username, addr).await?;
    let grant = check_password(pool, username, password).await;
    if !matches!(grant, Ok(None)) {
        // Right, or not checked (the database failed): not a failure. If taking it back
        // fails too, it stays counted; the sign-in's own answer matters more.
        if let Err(error) = attempt.not_failed(pool).await {
            tracing::warn!(%error, "cannot take back a sign-in attempt from the throttle");
        }
    }
    grant
}

/// Refuses every token and session of `username` issued before (a logout).
pub async fn revoke_tokens(pool: &PgPool, username: &str) -> Result<(), ApiError> {
    let mut conn = pool.acquire().await?;
    users::revoke_tokens(&mut conn, username).await?;
    Ok(())
}

/// The current role of a token's or session's user, if the token's version is still the
/// user's: a 401 once the user changed their password or role, logged out, or was deleted.
pub async fn current_role(pool: &PgPool, username: &str, version: i32) -> Result<Role, ApiError> {
    let mut conn = pool.acquire().await?;
    match users::grant(&mut conn, username).await? {
        Some((role, v)) if v == version => Ok(role),
        _ => Err(ApiError::Unauthorized),
    }
}

/// What the password grants, if it is right (unthrottled: sign-ins go through [`sign_in`]).
pub async fn check_password(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> Result<Option<Grant>, ApiError> {
    let row = {
        let mut conn = pool.acquire().await?;
        users::credentials(&mut conn, username).await?
    };
    // Argon2 is deliberately slow (tens of ms of CPU): off the async threads, so one login
    // or Basic-auth request does not stall the others served by the same thread.
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let Some(users::Credentials {
            password_hash: hash,
            role,
            token_version,
        }) = row
        else {
            // Same work as a real check, so timing does not tell which usernames exist.
            let _ = hash_password(&password);
            return Ok(None);
        };
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::Internal(format!("stored hash unreadable: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            .then_some(Grant {
                role,
                version: token_version,
            }))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password check failed: {e}")))?
}

/// The signing key of this database, made on first use.
pub async fn signing_key(pool: &PgPool) -> Result<Vec<u8>, EngineError> {
    let fresh: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let mut conn = pool.acquire().await?;
    users::token_key(&mut conn, &fresh).await
}

/// What the database said, without the engine's wrapping ("database error").
fn cause(e: &EngineError) -> String {
    match std::error::Error::source(e) {
        Some(source) => source.to_string(),
        None => e.to_string(),
    }
}

/// A signed API token for `username`, valid for [`TOKEN_TTL_SECS`] unless revoked first.
pub fn issue_token(key: &[u8], username: &str, grant: Grant) -> Result<String, ApiError> {
    let claims = Claims {
        sub: username.to_string(),
        role: grant.role,
        ver: grant.version,
        exp: chrono::Utc::now().timestamp() + TOKEN_TTL_SECS,
    };
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key))
        .map_err(|e| ApiError::Internal(format!("cannot sign a token: {e}")))
}

/// An authenticated user (any role), or an API key's holder.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub username: String,
    pub role: Role,
    /// Authenticated by an API key (`username` is then the key's name).
    pub api_key: bool,
}

/// An authenticated user whose role may take the action `P` (else a 403).
#[derive(Debug, Clone)]
pub struct Allowed<P>(pub Viewer, pub PhantomData<P>);

impl<S> FromRequestParts<S> for Viewer
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        if let Some(token) = header.strip_prefix("Bearer ") {
            let token = token.trim();
            if token.starts_with(crate::api_keys::PREFIX) {
                let v = crate::api_keys::authenticate(&state.pool, token).await?;
                crate::audit::note_api_key(&parts.extensions, &v.username);
                return Ok(v);
            }
            let data = jsonwebtoken::decode::<Claims>(
                token,
                &DecodingKey::from_secret(&state.token_key),
                &Validation::default(),
            )
            .map_err(|_| ApiError::Unauthorized)?;
            let role = current_role(&state.pool, &data.claims.sub, data.claims.ver).await?;
            crate::audit::note_user(&parts.extensions, &data.claims.sub);
            return Ok(Viewer {
                username: data.claims.sub,
                role,
                api_key: false,
            });
        }
        if let Some(basic) = header.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .map_err(|_| ApiError::Unauthorized)?;
            let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
            let (user, password) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
            let addr = state
                .transport
                .client_addr(&parts.extensions, &parts.headers);
            let grant = match sign_in(&state, user, password, addr).await {
                Ok(Some(grant)) => grant,
                Ok(None) => {
                    crate::audit::note_bad_basic(&parts.extensions, user);
                    return Err(ApiError::Unauthorized);
                }
                // A throttled Basic attempt is a refused sign-in in the audit log too.
                Err(e @ ApiError::TooManyRequests(..)) => {
                    crate::audit::note_bad_basic(&parts.extensions, user);
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            crate::audit::note_user(&parts.extensions, user);
            return Ok(Viewer {
                username: user.to_string(),
                role: grant.role,
                api_key: false,
            });
        }
        Err(ApiError::Unauthorized)
    }
}

impl<S, P> FromRequestParts<S> for Allowed<P>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    P: Permission,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let v = Viewer::from_request_parts(parts, state).await?;
        if !roles::may(v.role, P::ACTION) {
            return Err(ApiError::Forbidden(roles::refusal(
                &v.username,
                v.role,
                P::ACTION,
            )));
        }
        Ok(Allowed(v, PhantomData))
    }
}
