//! Users, passwords (argon2id) and API tokens (signed, expiring JWTs), and the extractors
//! that make every route authenticate: `Viewer` to read, `Admin` to change anything.

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

use crate::AppState;
use crate::error::ApiError;

/// What a user may do (stored in `users`, see `upiflow_engine::store::users`).
pub use upiflow_engine::store::users::Role;

/// How long an API token is valid.
pub const TOKEN_TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: i64,
}

/// An argon2id hash of `password` with a fresh salt, in PHC string form.
fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Creates or replaces a user.
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    password: &str,
    role: Role,
) -> Result<(), String> {
    if username.trim().is_empty() || password.len() < 8 {
        return Err("a username and a password of at least 8 characters are required".into());
    }
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
    if password.len() < 8 {
        return Err("a password of at least 8 characters is required".into());
    }
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

/// On first start (no user at all), creates the admin `admin` with a generated password and
/// returns that password, which is shown once; afterwards returns `None`.
pub async fn ensure_first_admin(pool: &PgPool) -> Result<Option<String>, String> {
    use base64::Engine;
    let bytes: [u8; 15] = rand::random();
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_password(&password)?;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let created = users::create_first_admin(&mut tx, &hash)
        .await
        .map_err(|e| format!("cannot store the first admin: {}", cause(&e)))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(created.then_some(password))
}

/// The user's role if the password is right.
pub async fn check_password(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> Result<Option<Role>, ApiError> {
    let row = {
        let mut conn = pool.acquire().await?;
        users::credentials(&mut conn, username).await?
    };
    // Argon2 is deliberately slow (tens of ms of CPU): off the async threads, so one login
    // or Basic-auth request does not stall the others served by the same thread.
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let Some((hash, role)) = row else {
            // Same work as a real check, so timing does not tell which usernames exist.
            let _ = hash_password(&password);
            return Ok(None);
        };
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::Internal(format!("stored hash unreadable: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            .then_some(role))
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

pub fn issue_token(key: &[u8], username: &str, role: Role) -> Result<String, ApiError> {
    let claims = Claims {
        sub: username.to_string(),
        role,
        exp: chrono::Utc::now().timestamp() + TOKEN_TTL_SECS,
    };
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key))
        .map_err(|e| ApiError::Internal(format!("cannot sign a token: {e}")))
}

/// Why a viewer is refused a change (the API's and the UI's answer alike).
pub fn read_only(username: &str) -> String {
    format!("user `{username}` may only read (role viewer)")
}

/// An authenticated user (any role).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub username: String,
    pub role: Role,
}

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Viewer);

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
            let data = jsonwebtoken::decode::<Claims>(
                token.trim(),
                &DecodingKey::from_secret(&state.token_key),
                &Validation::default(),
            )
            .map_err(|_| ApiError::Unauthorized)?;
            crate::audit::note_user(&parts.extensions, &data.claims.sub);
            return Ok(Viewer {
                username: data.claims.sub,
                role: data.claims.role,
            });
        }
        if let Some(basic) = header.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .map_err(|_| ApiError::Unauthorized)?;
            let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
            let (user, password) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
            let Some(role) = check_password(&state.pool, user, password).await? else {
                crate::audit::note_bad_basic(&parts.extensions, user);
                return Err(ApiError::Unauthorized);
            };
            crate::audit::note_user(&parts.extensions, user);
            return Ok(Viewer {
                username: user.to_string(),
                role,
            });
        }
        Err(ApiError::Unauthorized)
    }
}

impl<S> FromRequestParts<S> for Admin
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let v = Viewer::from_request_parts(parts, state).await?;
        if v.role != Role::Admin {
            return Err(ApiError::Forbidden(read_only(&v.username)));
        }
        Ok(Admin(v))
    }
}
