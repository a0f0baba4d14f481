//! Unit tests of the `sql` kind that need no database: preparing files, naming parameters
//! and resolving their values.

use std::path::Path;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::testing::{only, prepare_ctx, scratch_dir, table, task_context};
use upiflow_engine::Reference;

fn prepare_file(dir: &Path, text: &str) -> Result<Value, PrepareError> {
    std::fs::create_dir_all(dir.join("sql")).expect("mkdir");
    std::fs::write(dir.join("sql/x.sql"), text).expect("write");
    SqlKind
        .prepare(&prepare_ctx(dir), table("sql = \"sql/x.sql\""))
        .map_err(only)
}

#[test]
fn prepare_stores_the_statements_with_positional_parameters() {
    let dir = scratch_dir();
    let text = "-- daily summary\nDELETE FROM s WHERE d = :ds;\n\nINSERT INTO s\nSELECT :ds, \
                count(*) FROM t\nWHERE at >= :data_interval_start AND at < :data_interval_end \
                AND amount > :params.min_amount::numeric;\n";
    let config = prepare_file(&dir, text).expect("valid");
    let path = dir.join("sql/x.sql").display().to_string();
    assert_eq!(
        config,
        json!({"path": path, "statements": [
            {"line": 2, "sql": "-- daily summary\nDELETE FROM s WHERE d = $1", "params": ["ds"]},
            {"line": 4, "sql": "INSERT INTO s\nSELECT $1, count(*) FROM t\nWHERE at >= $2 AND at < $3 AND amount > $4::numeric",
             "params": ["ds", "data_interval_start", "data_interval_end", "params.min_amount"]},
        ]})
    );
    let back: SqlConfig = serde_json::from_value(config).expect("round trip");
    assert_eq!(
        back.statements[1].params[3],
        Param::Params("min_amount".into())
    );
}

#[test]
fn prepare_accepts_an_absolute_path() {
    let dir = scratch_dir();
    std::fs::write(dir.join("abs.sql"), "SELECT 1").expect("write");
    let keys = table(&format!(
        "sql = {:?}",
        dir.join("abs.sql").display().to_string()
    ));
    let config = SqlKind
        .prepare(&prepare_ctx(Path::new("/nonexistent")), keys)
        .expect("valid");
    assert_eq!(config["statements"][0]["sql"], "SELECT 1");
}

#[test]
fn a_missing_file_is_named_by_its_resolved_path() {
    let dir = scratch_dir();
    let err = SqlKind
        .prepare(&prepare_ctx(&dir), table("sql = \"sql/nope.sql\""))
        .map_err(only)
        .expect_err("missing");
    assert_eq!(err.key.as_deref(), Some("sql"));
    let path = dir.join("sql/nope.sql").display().to_string();
    assert!(err.message.contains(&format!("`{path}`")), "{err:?}");
}

#[test]
fn inline_sql_instead_of_a_path_gets_a_hint() {
    let err = SqlKind
        .prepare(&prepare_ctx(&scratch_dir()), table("sql = \"SELECT 1\""))
        .map_err(only)
        .expect_err("not a file");
    assert!(err.message.contains("not SQL text"), "{err:?}");
}

#[test]
fn an_unknown_parameter_is_named_with_its_line_and_the_known_ones() {
    let dir = scratch_dir();
    let err = prepare_file(&dir, "SELECT 1;\nSELECT :ds,\n  :foo;").expect_err("unknown");
    assert_eq!(err.key.as_deref(), Some("sql"));
    let path = dir.join("sql/x.sql").display().to_string();
    assert_eq!(
        err.message,
        format!("{path}: unknown parameter `:foo` at line 3 (known: {KNOWN})")
    );
    let bare = prepare_file(&dir, "SELECT :params").expect_err("no name");
    assert!(bare.message.contains("`:params`"), "{bare:?}");
}

#[test]
fn a_file_without_statements_is_rejected() {
    let err = prepare_file(&scratch_dir(), "-- nothing yet\n;\n").expect_err("empty");
    assert_eq!(err.key.as_deref(), Some("sql"));
    assert!(
        err.message.ends_with("contains no SQL statement"),
        "{err:?}"
    );
}

#[test]
fn lexer_errors_name_the_file() {
    let dir = scratch_dir();
    let err = prepare_file(&dir, "SELECT 'oops").expect_err("unterminated");
    assert!(
        err.message
            .contains("x.sql: unterminated string literal starting at line 1")
    );
    let err = prepare_file(&dir, "SELECT $1").expect_err("positional");
    assert!(err.message.contains("positional parameter `$1`"), "{err:?}");
}

#[test]
fn a_wrong_key_type_is_reported_at_sql() {
    let err = SqlKind
        .prepare(&prepare_ctx(&scratch_dir()), table("sql = [\"a.sql\"]"))
        .map_err(only)
        .expect_err("wrong type");
    assert_eq!(err.key.as_deref(), Some("sql"));
    assert!(err.message.contains("must be a string"), "{err:?}");
}

