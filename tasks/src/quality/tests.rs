//! Unit tests of the `quality` kind that need no database: what `prepare` accepts, the SQL
//! and binds it stores, and the errors it gives.

use serde_json::json;

use super::*;
use crate::testing::{only, prepare_ctx, scratch_dir, table};

fn prepare(checks: &str) -> Result<Value, PrepareError> {
    let dir = scratch_dir();
    QualityKind
        .prepare(
            &prepare_ctx(&dir),
            table(&format!("checks = [\n{checks}\n]")),
        )
        .map_err(only)
}

fn config(checks: &str) -> QualityConfig {
    let value = prepare(checks).expect("valid checks");
    serde_json::from_value(value).expect("the stored config reads back")
}

/// The message of a rejected `checks` key.
fn rejected(checks: &str) -> String {
    let err = prepare(checks).expect_err("should be rejected");
    assert_eq!(err.key.as_deref(), Some("checks"), "{err:?}");
    err.message
}

#[test]
fn every_test_gets_a_dbt_style_default_name() {
    let c = config(
        r#"{ test = "not_null", table = "stg", column = "txn_id" },
           { test = "unique", table = "public.stg", column = "txn_id" },
           { test = "accepted_values", table = "stg", column = "status", values = ["A"] },
           { test = "accepted_range", table = "stg", column = "amount", min = 0 },
           { test = "relationships", table = "m", column = "merchant", to = "dim", field = "id" },
           { test = "row_count", table = "daily", min = 1 },
           { test = "freshness", table = "clean", column = "event_time", max_age = "1h" },"#,
    );
    let names: Vec<_> = c.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "not_null_stg_txn_id",
            "unique_public_stg_txn_id",
            "accepted_values_stg_status",
            "accepted_range_stg_amount",
            "relationships_m_merchant__id__dim",
            "row_count_daily",
            "freshness_clean_event_time",
        ]
    );
    assert!(c.checks.iter().all(|c| c.severity == Severity::Error));
}

#[test]
fn a_check_is_stored_with_quoted_names_and_its_values_bound() {
    let value = prepare(
        r#"{ test = "accepted_values", table = "s.t", column = "status", values = ["A", "it's"],
             where = "txn_date = :ds AND payer <> :params.who", severity = "warn", name = "st" }"#,
    )
    .expect("valid");
    assert_eq!(
        value,
        json!({"checks": [{
            "name": "st",
            "test": "accepted_values",
            "severity": "warn",
            "sql": "SELECT count(*) FROM \"s\".\"t\" WHERE \"status\" IS NOT NULL \
                    AND NOT (\"status\"::text = ANY($3::text[])) \
                    AND (txn_date = $1 AND payer <> $2)",
            "params": ["ds", "params.who", {"text_array": ["A", "it's"]}],
        }]})
    );
}

#[test]
fn accepted_range_binds_its_bounds_and_honours_inclusive() {
    let c = config(
        r#"{ test = "accepted_range", table = "t", column = "amount", min = 0, max = 100000.5,
             inclusive = false }"#,
    );
    let check = &c.checks[0];
    assert!(
        check
            .sql
            .contains("NOT (\"amount\" > $1::numeric AND \"amount\" < $2::numeric)"),
        "{}",
        check.sql
    );
    assert_eq!(
        check.params,
        [
            Arg::Fixed(Fixed::Number("0".into())),
            Arg::Fixed(Fixed::Number("100000.5".into()))
        ]
    );
    let only_max = config(r#"{ test = "accepted_range", table = "t", column = "a", max = 5 }"#);
    assert!(
        only_max.checks[0]
            .sql
            .contains("NOT (\"a\" <= $1::numeric)"),
        "{}",
        only_max.checks[0].sql
    );
}

#[test]
fn freshness_shares_data_interval_end_with_its_where() {
    let c = config(
        r#"{ test = "freshness", table = "t", column = "at", max_age = "1h 30m",
             where = "at < :data_interval_end" }"#,
    );
    let check = &c.checks[0];
    assert_eq!(
        check.params,
        [
            Arg::Run(Param::DataIntervalEnd),
            Arg::Fixed(Fixed::Number("5400".into()))
        ]
    );
    assert!(
        check
            .sql
            .contains("< $1 - make_interval(secs => $2::float8)"),
        "{}",
        check.sql
    );
    assert!(
        check.sql.ends_with(" FROM \"t\" WHERE (at < $1)"),
        "{}",
        check.sql
    );
}

#[test]
fn a_trailing_comment_in_where_cannot_swallow_the_parenthesis() {
    let c = config(r#"{ test = "not_null", table = "t", column = "c", where = "x = 1 -- why" }"#);
    assert!(
        c.checks[0].sql.ends_with("AND (x = 1 -- why\n)"),
        "{}",
        c.checks[0].sql
    );
}

#[tokio::test]
async fn a_where_naming_a_missing_param_fails_before_touching_the_database() {
    let value =
        prepare(r#"{ test = "not_null", table = "t", column = "c", where = "c > :params.floor" }"#)
            .expect("valid");
    let ctx = crate::testing::task_context(json!({}));
    let err = QualityKind.run(&ctx, &value).await.expect_err("no param");
    assert_eq!(
        err,
        TaskError::Fatal("`:params.floor` is used, but the run has no param `floor`".into())
    );
}

mod errors;
