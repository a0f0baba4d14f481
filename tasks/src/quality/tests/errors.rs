//! What `prepare` rejects: every malformed check, named by its position and test.

use super::*;

/// A check of `test` with the other keys written as TOML.
fn check(test: &str, keys: &str) -> String {
    format!("{{ test = \"{test}\", {keys} }}")
}

#[test]
fn each_malformed_check_is_named_by_position_and_test() {
    let whole = [
        ("", "must list at least one check"),
        ("\"not_null\"", "check 1: must be a table like"),
        (
            r#"{ table = "t" }"#,
            "check 1: missing key `test` (one of: not_null, unique",
        ),
        ("{ test = 3 }", "check 1: `test` must be a string"),
        (
            r#"{ test = "nullish" }"#,
            "check 1: unknown test `nullish` (known: not_null",
        ),
    ];
    for (checks, expected) in whole {
        let m = rejected(checks);
        assert!(
            m.contains(expected),
            "{checks}\n  gave: {m}\n  want: {expected}"
        );
    }
    let tc = r#"table = "t", column = "c""#;
    let cases = [
        (
            "unique",
            r#"table = "t", colum = "c""#,
            "check 1 (`unique`): unknown key `colum` (known: table, column, name, severity, where)",
        ),
        (
            "unique",
            r#"table = "t""#,
            "check 1 (`unique`): missing key `column`",
        ),
        (
            "unique",
            r#"table = 1, column = "c""#,
            "`table` must be a string",
        ),
        (
            "row_count",
            r#"table = "t", min = 1, column = "c""#,
            "unknown key `column`",
        ),
        ("row_count", r#"table = "t""#, "give `min`, `max` or both"),
        (
            "row_count",
            r#"table = "t", min = -1"#,
            "`min` must be a whole number >= 0",
        ),
        (
            "row_count",
            r#"table = "t", min = 3, max = 2"#,
            "`min` (3) is above `max` (2)",
        ),
        ("accepted_range", tc, "give `min`, `max` or both"),
        (
            "accepted_range",
            &format!(r#"{tc}, min = "0""#),
            "`min` must be a finite number, not string",
        ),
        (
            "accepted_range",
            &format!("{tc}, max = nan"),
            "`max` must be a finite number",
        ),
        (
            "accepted_range",
            &format!("{tc}, max = 1.5, min = 2"),
            "`min` (2) is above `max` (1.5)",
        ),
        (
            "accepted_range",
            &format!(r#"{tc}, min = 1, inclusive = "no""#),
            "`inclusive` must be true or false",
        ),
        ("accepted_values", tc, "missing key `values`"),
        (
            "accepted_values",
            &format!("{tc}, values = []"),
            "`values` is empty",
        ),
        (
            "accepted_values",
            &format!(r#"{tc}, values = "A""#),
            "`values` must be a non-empty array of strings, not string",
        ),
        (
            "accepted_values",
            &format!(r#"{tc}, values = ["A", 1.5]"#),
            "element 1 is float",
        ),
        (
            "relationships",
            &format!(r#"{tc}, to = "p""#),
            "missing key `field`",
        ),
        ("freshness", tc, "missing key `max_age`"),
        (
            "freshness",
            &format!(r#"{tc}, max_age = "soon""#),
            "`max_age` = \"soon\": expected number at 0",
        ),
        (
            "freshness",
            &format!(r#"{tc}, max_age = "0s""#),
            "longer than zero",
        ),
        (
            "freshness",
            &format!("{tc}, max_age = true"),
            "`max_age` must be a duration",
        ),
        (
            "not_null",
            &format!(r#"{tc}, severity = "fatal""#),
            "`severity` must be \"error\" or \"warn\", not \"fatal\"",
        ),
        (
            "not_null",
            &format!(r#"{tc}, name = " ""#),
            "`name` must be a non-empty single line",
        ),
        (
            "not_null",
            &format!(r#"{tc}, where = "a = :dss""#),
            "`where`: unknown parameter `:dss` (known: :data_interval_start",
        ),
        (
            "not_null",
            &format!(r#"{tc}, where = "a = 1; drop table t""#),
            "`where` must be one boolean expression, without `;`",
        ),
        (
            "not_null",
            &format!(r#"{tc}, where = " -- nothing""#),
            "`where` is empty",
        ),
        (
            "not_null",
            &format!(r#"{tc}, where = "a = 'open""#),
            "`where`: unterminated string literal",
        ),
        (
            "not_null",
            &format!(r#"{tc}, where = "a = $1""#),
            "positional parameter `$1`",
        ),
    ];
    for (test, keys, expected) in cases {
        let m = rejected(&check(test, keys));
        let prefix = format!("check 1 (`{test}`): ");
        assert!(m.starts_with(&prefix), "{test} {keys}\n  gave: {m}");
        assert!(
            m.contains(expected),
            "{test} {keys}\n  gave: {m}\n  want: {expected}"
        );
    }
}

#[test]
fn identifiers_that_are_not_plain_names_are_rejected() {
    for bad in [
        "x; drop table y",
        "x\"",
        "1abc",
        "a.b.c",
        "a.",
        "",
        "t--",
        "déjà",
        "a b",
    ] {
        let m = rejected(&format!(
            r#"{{ test = "not_null", table = {bad:?}, column = "c" }}"#
        ));
        assert!(m.starts_with("check 1 (`not_null`): `table` = "), "{m}");
        assert!(m.contains("is not a plain name"), "{m}");
    }
    let m = rejected(
        r#"{ test = "not_null", table = "t", column = "c" },
           { test = "relationships", table = "t", column = "c", to = "p", field = "id) OR (1=1" }"#,
    );
    assert!(
        m.starts_with("check 2 (`relationships`): `field` = "),
        "{m}"
    );
}

#[test]
fn the_error_names_the_position_of_the_bad_check() {
    let m = rejected(
        r#"{ test = "not_null", table = "t", column = "a" },
           { test = "not_null", table = "t", column = "b" },
           { test = "unique", table = "t" },"#,
    );
    assert!(
        m.starts_with("check 3 (`unique`): missing key `column`"),
        "{m}"
    );
}

#[test]
fn two_checks_with_one_name_are_rejected() {
    let m = rejected(
        r#"{ test = "not_null", table = "t", column = "a" },
           { test = "not_null", table = "t", column = "a", where = "b > 0" },"#,
    );
    assert!(
        m.starts_with("check 2 (`not_null`): another check is already named `not_null_t_a`"),
        "{m}"
    );
}

#[test]
fn checks_must_be_an_array() {
    let dir = scratch_dir();
    let err = QualityKind
        .prepare(&prepare_ctx(&dir), table("checks = \"not_null\""))
        .map_err(only)
        .expect_err("a string");
    assert_eq!(err.key.as_deref(), Some("checks"));
    let err = QualityKind
        .prepare(&prepare_ctx(&dir), table(""))
        .map_err(only)
        .expect_err("missing");
    assert!(err.message.starts_with("missing key `checks`"), "{err:?}");
}

#[test]
fn refusals_are_typed_by_kind_and_carry_the_check_and_key() {
    let parse = |checks: &str| {
        let doc = table(&format!("checks = [\n{checks}\n]"));
        let checks = doc["checks"].as_array().unwrap().clone();
        prepare_checks(checks).expect_err("should be rejected")
    };
    assert_eq!(parse(""), QualityError::NoChecks);
    assert_eq!(
        parse(r#"{ test = "nullish" }"#),
        QualityError::UnknownTest {
            n: 1,
            test: "nullish".into()
        }
    );
    assert_eq!(
        parse(&format!(
            "{},\n{}",
            check("unique", r#"table = "t", column = "c""#),
            check("unique", r#"table = "t", colum = "c""#)
        )),
        QualityError::Check {
            n: 2,
            test: Test::Unique,
            problem: CheckError::UnknownKey {
                key: "colum".into(),
                known: vec!["table", "column", "name", "severity", "where"],
            },
        }
    );
    assert_eq!(
        parse(&check("row_count", r#"table = "t", min = 5, max = 1"#)),
        QualityError::Check {
            n: 1,
            test: Test::RowCount,
            problem: CheckError::BoundsReversed { min: 5.0, max: 1.0 },
        }
    );
    assert_eq!(
        parse(&check(
            "not_null",
            r#"table = "t", column = "c", where = "x > :nope""#
        )),
        QualityError::Check {
            n: 1,
            test: Test::NotNull,
            problem: CheckError::Filter(FilterError::UnknownParam {
                name: "nope".into()
            }),
        }
    );
    // The message is the one `prepare` reports.
    assert_eq!(
        parse(&check("row_count", r#"table = "t", min = 5, max = 1"#)).to_string(),
        "check 1 (`row_count`): `min` (5) is above `max` (1)"
    );
}
