//! What the DAG-file sync records besides versions: the import errors of files that do not
//! parse, and which DAGs are active (their file is in the folder, valid or not).

use sqlx::PgConnection;

use crate::error::Result;

/// Replaces the import errors with these `(file, line, message)` rows.
pub async fn replace_import_errors(
    conn: &mut PgConnection,
    files: &[String],
    lines: &[i32],
    messages: &[&str],
) -> Result<()> {
    sqlx::query("DELETE FROM import_errors")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO import_errors (fileloc, line, message)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::text[])",
    )
    .bind(files)
    .bind(lines)
    .bind(messages)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks active exactly the DAGs named in `valid` or whose file is one of `broken` (a file
/// that no longer parses keeps its DAG active on its last good version).
pub async fn set_active(conn: &mut PgConnection, valid: &[&str], broken: &[String]) -> Result<()> {
    sqlx::query(
        "UPDATE dags SET is_active = (dag_id = ANY($1) OR fileloc = ANY($2))
         WHERE is_active IS DISTINCT FROM (dag_id = ANY($1) OR fileloc = ANY($2))",
    )
    .bind(valid)
    .bind(broken)
    .execute(conn)
    .await?;
    Ok(())
}
