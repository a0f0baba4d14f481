//! Connections and variables as stored: passwords, extras and values are whatever the caller
//! gives (Fernet tokens when the row's flags say so). The rules and the encryption are
//! `crate::secrets`'; this module sees ciphertext only.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::error::Result;
use crate::store::filters::{TextMatch, push_page};

/// A connection row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConnRow {
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    /// A Fernet token if `is_encrypted`.
    pub password: Option<String>,
    pub port: Option<i32>,
    /// A JSON object's text, or its Fernet token if `is_extra_encrypted`.
    pub extra: Option<String>,
    pub is_encrypted: bool,
    pub is_extra_encrypted: bool,
    pub updated_at: DateTime<Utc>,
}

const CONN_COLUMNS: &str = "conn_id, conn_type, description, host, schema, login, password, \
     port, extra, is_encrypted, is_extra_encrypted, updated_at";

/// What a connection list is sorted by (Airflow 3's `order_by` keys for connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnOrder {
    ConnId,
    ConnType,
    Description,
    Host,
    Port,
}

impl ConnOrder {
    fn column(self) -> &'static str {
        match self {
            ConnOrder::ConnId => "conn_id",
            ConnOrder::ConnType => "conn_type",
            ConnOrder::Description => "description",
            ConnOrder::Host => "host",
            ConnOrder::Port => "port",
        }
    }
}

/// One page of connections whose id matches every `id_matches`, and how many match in all.
pub async fn list_connections(
    conn: &mut PgConnection,
    id_matches: &[TextMatch],
    order: &[(ConnOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<ConnRow>, i64)> {
    let mut count: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT count(*) FROM connections WHERE true");
    for m in id_matches {
        m.push(&mut count, "conn_id");
    }
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {CONN_COLUMNS} FROM connections WHERE true"));
    for m in id_matches {
        m.push(&mut q, "conn_id");
    }
    push_page(
        &mut q,
        order.iter().map(|(o, d)| (o.column(), *d)),
        "conn_id",
        limit,
        offset,
    );
    Ok((q.build_query_as().fetch_all(&mut *conn).await?, total))
}

/// Every connection, by id; `lock`: `FOR UPDATE` until the transaction ends.
pub async fn all_connections(conn: &mut PgConnection, lock: bool) -> Result<Vec<ConnRow>> {
    let q = format!(
        "SELECT {CONN_COLUMNS} FROM connections ORDER BY conn_id{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_as(&q).fetch_all(conn).await?)
}

/// How many connections there are.
pub async fn count_connections(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM connections")
        .fetch_one(conn)
        .await?)
}

/// One connection; `lock`: `FOR UPDATE` until the transaction ends.
pub async fn get_connection(
    conn: &mut PgConnection,
    conn_id: &str,
    lock: bool,
) -> Result<Option<ConnRow>> {
    let q = format!(
        "SELECT {CONN_COLUMNS} FROM connections WHERE conn_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_as(&q)
        .bind(conn_id)
        .fetch_optional(conn)
        .await?)
}

fn bind_conn<'q>(
    q: sqlx::query::QueryAs<'q, Postgres, ConnRow, sqlx::postgres::PgArguments>,
    r: &'q ConnRow,
) -> sqlx::query::QueryAs<'q, Postgres, ConnRow, sqlx::postgres::PgArguments> {
    q.bind(&r.conn_id)
        .bind(&r.conn_type)
        .bind(&r.description)
        .bind(&r.host)
        .bind(&r.schema)
        .bind(&r.login)
        .bind(&r.password)
        .bind(r.port)
        .bind(&r.extra)
        .bind(r.is_encrypted)
        .bind(r.is_extra_encrypted)
}

const CONN_VALUES: &str = "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const CONN_INSERT: &str = "INSERT INTO connections (conn_id, conn_type, description, host, \
     schema, login, password, port, extra, is_encrypted, is_extra_encrypted) VALUES ";

/// Creates the connection (`updated_at` is ignored); `None` if one of that id exists.
pub async fn insert_connection(conn: &mut PgConnection, row: &ConnRow) -> Result<Option<ConnRow>> {
    let q = format!(
        "{CONN_INSERT}{CONN_VALUES} ON CONFLICT (conn_id) DO NOTHING RETURNING {CONN_COLUMNS}"
    );
    Ok(bind_conn(sqlx::query_as(&q), row)
        .fetch_optional(conn)
        .await?)
}

/// Creates the connection or replaces every field of the one of its id; whether it was
/// created.
pub async fn upsert_connection(conn: &mut PgConnection, row: &ConnRow) -> Result<(ConnRow, bool)> {
    let q = format!(
        "{CONN_INSERT}{CONN_VALUES} ON CONFLICT (conn_id) DO UPDATE SET
             conn_type = EXCLUDED.conn_type, description = EXCLUDED.description,
             host = EXCLUDED.host, schema = EXCLUDED.schema, login = EXCLUDED.login,
             password = EXCLUDED.password, port = EXCLUDED.port, extra = EXCLUDED.extra,
             is_encrypted = EXCLUDED.is_encrypted,
             is_extra_encrypted = EXCLUDED.is_extra_encrypted, updated_at = now()
         RETURNING {CONN_COLUMNS}"
    );
    let existed = get_connection(&mut *conn, &row.conn_id, true)
        .await?
        .is_some();
    let stored = bind_conn(sqlx::query_as(&q), row).fetch_one(conn).await?;
    Ok((stored, !existed))
}

