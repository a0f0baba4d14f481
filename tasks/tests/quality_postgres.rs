//! The `quality` kind against a real Postgres (`DATABASE_URL`, a superuser; scripts/test.sh
//! starts one) with the project's migrations: each test passing on right data and failing
//! on wrong data, with the failing row count in the try's log and the task's error.

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::Map;
use sqlx::PgPool;
use upiflow_engine::logs::LogWriter;
use upiflow_engine::{PrepareCtx, TaskContext, TaskError, TaskKind};
use upiflow_tasks::QualityKind;

/// A fresh database with the migrations applied, and a task instance to hang tries on.
struct Db {
    pool: PgPool,
    writer: LogWriter,
    ti_id: i64,
}

/// What one try returned and the lines it logged.
type Outcome = (Result<(), TaskError>, Vec<String>);

impl Db {
    async fn new() -> Self {
        let admin = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL must point at a Postgres superuser (scripts/test.sh starts one)");
        let (_, url) = upiflow_engine::store::create_scratch_database(&admin, "t")
            .await
            .expect("create test database");
        let pool = PgPool::connect(&url)
            .await
            .expect("connect to test database");
        upiflow_engine::store::migrate(&pool)
            .await
            .expect("migrate");
        // task_logs.try_id needs a try, which needs the whole chain above it.
        let ti_id: i64 = sqlx::query_scalar(
            "WITH d AS (INSERT INTO dags (dag_id) VALUES ('d') RETURNING dag_id),
                  v AS (INSERT INTO dag_versions (dag_id, hash, spec, number)
                        SELECT dag_id, 'h', '{}', 1 FROM d RETURNING dag_id),
                  r AS (INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start,
                                              data_interval_end, run_type, dag_hash)
                        SELECT dag_id, 'manual__1', '2024-01-02Z', '2024-01-02Z', '2024-01-03Z',
                               'manual', 'h' FROM v RETURNING id)
             INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, max_tries)
             SELECT id, 'd', 'manual__1', 'quality_checks', 1 FROM r RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .expect("task instance");
        let writer = LogWriter::start(pool.clone());
        Self {
            pool,
            writer,
            ti_id,
        }
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .expect("seed SQL runs");
    }

    /// Prepares `checks` (the TOML array's items) and runs them as a new try for the interval
    /// [2024-01-02, 2024-01-03) UTC.
    async fn check(&self, checks: &str) -> Outcome {
        let try_id: i64 = sqlx::query_scalar(
            "INSERT INTO task_tries (ti_id, try_number, worker)
             SELECT $1, coalesce(max(try_number), 0) + 1, 'test' FROM task_tries WHERE ti_id = $1
             RETURNING id",
        )
        .bind(self.ti_id)
        .fetch_one(&self.pool)
        .await
        .expect("try");
        let dir = std::env::temp_dir();
        let prepare = PrepareCtx {
            dag_id: "d",
            task_id: "quality_checks",
            dag_dir: &dir,
            references: &Default::default(),
        };
        let keys: toml::Table = format!("checks = [\n{checks}\n]").parse().expect("toml");
        let config = QualityKind.prepare(&prepare, keys).expect("valid checks");
        let start = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
        let ctx = TaskContext {
            dag_id: "d".into(),
            run_id: "manual__1".into(),
            task_id: "quality_checks".into(),
            try_number: 1,
            max_tries: 1,
            logical_date: start,
            data_interval_start: start,
            data_interval_end: start + chrono::Duration::days(1),
            ds: NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
            allowed_lateness: std::time::Duration::ZERO,
            params: Map::new(),
            pool: self.pool.clone(),
            secrets: upiflow_engine::secrets::Secrets::new(self.pool.clone(), None)
                .expect("no key"),
            log: self.writer.for_try(try_id),
        };
        let result = QualityKind.run(&ctx, &config).await;
        self.writer.flush().await;
        let log = sqlx::query_scalar("SELECT line FROM task_logs WHERE try_id = $1 ORDER BY id")
            .bind(try_id)
            .fetch_all(&self.pool)
            .await
            .expect("log lines");
        (result, log)
    }

    /// Runs the one check `checks` and asserts it passed.
    async fn passes(&self, checks: &str, name: &str) {
        let (result, log) = self.check(checks).await;
        assert_eq!(result, Ok(()), "{log:#?}");
        let line = format!("PASS {name} (0 failing rows)");
        assert!(log.contains(&line), "{line:?} not in {log:#?}");
        assert_eq!(log.last().unwrap(), "checks: 1 passed, 0 warned, 0 failed");
    }

    /// Runs the one check `checks` and asserts it failed the task with `n` failing rows.
    async fn fails(&self, checks: &str, name: &str, n: i64) {
        let (result, log) = self.check(checks).await;
        let message = format!("1 of 1 quality checks failed: {name} ({n} {})", rows(n));
        assert_eq!(result, Err(TaskError::Fatal(message)), "{log:#?}");
        let line = format!("FAIL {name} ({n} failing {})", rows(n));
        assert!(log.contains(&line), "{line:?} not in {log:#?}");
        assert_eq!(log.last().unwrap(), "checks: 0 passed, 0 warned, 1 failed");
    }
}

