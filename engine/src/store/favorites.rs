//! Each user's favourite DAGs (Airflow 3.1's `dag_favorite`). The owner is a user's name, or
//! an API key's name with `api_key` (the two name spaces are kept apart).

use sqlx::PgConnection;

use crate::error::{EngineError, Result};

/// Who a favourite belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub api_key: bool,
}

/// Marks `dag_id` a favourite of `owner`: `DagNotFound` for an unknown DAG,
/// `FavoriteExists` if it is one already.
pub async fn add(conn: &mut PgConnection, owner: &Owner, dag_id: &str) -> Result<()> {
    let done = sqlx::query(
        "INSERT INTO dag_favorites (owner, api_key, dag_id)
         SELECT $1, $2, dag_id FROM dags WHERE dag_id = $3
         ON CONFLICT DO NOTHING",
    )
    .bind(&owner.name)
    .bind(owner.api_key)
    .bind(dag_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    if crate::store::dag_list::exists(conn, dag_id).await? {
        Err(EngineError::FavoriteExists(dag_id.into()))
    } else {
        Err(EngineError::DagNotFound(dag_id.into()))
    }
}

/// Unmarks `dag_id` as a favourite of `owner`: `DagNotFound` for an unknown DAG,
/// `FavoriteMissing` if it was not one.
pub async fn remove(conn: &mut PgConnection, owner: &Owner, dag_id: &str) -> Result<()> {
    let done =
        sqlx::query("DELETE FROM dag_favorites WHERE owner = $1 AND api_key = $2 AND dag_id = $3")
            .bind(&owner.name)
            .bind(owner.api_key)
            .bind(dag_id)
            .execute(&mut *conn)
            .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    if crate::store::dag_list::exists(conn, dag_id).await? {
        Err(EngineError::FavoriteMissing(dag_id.into()))
    } else {
        Err(EngineError::DagNotFound(dag_id.into()))
    }
}

/// Whether `dag_id` is a favourite of `owner`.
pub async fn is_favorite(conn: &mut PgConnection, owner: &Owner, dag_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dag_favorites
                        WHERE owner = $1 AND api_key = $2 AND dag_id = $3)",
    )
    .bind(&owner.name)
    .bind(owner.api_key)
    .bind(dag_id)
    .fetch_one(conn)
    .await?)
}
