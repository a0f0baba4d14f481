//! Helpers for the crate's unit tests: scratch folders and a `TaskContext` whose pool never
//! connects (log lines then fail to be stored, which the log writer only reports).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgPoolOptions;
use upiflow_engine::logs::LogWriter;
use upiflow_engine::{PrepareCtx, PrepareError, TaskContext};

/// A fresh, empty folder under the system's temporary directory.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upiflow-tasks-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

pub fn prepare_ctx(dag_dir: &Path) -> PrepareCtx<'_> {
    PrepareCtx {
        dag_id: "test_dag",
        task_id: "test_task",
        dag_dir,
        // Leaked: a test's few references live as long as the test.
        references: Box::leak(Box::default()),
    }
}

/// The one problem `prepare` reported (a test of a single mistake expects exactly one).
pub fn only(mut problems: Vec<PrepareError>) -> PrepareError {
    assert_eq!(problems.len(), 1, "expected one problem: {problems:?}");
    problems.remove(0)
}

/// Parses a task table written as TOML.
pub fn table(text: &str) -> toml::Table {
    text.parse().expect("test TOML parses")
}

/// A context for 2024-01-02 (interval [2024-01-02, 2024-01-03)), try 1 of 3. Must be called
/// inside a Tokio runtime (the log writer is a task).
pub fn task_context(params: Value) -> TaskContext {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
        .expect("a lazy pool needs no server");
    let start = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
    let params: Map<String, Value> = match params {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    TaskContext {
        dag_id: "test_dag".into(),
        run_id: "scheduled__2024-01-02T00:00:00+00:00".into(),
        task_id: "test_task".into(),
        try_number: 1,
        max_tries: 3,
        logical_date: start,
        data_interval_start: start,
        data_interval_end: start + chrono::Duration::days(1),
        ds: NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
        allowed_lateness: std::time::Duration::ZERO,
        params,
        log: LogWriter::start(pool.clone()).for_try(1),
        secrets: upiflow_engine::secrets::Secrets::new(pool.clone(), None).expect("no key"),
        pool,
    }
}
