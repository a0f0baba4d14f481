//! Web users (`users`) and the web's secrets (`web_secrets`): the rows behind logins and
//! API tokens. Hashing and checking passwords is the web's business; this stores the hashes.

use sqlx::PgConnection;

use crate::error::Result;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::Type)]
#[sqlx(type_name = "user_role", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Viewer,
}

/// Creates the user, or replaces the password hash and role of the one with that name.
pub async fn upsert(
    conn: &mut PgConnection,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates the admin `admin` with this hash if there is no user at all; true if it did.
/// Two first starts at once: the table lock makes one of them see the other's user.
pub async fn create_first_admin(conn: &mut PgConnection, password_hash: &str) -> Result<bool> {
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    let created = sqlx::query(
        "INSERT INTO users (username, password_hash, role)
         SELECT 'admin', $1, 'admin' WHERE NOT EXISTS (SELECT 1 FROM users)",
    )
    .bind(password_hash)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    Ok(created)
}

/// The stored password hash and the role of a user, if there is one by that name.
pub async fn credentials(
    conn: &mut PgConnection,
    username: &str,
) -> Result<Option<(String, Role)>> {
    Ok(
        sqlx::query_as("SELECT password_hash, role FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(conn)
            .await?,
    )
}

/// The token signing key of this database: `fresh` if none was stored yet (the first caller
/// wins, so every process agrees on one key).
pub async fn token_key(conn: &mut PgConnection, fresh: &[u8]) -> Result<Vec<u8>> {
    sqlx::query(
        "INSERT INTO web_secrets (name, value) VALUES ('token_key', $1) ON CONFLICT DO NOTHING",
    )
    .bind(fresh)
    .execute(&mut *conn)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM web_secrets WHERE name = 'token_key'")
            .fetch_one(conn)
            .await?,
    )
}
