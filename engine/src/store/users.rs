//! Web users (`users`) and the web's secrets (`web_secrets`): the rows behind logins and
//! API tokens. Hashing and checking passwords is the web's business; this stores the hashes.

use sqlx::PgConnection;

use crate::error::Result;

/// What a user may do: Airflow's four roles, from least to most (what each may do is the
/// web's `roles` table).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    sqlx::Type,
)]
#[sqlx(type_name = "user_role", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    User,
    Op,
    Admin,
}

impl Role {
    /// Every role, from least to most.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::User, Role::Op, Role::Admin];

    /// The name users type and see (`admin`, `op`, `user`, `viewer`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Op => "op",
            Role::Admin => "admin",
        }
    }

    /// The role of this name, or a message listing the roles there are.
    pub fn parse(s: &str) -> std::result::Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role `{s}`: the roles are admin, op, user and viewer"))
    }
}

/// Creates the user; false (and nothing changed) if one by that name exists.
pub async fn insert(
    conn: &mut PgConnection,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// A user as `users list` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub username: String,
    pub role: Role,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Every user, by name.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<UserRow>> {
    Ok(
        sqlx::query_as("SELECT username, role, created_at FROM users ORDER BY username")
            .fetch_all(conn)
            .await?,
    )
}

/// Replaces a user's password hash and revokes every token and session issued before (see
/// [`revoke_tokens`]); false if there is no such user.
pub async fn set_password(
    conn: &mut PgConnection,
    username: &str,
    password_hash: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE users SET password_hash = $2, token_version = token_version + 1
             WHERE username = $1",
    )
    .bind(username)
    .bind(password_hash)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// What a change of the set of admins did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminChange {
    Done,
    NoSuchUser,
    /// Refused: no admin would be left.
    LastAdmin,
}

/// Sets a user's role (revoking every token and session issued before), unless that would
/// leave no admin. Call inside a transaction: the table
/// is locked so that two such changes at once cannot both remove "the other" admin.
pub async fn set_role(conn: &mut PgConnection, username: &str, role: Role) -> Result<AdminChange> {
    admin_change(
        conn,
        username,
        sqlx::query(
            "UPDATE users SET role = $2, token_version = token_version + 1 WHERE username = $1",
        )
        .bind(username)
        .bind(role),
        role != Role::Admin,
    )
    .await
}

/// Deletes a user, unless it is the last admin (inside a transaction, as [`set_role`]).
pub async fn delete(conn: &mut PgConnection, username: &str) -> Result<AdminChange> {
    admin_change(
        conn,
        username,
        sqlx::query("DELETE FROM users WHERE username = $1").bind(username),
        true,
    )
    .await
}

async fn admin_change<'q>(
    conn: &mut PgConnection,
    username: &str,
    change: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    drops_admin: bool,
) -> Result<AdminChange> {
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    let Some(Credentials { role, .. }) = credentials(conn, username).await? else {
        return Ok(AdminChange::NoSuchUser);
    };
    if drops_admin && role == Role::Admin {
        let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
            .fetch_one(&mut *conn)
            .await?;
        if admins <= 1 {
            return Ok(AdminChange::LastAdmin);
        }
    }
    change.execute(&mut *conn).await?;
    Ok(AdminChange::Done)
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

/// What signing in as a user checks against.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    pub password_hash: String,
    pub role: Role,
    /// The version tokens and sessions are issued under (see [`revoke_tokens`]).
    pub token_version: i32,
}

/// The stored password hash, role and token version of a user, if there is one by that name.
pub async fn credentials(conn: &mut PgConnection, username: &str) -> Result<Option<Credentials>> {
    Ok(
        sqlx::query_as("SELECT password_hash, role, token_version FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(conn)
            .await?,
    )
}

/// The role and token version of a user, checked on every request that carries a token or a
/// session: `None` once the user is deleted.
pub async fn grant(conn: &mut PgConnection, username: &str) -> Result<Option<(Role, i32)>> {
    Ok(
        sqlx::query_as("SELECT role, token_version FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(conn)
            .await?,
    )
}

/// Refuses every token and session of the user issued before, in every process at once (a
/// logout); false if there is no such user.
pub async fn revoke_tokens(conn: &mut PgConnection, username: &str) -> Result<bool> {
    Ok(
        sqlx::query("UPDATE users SET token_version = token_version + 1 WHERE username = $1")
            .bind(username)
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
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