fn rows(n: i64) -> &'static str {
    if n == 1 { "row" } else { "rows" }
}

/// Rows of the raw audit table, whose `txn_id` may be NULL (`-`) or repeated: `"a b -"`.
fn raw(partition: i32, ids: &str) -> String {
    let values: Vec<_> = (ids.split_whitespace().enumerate())
        .map(|(i, id)| {
            let id = if id == "-" {
                "NULL".into()
            } else {
                format!("'{id}'")
            };
            format!("('upi', {partition}, {i}, '{{}}', true, {id})")
        })
        .collect();
    format!(
        "INSERT INTO raw_upi_transactions (kafka_topic, kafka_partition, kafka_offset, payload, \
         valid, txn_id) VALUES {};",
        values.join(", ")
    )
}

/// Rows of the staging table, `"txn_id amount status txn_date; ..."`.
fn stg(rows: &str) -> String {
    let values: Vec<_> = (rows.split(';').map(str::split_whitespace))
        .map(|mut row| {
            let mut next = || row.next().expect("4 fields");
            let (id, amount, status, date) = (next(), next(), next(), next());
            format!(
                "('{id}', 'u@oksbi', 'm@upi', {amount}, '{status}', '{date} 10:00Z', '{date}', \
                 'oksbi', 'm')"
            )
        })
        .collect();
    format!(
        "INSERT INTO stg_upi_transactions (txn_id, payer, payee, amount, status, event_time, \
         txn_date, payer_bank, merchant_id) VALUES {};",
        values.join(", ")
    )
}

const NOT_NULL: &str =
    r#"{ test = "not_null", table = "raw_upi_transactions", column = "txn_id" }"#;
const UNIQUE: &str = r#"{ test = "unique", table = "raw_upi_transactions", column = "txn_id" }"#;

#[tokio::test]
async fn not_null_passes_on_filled_rows_and_counts_the_nulls() {
    let db = Db::new().await;
    db.exec(&raw(0, "a b")).await;
    db.passes(NOT_NULL, "not_null_raw_upi_transactions_txn_id")
        .await;
    db.exec("UPDATE raw_upi_transactions SET txn_id = NULL")
        .await;
    db.fails(NOT_NULL, "not_null_raw_upi_transactions_txn_id", 2)
        .await;
}

#[tokio::test]
async fn unique_ignores_nulls_and_counts_every_row_of_a_repeated_value() {
    let db = Db::new().await;
    db.exec(&raw(0, "a b - -")).await;
    db.passes(UNIQUE, "unique_raw_upi_transactions_txn_id")
        .await;
    db.exec(&raw(1, "a a")).await;
    db.fails(UNIQUE, "unique_raw_upi_transactions_txn_id", 3)
        .await;
}

#[tokio::test]
async fn accepted_values_counts_rows_outside_the_list() {
    let db = Db::new().await;
    let check = r#"{ test = "accepted_values", table = "stg_upi_transactions", column = "status",
                     values = ["SUCCESS", "FAILED", "PENDING"] }"#;
    db.exec(&stg("a 1 SUCCESS 2024-01-02; b 1 PENDING 2024-01-02"))
        .await;
    db.passes(check, "accepted_values_stg_upi_transactions_status")
        .await;
    db.exec(&stg("c 1 REFUNDED 2024-01-02; d 1 success 2024-01-02"))
        .await;
    db.fails(check, "accepted_values_stg_upi_transactions_status", 2)
        .await;
}

