//! API keys for machines (`api_keys`): named, revocable, optionally expiring bearer keys, of
//! which only a SHA-256 is stored. Making keys and hashing them is the web's business
//! (`upiflow_web::api_keys`); this stores the hashes and finds a key by its hash.

use sqlx::PgConnection;

use crate::error::Result;
use crate::store::users::Role;

/// Stores a new key named `name`, valid for `expires_in_secs` from now (`None`: until
/// revoked); false (and nothing changed) if a key by that name is live, i.e. not revoked
/// (an expired key still holds its name until it is revoked).
pub async fn insert(
    conn: &mut PgConnection,
    name: &str,
    role: Role,
    key_hash: &[u8],
    created_by: &str,
    expires_in_secs: Option<i64>,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO api_keys (name, role, key_hash, created_by, expires_at)
         VALUES ($1, $2, $3, $4, now() + $5::float8 * interval '1 second')
         ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING",
    )
    .bind(name)
    .bind(role)
    .bind(key_hash)
    .bind(created_by)
    .bind(expires_in_secs)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The name and role of the live (not revoked, not expired) key with this hash, if any.
/// Its `last_used_at` is set to now in the same statement, but only when it is older than
/// `touch_after_secs` (or unset), so a key used often costs one write a while, not one per
/// request.
pub async fn authenticate(
    conn: &mut PgConnection,
    key_hash: &[u8],
    touch_after_secs: i64,
) -> Result<Option<(String, Role)>> {
    Ok(sqlx::query_as(
        "WITH live AS (
             SELECT id, name, role, last_used_at FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > now())
         ), touched AS (
             UPDATE api_keys k SET last_used_at = now() FROM live
             WHERE k.id = live.id
               AND (live.last_used_at IS NULL
                    OR live.last_used_at < now() - $2::float8 * interval '1 second')
         )
         SELECT name, role FROM live",
    )
    .bind(key_hash)
    .bind(touch_after_secs)
    .fetch_optional(conn)
    .await?)
}

/// A key as `tokens list` shows it (never the key, never its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub name: String,
    pub role: Role,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub created_by: Option<String>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether it has expired (by the database's clock).
    pub expired: bool,
}

/// Every key, revoked ones too, by name and then age.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<KeyRow>> {
    Ok(sqlx::query_as(
        "SELECT name, role, created_at, created_by, last_used_at, expires_at, revoked_at,
                coalesce(expires_at <= now(), false) AS expired
         FROM api_keys ORDER BY name, created_at, id",
    )
    .fetch_all(conn)
    .await?)
}

/// What revoking a name did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Done,
    /// No key was ever made under this name.
    NoSuchName,
    /// Every key of this name is revoked already.
    AlreadyRevoked,
}

/// Revokes the live key of `name`, effective for the next request of every process.
pub async fn revoke(conn: &mut PgConnection, name: &str) -> Result<Revoked> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if done > 0 {
        return Ok(Revoked::Done);
    }
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = $1)")
        .bind(name)
        .fetch_one(conn)
        .await?;
    Ok(if known {
        Revoked::AlreadyRevoked
    } else {
        Revoked::NoSuchName
    })
}