/// Writes every field of `row` but its id and time to the connection of its id; `None` if
/// there is none.
pub async fn update_connection(conn: &mut PgConnection, row: &ConnRow) -> Result<Option<ConnRow>> {
    let q = format!(
        "UPDATE connections SET conn_type = $2, description = $3, host = $4, schema = $5,
             login = $6, password = $7, port = $8, extra = $9, is_encrypted = $10,
             is_extra_encrypted = $11, updated_at = now()
         WHERE conn_id = $1 RETURNING {CONN_COLUMNS}"
    );
    Ok(bind_conn(sqlx::query_as(&q), row)
        .fetch_optional(conn)
        .await?)
}

/// Deletes the connection; whether there was one.
pub async fn delete_connection(conn: &mut PgConnection, conn_id: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM connections WHERE conn_id = $1")
        .bind(conn_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// A variable row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VarRow {
    pub key: String,
    /// A Fernet token if `is_encrypted`.
    pub val: String,
    pub description: Option<String>,
    pub is_encrypted: bool,
    pub updated_at: DateTime<Utc>,
}

const VAR_COLUMNS: &str = "key, val, description, is_encrypted, updated_at";

/// What a variable list is sorted by (Airflow 3's `order_by` keys for variables but `_val`,
/// which would sort by ciphertext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarOrder {
    Key,
    Description,
    IsEncrypted,
}

impl VarOrder {
    fn column(self) -> &'static str {
        match self {
            VarOrder::Key => "key",
            VarOrder::Description => "description",
            VarOrder::IsEncrypted => "is_encrypted",
        }
    }
}

/// One page of variables whose key matches every `key_matches`, and how many match in all.
pub async fn list_variables(
    conn: &mut PgConnection,
    key_matches: &[TextMatch],
    order: &[(VarOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<(Vec<VarRow>, i64)> {
    let mut count: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT count(*) FROM variables WHERE true");
    for m in key_matches {
        m.push(&mut count, "key");
    }
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {VAR_COLUMNS} FROM variables WHERE true"));
    for m in key_matches {
        m.push(&mut q, "key");
    }
    push_page(
        &mut q,
        order.iter().map(|(o, d)| (o.column(), *d)),
        "key",
        limit,
        offset,
    );
    Ok((q.build_query_as().fetch_all(&mut *conn).await?, total))
}

/// Every variable, by key; `lock`: `FOR UPDATE` until the transaction ends.
pub async fn all_variables(conn: &mut PgConnection, lock: bool) -> Result<Vec<VarRow>> {
    let q = format!(
        "SELECT {VAR_COLUMNS} FROM variables ORDER BY key{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_as(&q).fetch_all(conn).await?)
}

/// How many variables there are.
pub async fn count_variables(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM variables")
        .fetch_one(conn)
        .await?)
}

/// One variable; `lock`: `FOR UPDATE` until the transaction ends.
pub async fn get_variable(
    conn: &mut PgConnection,
    key: &str,
    lock: bool,
) -> Result<Option<VarRow>> {
    let q = format!(
        "SELECT {VAR_COLUMNS} FROM variables WHERE key = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_as(&q).bind(key).fetch_optional(conn).await?)
}

/// Creates the variable or replaces its value, description and flag; whether it was created.
pub async fn upsert_variable(
    conn: &mut PgConnection,
    key: &str,
    val: &str,
    description: Option<&str>,
    is_encrypted: bool,
) -> Result<(VarRow, bool)> {
    let (key, val, description, is_encrypted, updated_at, created) = sqlx::query_as(
        "INSERT INTO variables (key, val, description, is_encrypted) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET val = EXCLUDED.val, description = EXCLUDED.description,
             is_encrypted = EXCLUDED.is_encrypted, updated_at = now()
         RETURNING key, val, description, is_encrypted, updated_at, (xmax = 0) AS created",
    )
    .bind(key)
    .bind(val)
    .bind(description)
    .bind(is_encrypted)
    .fetch_one(conn)
    .await?;
    let row = VarRow {
        key,
        val,
        description,
        is_encrypted,
        updated_at,
    };
    Ok((row, created))
}

/// Creates a variable; `None` if one of that key exists.
pub async fn insert_variable(
    conn: &mut PgConnection,
    key: &str,
    val: &str,
    description: Option<&str>,
    is_encrypted: bool,
) -> Result<Option<VarRow>> {
    Ok(sqlx::query_as(
        "INSERT INTO variables (key, val, description, is_encrypted) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO NOTHING RETURNING key, val, description, is_encrypted, updated_at",
    )
    .bind(key)
    .bind(val)
    .bind(description)
    .bind(is_encrypted)
    .fetch_optional(conn)
    .await?)
}

/// Deletes the variable; whether there was one.
pub async fn delete_variable(conn: &mut PgConnection, key: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM variables WHERE key = $1")
        .bind(key)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n > 0)
}
