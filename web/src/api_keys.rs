//! API keys for machines: long-lived, named, revocable bearer tokens (`upiflow tokens`).

use sqlx::PgPool;

use crate::auth::Viewer;
use crate::error::ApiError;

/// Every key starts so, which tells it from a signed token.
pub const PREFIX: &str = "upf_";

/// The key's holder, if `key` is a live API key; a 401 otherwise.
pub async fn authenticate(_pool: &PgPool, _key: &str) -> Result<Viewer, ApiError> {
    Err(ApiError::Unauthorized)
}