#[test]
fn param_names_round_trip_and_unknown_ones_do_not_parse() {
    for name in [
        "data_interval_start",
        "data_interval_end",
        "logical_date",
        "ds",
        "run_id",
        "params.x",
        "var.region",
    ] {
        let param = Param::parse(name).expect(name);
        assert_eq!(param.to_string(), name);
    }
    for name in ["params", "params.", "var", "var.", "foo", "dss", "foo.x"] {
        assert_eq!(Param::parse(name), None, "{name}");
    }
    assert!(serde_json::from_value::<Param>(json!("nope")).is_err());
}

#[tokio::test]
async fn run_values_are_typed_after_their_source() {
    let ctx = task_context(json!({
        "s": "x", "i": -5, "f": 1.5, "b": true, "n": null, "a": [1, 2], "o": {"k": "v"},
        "huge": u64::MAX,
    }));
    let start = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
    let cases = [
        (Param::DataIntervalStart, Bind::Timestamp(start)),
        (
            Param::DataIntervalEnd,
            Bind::Timestamp(start + chrono::Duration::days(1)),
        ),
        (Param::LogicalDate, Bind::Timestamp(start)),
        (Param::Ds, Bind::Date(start.date_naive())),
        (Param::RunId, Bind::Text(ctx.run_id.clone())),
        (Param::Params("s".into()), Bind::Text("x".into())),
        (Param::Params("i".into()), Bind::BigInt(-5)),
        (Param::Params("f".into()), Bind::Double(1.5)),
        (Param::Params("b".into()), Bind::Bool(true)),
        (Param::Params("n".into()), Bind::Null),
        (Param::Params("a".into()), Bind::Jsonb(json!([1, 2]))),
        (Param::Params("o".into()), Bind::Jsonb(json!({"k": "v"}))),
    ];
    for (param, expected) in cases {
        assert_eq!(
            Bind::resolve(&param, &ctx, &Default::default()),
            Ok(expected),
            "{param}"
        );
    }
    let huge = Bind::resolve(&Param::Params("huge".into()), &ctx, &Default::default());
    assert!(matches!(huge, Err(TaskError::Fatal(_))), "{huge:?}");
}

#[tokio::test]
async fn a_missing_param_fails_fatally_before_touching_the_database() {
    let ctx = task_context(json!({"present": 1}));
    let config = json!({"path": "x.sql", "statements": [
        {"line": 1, "sql": "SELECT $1", "params": ["params.present"]},
        {"line": 2, "sql": "SELECT $1", "params": ["params.absent"]},
    ]});
    let result = SqlKind.run(&ctx, &config).await;
    assert_eq!(
        result,
        Err(TaskError::Fatal(
            "`:params.absent` is used, but the run has no param `absent`".into()
        ))
    );
}

#[tokio::test]
async fn an_unreachable_database_is_retryable() {
    let ctx = task_context(json!({}));
    let config =
        json!({"path": "x.sql", "statements": [{"line": 1, "sql": "SELECT 1", "params": []}]});
    match SqlKind.run(&ctx, &config).await {
        Err(TaskError::Retryable(m)) => assert!(m.starts_with("could not begin"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_config_is_fatal() {
    let ctx = task_context(json!({}));
    let statement = json!({"line": 1, "sql": "SELECT 1", "params": ["bogus"]});
    let config = json!({"path": "x.sql", "statements": [statement]});
    let result = SqlKind.run(&ctx, &config).await;
    assert!(matches!(result, Err(TaskError::Fatal(_))), "{result:?}");
}

#[test]
fn var_parameters_are_bound_and_recorded_for_validate() {
    let dir = scratch_dir();
    std::fs::write(dir.join("v.sql"), "SELECT :var.region, :ds, :var.region").expect("write");
    let ctx = prepare_ctx(&dir);
    let value = SqlKind
        .prepare(&ctx, table("sql = \"v.sql\"\nconn = \"warehouse\""))
        .expect("valid");
    let config: SqlConfig = serde_json::from_value(value).expect("reads back");
    assert_eq!(config.conn.as_deref(), Some("warehouse"));
    assert_eq!(config.statements[0].sql, "SELECT $1, $2, $1");
    assert_eq!(
        config.statements[0].params,
        [Param::Var("region".into()), Param::Ds]
    );
    let refs = ctx.references.borrow().clone();
    assert_eq!(
        refs,
        [
            (
                "conn".to_string(),
                Reference::Connection("warehouse".into())
            ),
            ("sql".to_string(), Reference::Variable("region".into())),
        ]
    );
}

#[test]
fn a_conn_that_is_not_an_id_is_refused_at_conn() {
    let dir = scratch_dir();
    std::fs::write(dir.join("v.sql"), "SELECT 1").expect("write");
    for conn in ["", "two words"] {
        let err = SqlKind
            .prepare(
                &prepare_ctx(&dir),
                table(&format!("sql = \"v.sql\"\nconn = \"{conn}\"")),
            )
            .map_err(only)
            .expect_err("refused");
        assert_eq!(err.key.as_deref(), Some("conn"), "{err:?}");
        assert!(err.message.contains("is not a connection id"), "{err:?}");
    }
}
