//! `sign_in_failures`: the failed (and in-flight) sign-ins each key (`user:NAME`,
//! `addr:IP`) has had lately, for the web's throttle. Times are the database's clock
//! (`clock_timestamp()`), so every web process counts the same window.

use sqlx::PgConnection;

use crate::error::Result;

/// If any of `keys` has at least `max` rows in the last `window_secs` seconds: the whole
/// seconds (rounded up) until enough of them have left the window for one more attempt (for
/// the key that waits longest). `None`: none is throttled.
///
/// Reads at most `max` index entries per key (the newest first).
pub async fn throttled_for(
    conn: &mut PgConnection,
    keys: &[String],
    max: i64,
    window_secs: f64,
) -> Result<Option<i64>> {
    // The `max`-th newest row of a key inside the window is the one whose leaving lets one
    // more attempt in.
    Ok(sqlx::query_scalar(
        "SELECT max(ceil(extract(epoch FROM f.at + w.win - clock_timestamp())))::bigint
         FROM (SELECT $2::float8 * interval '1 second' AS win) w
         CROSS JOIN unnest($1::text[]) AS k(key)
         CROSS JOIN LATERAL (
             SELECT s.at FROM sign_in_failures s
             WHERE s.key = k.key AND s.at > clock_timestamp() - w.win
             ORDER BY s.at DESC
             OFFSET $3 - 1 LIMIT 1
         ) f",
    )
    .bind(keys)
    .bind(window_secs)
    .bind(max)
    .fetch_one(conn)
    .await?)
}

/// Serialises the attempts on `key` until the current transaction ends (so a check and the
/// insert after it are one step for concurrent attempts). Lock keys in a fixed order.
pub async fn lock_key(conn: &mut PgConnection, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('upiflow.sign_in'), hashtext($1))")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts an attempt against every one of `keys` (one row each) and returns the rows' ids;
/// first deletes up to 100 rows older than `window_secs`, whatever their key, skipping rows
/// another transaction holds, so the table keeps about one window's worth of rows.
pub async fn record(
    conn: &mut PgConnection,
    keys: &[String],
    window_secs: f64,
) -> Result<Vec<i64>> {
    sqlx::query(
        "DELETE FROM sign_in_failures WHERE id IN (
             SELECT id FROM sign_in_failures
             WHERE at < clock_timestamp() - $1::float8 * interval '1 second'
             ORDER BY at LIMIT 100
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(window_secs)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_scalar(
        "INSERT INTO sign_in_failures (key) SELECT unnest($1::text[]) RETURNING id",
    )
    .bind(keys)
    .fetch_all(conn)
    .await?)
}

/// Takes back the rows of an attempt that did not fail (the password was right, or it could
/// not be checked).
pub async fn forget(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    sqlx::query("DELETE FROM sign_in_failures WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}
