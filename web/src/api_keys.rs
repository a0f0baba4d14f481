//! API keys for machines: long-lived, named, revocable bearer tokens (`upiflow tokens`).
//!
//! A key is [`PREFIX`] and 32 random bytes in base64url (47 characters). It is shown once,
//! when made; only its SHA-256 is stored (`upiflow_engine::store::api_keys`): the key is
//! random, so a slow password hash would add nothing but cost, and a request authenticated by
//! a key (a Prometheus scrape, say) costs one indexed lookup instead of an argon2 hash.
//!
//! Every request looks the key up again (no cache), so a revocation or an expiry holds at
//! once in every web process. A key's holder is named by the key's name: it is the
//! [`Viewer`]'s `username` and the owner of its audit-log rows.

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use upiflow_engine::EngineError;
use upiflow_engine::store::api_keys as store;
use upiflow_engine::store::users::Role;

use crate::auth::Viewer;
use crate::error::ApiError;

pub use upiflow_engine::store::api_keys::KeyRow;

/// Every key starts so, which tells it from a signed token.
pub const PREFIX: &str = "upf_";

/// Random bytes in a key.
const KEY_BYTES: usize = 32;

/// Characters after [`PREFIX`]: 32 bytes in unpadded base64url.
const KEY_CHARS: usize = 43;

/// A key's `last_used_at` is written when it is older than this, not on every request.
pub const TOUCH_AFTER_SECS: i64 = 60;

/// The longest `--expires-in` accepted (100 years; leave it out for a key that never expires).
pub const MAX_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86400);

/// Refuses a name that is not 1-64 characters of letters, digits, `_`, `-` or `.`.
pub fn check_name(name: &str) -> Result<(), EngineError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::ApiKeyNameInvalid(name.to_string()))
    }
}

/// The SHA-256 of the whole key, as stored.
fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A fresh key: [`PREFIX`] and 32 random bytes.
fn generate() -> String {
    format!("{PREFIX}{}", crate::auth::random_base64url::<KEY_BYTES>())
}

/// Whether `key` has the shape of a key (so a malformed one costs no database lookup).
fn well_formed(key: &str) -> bool {
    key.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == KEY_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    })
}

/// Makes a key named `name` with `role`, valid for `expires_in` (`None`: until revoked), and
/// returns it: the only time it is seen. Refused while a key of that name is not revoked.
pub async fn create(
    pool: &PgPool,
    name: &str,
    role: Role,
    created_by: &str,
    expires_in: Option<std::time::Duration>,
) -> Result<String, EngineError> {
    check_name(name)?;
    let expires_in_secs = match expires_in {
        None => None,
        Some(d) if d.as_secs() == 0 => {
            return Err(EngineError::ApiKeyExpiryInvalid(
                "must be at least one second (leave it out for a key that never expires)".into(),
            ));
        }
        Some(d) if d > MAX_EXPIRES_IN => {
            return Err(EngineError::ApiKeyExpiryInvalid(format!(
                "must be at most {} (leave it out for a key that never expires)",
                humanize(MAX_EXPIRES_IN)
            )));
        }
        Some(d) => Some(d.as_secs() as i64),
    };
    let key = generate();
    let mut conn = pool.acquire().await?;
    let created = store::insert(
        &mut conn,
        name,
        role,
        &hash(&key),
        created_by,
        expires_in_secs,
    )
    .await?;
    if !created {
        return Err(EngineError::ApiKeyExists(name.to_string()));
    }
    Ok(key)
}

fn humanize(d: std::time::Duration) -> String {
    format!("{} days", d.as_secs() / 86400)
}

/// Every key made, revoked ones too (never a key or its hash).
pub async fn list(pool: &PgPool) -> Result<Vec<KeyRow>, EngineError> {
    let mut conn = pool.acquire().await?;
    store::list(&mut conn).await
}

/// Revokes the live key of `name`: its next request, in any process, is a 401.
pub async fn revoke(pool: &PgPool, name: &str) -> Result<(), EngineError> {
    let mut conn = pool.acquire().await?;
    match store::revoke(&mut conn, name).await? {
        store::Revoked::Done => Ok(()),
        store::Revoked::NoSuchName => Err(EngineError::ApiKeyNotFound(name.to_string())),
        store::Revoked::AlreadyRevoked => Err(EngineError::ApiKeyRevoked(name.to_string())),
    }
}

/// The key's holder, if `key` is a live API key; a 401 otherwise.
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Viewer, ApiError> {
    if !well_formed(key) {
        return Err(ApiError::Unauthorized);
    }
    let mut conn = pool.acquire().await?;
    match store::authenticate(&mut conn, &hash(key), TOUCH_AFTER_SECS).await? {
        Some((name, role)) => Ok(Viewer {
            username: name,
            role,
            api_key: true,
        }),
        None => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_and_distinct() {
        let (a, b) = (generate(), generate());
        assert!(well_formed(&a) && well_formed(&b), "{a} {b}");
        assert_eq!(a.len(), PREFIX.len() + KEY_CHARS);
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
        assert!(!well_formed("upf_short"));
        assert!(!well_formed(&a.replacen("upf_", "upx_", 1)));
        assert!(!well_formed(&format!("{a}x")));
    }

    #[test]
    fn names_are_checked() {
        for good in ["prometheus", "a", "ci.deploy-1_x", &"n".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "slash/", "é", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
