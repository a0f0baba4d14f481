//! The `sql` kind against a real Postgres (`DATABASE_URL`, a superuser; scripts/test.sh
//! starts one): typed binds, one transaction, and what a failing statement reports.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use upiflow_engine::logs::LogWriter;
use upiflow_engine::{PrepareCtx, TaskContext, TaskError, TaskKind};

/// A new database of its own for one test.
async fn fresh_db() -> PgPool {
    let admin = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a Postgres superuser (scripts/test.sh starts one)");
    let (_, url) = upiflow_engine::store::create_scratch_database(&admin, "t")
        .await
        .expect("create test database");
    PgPool::connect(&url)
        .await
        .expect("connect to test database")
}

fn context(pool: PgPool, params: Value) -> TaskContext {
    let start = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
    TaskContext {
        dag_id: "d".into(),
        run_id: "manual__1".into(),
        task_id: "t".into(),
        try_number: 1,
        max_tries: 1,
        logical_date: start,
        data_interval_start: start,
        data_interval_end: start + chrono::Duration::days(1),
        ds: NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
        allowed_lateness: std::time::Duration::ZERO,
        params: match params {
            Value::Object(map) => map,
            _ => Default::default(),
        },
        // No migrations here, so log lines fail to be stored; the writer only reports that.
        log: LogWriter::start(pool.clone()).for_try(1),
        secrets: upiflow_engine::secrets::Secrets::new(pool.clone(), None).expect("no key"),
        pool,
    }
}

/// Prepares a `sql` task reading `text` the way the DAG loader would.
fn prepare(text: &str) -> Value {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("upiflow-sql-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("sql")).expect("mkdir");
    std::fs::write(dir.join("sql/t.sql"), text).expect("write");
    let ctx = PrepareCtx {
        dag_id: "d",
        task_id: "t",
        dag_dir: Path::new(&dir),
        references: &Default::default(),
    };
    let keys: toml::Table = "sql = \"sql/t.sql\"".parse().expect("toml");
    upiflow_tasks::SqlKind
        .prepare(&ctx, keys)
        .expect("valid SQL file")
}

async fn run(pool: &PgPool, params: Value, text: &str) -> Result<(), TaskError> {
    let ctx = context(pool.clone(), params);
    upiflow_tasks::SqlKind.run(&ctx, &prepare(text)).await
}

#[tokio::test]
async fn sql_task_binds_every_parameter_with_its_type() {
    let pool = fresh_db().await;
    let text = "
        CREATE TABLE out (ds date, s timestamptz, e timestamptz, ld timestamptz, run text,
                          txt text, n bigint, f float8, b boolean, nothing text, doc jsonb);
        -- a comment with :not_a_param; and a cast below
        INSERT INTO out VALUES (:ds, :data_interval_start, :data_interval_end, :logical_date,
            :run_id, :params.txt, :params.n, :params.f, :params.b, :params.nothing, :params.doc);
        UPDATE out SET txt = txt || '::' || :ds::text WHERE ds = :ds;
    ";
    let params = json!({"txt": "it's", "n": 7, "f": 2.5, "b": true, "nothing": null,
                        "doc": {"k": [1, 2]}});
    run(&pool, params, text).await.expect("succeeds");

    let row = sqlx::query("SELECT * FROM out")
        .fetch_one(&pool)
        .await
        .expect("one row");
    let start = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
    assert_eq!(row.get::<NaiveDate, _>("ds"), start.date_naive());
    assert_eq!(row.get::<DateTime<Utc>, _>("s"), start);
    assert_eq!(
        row.get::<DateTime<Utc>, _>("e"),
        start + chrono::Duration::days(1)
    );
    assert_eq!(row.get::<DateTime<Utc>, _>("ld"), start);
    assert_eq!(row.get::<String, _>("run"), "manual__1");
    assert_eq!(row.get::<String, _>("txt"), "it's::2024-01-02");
    assert_eq!(row.get::<i64, _>("n"), 7);
    assert_eq!(row.get::<f64, _>("f"), 2.5);
    assert!(row.get::<bool, _>("b"));
    assert_eq!(row.get::<Option<String>, _>("nothing"), None);
    assert_eq!(row.get::<Value, _>("doc"), json!({"k": [1, 2]}));
}

#[tokio::test]
async fn a_failing_statement_rolls_back_the_whole_file_and_says_why() {
    let pool = fresh_db().await;
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY)")
        .execute(&pool)
        .await
        .expect("create");
    let text = "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\n\nINSERT INTO t VALUES (1);";
    let err = run(&pool, json!({}), text)
        .await
        .expect_err("duplicate key");
    let TaskError::Retryable(message) = err else {
        panic!("a database error should be retryable: {err:?}");
    };
    assert!(
        message.starts_with("statement 3/3 (line 4 of "),
        "{message}"
    );
    assert!(message.contains("duplicate key value"), "{message}");
    assert!(
        message.contains("SQLSTATE 23505, constraint t_pkey"),
        "{message}"
    );
    assert!(
        message.contains("detail: Key (id)=(1) already exists."),
        "{message}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 0, "the first two inserts must be rolled back");
}

#[tokio::test]
async fn dollar_quoted_bodies_reach_postgres_intact() {
    let pool = fresh_db().await;
    let text = "CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql AS $$ SELECT x * 2; $$;\n\
                CREATE TABLE r AS SELECT twice(21) AS v, :params.label::text AS label;";
    run(&pool, json!({"label": "ok"}), text)
        .await
        .expect("succeeds");
    let (v, label): (i32, String) = sqlx::query_as("SELECT v, label FROM r")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert_eq!((v, label.as_str()), (42, "ok"));
}