#[tokio::test]
async fn accepted_range_compares_decimals_exactly_and_honours_inclusive() {
    let db = Db::new().await;
    let exclusive = r#"{ test = "accepted_range", table = "stg_upi_transactions",
                         column = "amount", min = 0, max = 100000, inclusive = false }"#;
    db.exec(&stg(
        "a 0.01 SUCCESS 2024-01-02; b 99999.99 SUCCESS 2024-01-02",
    ))
    .await;
    db.passes(exclusive, "accepted_range_stg_upi_transactions_amount")
        .await;
    db.exec(&stg(
        "c 100000 SUCCESS 2024-01-02; d 0 SUCCESS 2024-01-02; e -5 SUCCESS 2024-01-02",
    ))
    .await;
    db.fails(exclusive, "accepted_range_stg_upi_transactions_amount", 3)
        .await;
    // Inclusive by default: 0 and 100000 are inside [0, 100000], -5 is not.
    let inclusive = r#"{ test = "accepted_range", table = "stg_upi_transactions",
                         column = "amount", min = 0.0, max = 100000, name = "amount_in_range" }"#;
    db.fails(inclusive, "amount_in_range", 1).await;
}

#[tokio::test]
async fn relationships_counts_children_without_a_parent() {
    let db = Db::new().await;
    let check = r#"{ test = "relationships", table = "merchant_upi_summary", column = "merchant",
                     to = "dim_merchants", field = "merchant" }"#;
    db.exec(
        "INSERT INTO dim_merchants (merchant_id, merchant, first_seen, last_seen)
             VALUES ('m1', 'm1@upi', '2024-01-01', '2024-01-02');
         INSERT INTO merchant_upi_summary (merchant, date, total_txns, amount)
             VALUES ('m1@upi', '2024-01-01', 1, 10), ('m1@upi', '2024-01-02', 2, 20);",
    )
    .await;
    let name = "relationships_merchant_upi_summary_merchant__merchant__dim_merchants";
    db.passes(check, name).await;
    db.exec(
        "INSERT INTO merchant_upi_summary (merchant, date, total_txns, amount)
             VALUES ('ghost@upi', '2024-01-01', 1, 10), ('ghost@upi', '2024-01-02', 1, 10);",
    )
    .await;
    db.fails(check, name, 2).await;
}

#[tokio::test]
async fn row_count_reports_how_far_the_count_is_outside_its_bounds() {
    let db = Db::new().await;
    let check = r#"{ test = "row_count", table = "daily_upi_summary", min = 1, max = 1,
                     where = "date = :ds" }"#;
    db.fails(check, "row_count_daily_upi_summary", 1).await;
    db.exec(
        "INSERT INTO daily_upi_summary (date, total_txns, success_txns, failed_txns, pending_txns,
                                        total_amount)
         VALUES ('2024-01-01', 1, 1, 0, 0, 5), ('2024-01-02', 3, 2, 1, 0, 9),
                ('2024-01-03', 1, 1, 0, 0, 5);",
    )
    .await;
    db.passes(check, "row_count_daily_upi_summary").await;
    let at_most_one = r#"{ test = "row_count", table = "daily_upi_summary", max = 1 }"#;
    db.fails(at_most_one, "row_count_daily_upi_summary", 2)
        .await;
}

#[tokio::test]
async fn freshness_is_measured_from_the_interval_end_and_an_empty_table_is_stale() {
    let db = Db::new().await;
    let check = r#"{ test = "freshness", table = "clean_upi_transactions", column = "event_time",
                     max_age = "1h" }"#;
    let name = "freshness_clean_upi_transactions_event_time";
    db.fails(check, name, 1).await;
    let insert = |id: &str, at: &str| {
        format!(
            "INSERT INTO clean_upi_transactions (txn_id, payer, payee, amount, status, event_time,
                                                 kafka_partition, kafka_offset)
             VALUES ('{id}', 'u@oksbi', 'm@upi', 5, 'SUCCESS', '{at}', 0, 0);"
        )
    };
    // Two hours before the interval ends (2024-01-03 00:00Z): stale, though long past.
    db.exec(&insert("a", "2024-01-02 22:00Z")).await;
    db.fails(check, name, 1).await;
    db.exec(&insert("b", "2024-01-02 23:30Z")).await;
    db.passes(check, name).await;
}

#[tokio::test]
async fn a_warn_check_is_logged_but_does_not_fail_the_task() {
    let db = Db::new().await;
    db.exec(&raw(0, "- a")).await;
    let checks = format!(
        "{{ test = \"not_null\", table = \"raw_upi_transactions\", column = \"txn_id\", \
           severity = \"warn\" }},\n{UNIQUE}"
    );
    let (result, log) = db.check(&checks).await;
    assert_eq!(result, Ok(()), "{log:#?}");
    assert!(log.contains(&"WARN not_null_raw_upi_transactions_txn_id (1 failing row)".into()));
    assert!(log.contains(&"PASS unique_raw_upi_transactions_txn_id (0 failing rows)".into()));
    assert_eq!(log.last().unwrap(), "checks: 1 passed, 1 warned, 0 failed");
}

#[tokio::test]
async fn where_with_ds_checks_only_the_runs_day() {
    let db = Db::new().await;
    db.exec(&stg("old 1 BOGUS 2024-01-01; new 1 SUCCESS 2024-01-02"))
        .await;
    let check = |filter: &str| {
        format!(
            r#"{{ test = "accepted_values", table = "stg_upi_transactions", column = "status",
                  values = ["SUCCESS"], {filter} }}"#
        )
    };
    let name = "accepted_values_stg_upi_transactions_status";
    db.passes(&check("where = \"txn_date = :ds\""), name).await;
    db.fails(&check("name = \"every_day\""), "every_day", 1)
        .await;
}

#[tokio::test]
async fn every_failing_check_is_named_in_the_error() {
    let db = Db::new().await;
    db.exec(&raw(0, "- - a")).await;
    let checks = format!(
        "{NOT_NULL},\n{UNIQUE},\n{{ test = \"row_count\", table = \"raw_upi_transactions\", \
         min = 4 }}"
    );
    let (result, log) = db.check(&checks).await;
    let message = "2 of 3 quality checks failed: not_null_raw_upi_transactions_txn_id (2 rows), \
                   row_count_raw_upi_transactions (1 row)";
    assert_eq!(result, Err(TaskError::Fatal(message.into())), "{log:#?}");
    assert_eq!(log.last().unwrap(), "checks: 1 passed, 0 warned, 2 failed");
}

#[tokio::test]
async fn a_missing_table_is_a_retryable_error_naming_the_check() {
    let db = Db::new().await;
    let (result, _) = db
        .check(r#"{ test = "not_null", table = "nope", column = "c" }"#)
        .await;
    let Err(TaskError::Retryable(message)) = result else {
        panic!("expected a retryable error: {result:?}");
    };
    assert!(
        message.starts_with("check `not_null_nope_c`: relation \"nope\" does not exist"),
        "{message}"
    );
    assert!(message.contains("SQLSTATE 42P01"), "{message}");
}

#[tokio::test]
async fn the_documented_example_passes_on_consistent_pipeline_data() {
    let db = Db::new().await;
    db.exec(&stg("a 10 SUCCESS 2024-01-02; b 20 PENDING 2024-01-02"))
        .await;
    db.exec(
        "INSERT INTO clean_upi_transactions (txn_id, payer, payee, amount, status, event_time,
                                             kafka_partition, kafka_offset)
             VALUES ('a', 'u@oksbi', 'm1@upi', 10, 'SUCCESS', '2024-01-02 23:59Z', 0, 0);
         INSERT INTO daily_upi_summary (date, total_txns, success_txns, failed_txns, pending_txns,
                                        total_amount) VALUES ('2024-01-02', 2, 1, 0, 1, 30);
         INSERT INTO dim_merchants (merchant_id, merchant, first_seen, last_seen)
             VALUES ('m1', 'm1@upi', '2024-01-02', '2024-01-02');
         INSERT INTO merchant_upi_summary (merchant, date, total_txns, amount)
             VALUES ('m1@upi', '2024-01-02', 2, 30);",
    )
    .await;
    let checks = r#"
      { test = "not_null", table = "stg_upi_transactions", column = "txn_id" },
      { test = "unique", table = "stg_upi_transactions", column = "txn_id" },
      { test = "accepted_values", table = "stg_upi_transactions", column = "status", values = ["SUCCESS", "FAILED", "PENDING"] },
      { test = "accepted_range", table = "public.stg_upi_transactions", column = "amount", min = 0, max = 100000, inclusive = false },
      { test = "relationships", table = "merchant_upi_summary", column = "merchant", to = "dim_merchants", field = "merchant" },
      { test = "row_count", table = "daily_upi_summary", min = 1, max = 1 },
      { test = "freshness", table = "clean_upi_transactions", column = "event_time", max_age = "1h", severity = "warn" },
    "#;
    let (result, log) = db.check(checks).await;
    assert_eq!(result, Ok(()), "{log:#?}");
    assert_eq!(
        log.iter().filter(|l| l.starts_with("PASS ")).count(),
        7,
        "{log:#?}"
    );
    assert_eq!(log.last().unwrap(), "checks: 7 passed, 0 warned, 0 failed");
}
