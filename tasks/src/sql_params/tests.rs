//! Unit tests of the SQL lexer.

use super::*;

fn one(text: &str) -> Statement {
    let mut all = split(text).expect("lexes");
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn names(s: &Statement) -> Vec<&str> {
    s.params.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn named_parameters_become_positional_in_order_of_first_use() {
    let s = one("SELECT * FROM t WHERE d >= :data_interval_start AND d < :data_interval_end");
    assert_eq!(s.sql, "SELECT * FROM t WHERE d >= $1 AND d < $2");
    assert_eq!(names(&s), ["data_interval_start", "data_interval_end"]);
}

#[test]
fn a_repeated_parameter_keeps_its_number() {
    let s = one("SELECT :ds, :run_id, :ds, :params.x, :run_id, :params.x");
    assert_eq!(s.sql, "SELECT $1, $2, $1, $3, $2, $3");
    assert_eq!(names(&s), ["ds", "run_id", "params.x"]);
}

#[test]
fn casts_are_left_alone_also_right_after_a_parameter() {
    let s = one("SELECT x::date, :ds::date, '1'::int, y :: text");
    assert_eq!(s.sql, "SELECT x::date, $1::date, '1'::int, y :: text");
    assert_eq!(names(&s), ["ds"]);
}

#[test]
fn strings_with_doubled_quotes_hide_parameters_and_semicolons() {
    let s = one("SELECT 'it''s :ds; not a param', :ds");
    assert_eq!(s.sql, "SELECT 'it''s :ds; not a param', $1");
}

#[test]
fn escape_strings_honour_backslash_escapes() {
    let s = one(r"SELECT E'a\'b :ds; \\', e'\\', :run_id");
    assert_eq!(s.sql, r"SELECT E'a\'b :ds; \\', e'\\', $1");
    assert_eq!(names(&s), ["run_id"]);
}

#[test]
fn an_identifier_ending_in_e_does_not_start_an_escape_string() {
    // In a standard string a backslash is an ordinary character, so `'\'` is complete.
    let s = one(r"SELECT name'\' , :ds");
    assert_eq!(s.sql, r"SELECT name'\' , $1");
}

#[test]
fn quoted_identifiers_hide_parameters() {
    let s = one(r#"SELECT 1 AS "a "":ds; b", :ds"#);
    assert_eq!(s.sql, r#"SELECT 1 AS "a "":ds; b", $1"#);
}

#[test]
fn line_comments_hide_parameters_and_semicolons() {
    let all = split("SELECT 1 -- uses :ds; really\n, :ds;\nSELECT 2").expect("lexes");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].sql, "SELECT 1 -- uses :ds; really\n, $1");
    assert_eq!(all[1].sql, "SELECT 2");
    assert_eq!(all[1].line, 3);
}

#[test]
fn block_comments_nest() {
    let s = one("SELECT /* a /* :ds; */ still; :ds */ :run_id");
    assert_eq!(s.sql, "SELECT /* a /* :ds; */ still; :ds */ $1");
    assert_eq!(names(&s), ["run_id"]);
}

#[test]
fn dollar_quoted_bodies_are_opaque() {
    let text = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; -- :ds\n $$ LANGUAGE sql;\n\
                DO $body$ BEGIN PERFORM ':x'; $inner$ ; $inner$; END $body$";
    let all = split(text).expect("lexes");
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all[0].params.is_empty());
    assert!(all[0].sql.ends_with("$$ LANGUAGE sql"));
    assert!(all[1].params.is_empty());
    assert!(all[1].sql.ends_with("END $body$"));
}

#[test]
fn a_dollar_inside_an_identifier_is_not_a_quote() {
    let s = one("SELECT a$b$c, :ds");
    assert_eq!(s.sql, "SELECT a$b$c, $1");
}

#[test]
fn params_prefix_takes_one_dotted_name_others_do_not() {
    let s = one("SELECT :params.min_amount, :foo.bar");
    assert_eq!(s.sql, "SELECT $1, $2.bar");
    assert_eq!(names(&s), ["params.min_amount", "foo"]);
}

#[test]
fn var_prefix_takes_one_dotted_name() {
    let s = one("SELECT :var.region, :var.region::text, :var");
    assert_eq!(s.sql, "SELECT $1, $1::text, $2");
    assert_eq!(names(&s), ["var.region", "var"]);
}

#[test]
fn assignment_and_lone_colons_are_not_parameters() {
    let s = one("SELECT f(a := 1), ':' || 'x', arr[1:2]");
    assert_eq!(s.sql, "SELECT f(a := 1), ':' || 'x', arr[1:2]");
    assert!(s.params.is_empty());
}

#[test]
fn numbering_restarts_in_each_statement() {
    let all = split("SELECT :ds, :run_id;\nSELECT :run_id;").expect("lexes");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].sql, "SELECT $1, $2");
    assert_eq!(all[1].sql, "SELECT $1");
    assert_eq!(names(&all[1]), ["run_id"]);
}

#[test]
fn empty_statements_and_trailing_comments_are_dropped() {
    let all = split("\n;; -- header\n/* c */ ;\nSELECT 1;\n  ;\n-- trailing\n").expect("lexes");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].sql, "SELECT 1");
    assert_eq!(all[0].line, 4);
    assert!(split("  -- only a comment\n").expect("lexes").is_empty());
    assert!(split("").expect("lexes").is_empty());
}

#[test]
fn parameter_lines_point_at_their_first_use() {
    let s = one("SELECT\n  :ds,\n  :ds,\n  :foo");
    assert_eq!(s.line, 1);
    assert_eq!(s.params[0].line, 2);
    assert_eq!(s.params[1].line, 4);
}

#[test]
fn unterminated_constructs_are_errors_naming_their_line() {
    let cases = [
        ("SELECT 1;\nSELECT 'abc", "string literal", 2),
        ("SELECT \"abc", "quoted identifier", 1),
        ("SELECT E'abc\\'", "escape string literal", 1),
        ("\n\nSELECT /* a /* b */", "block comment", 3),
        ("SELECT $x$ abc $y$", "dollar-quoted string", 1),
    ];
    for (text, what, line) in cases {
        assert_eq!(
            split(text),
            Err(LexError::Unterminated { what, line }),
            "{text}"
        );
    }
}

#[test]
fn hand_written_positional_parameters_are_rejected() {
    let err = split("SELECT 1;\nSELECT $12").expect_err("rejected");
    assert_eq!(
        err,
        LexError::Positional {
            text: "$12".into(),
            line: 2
        }
    );
    assert!(err.to_string().contains("use named parameters"));
}

#[test]
fn non_ascii_text_survives() {
    let s = one("SELECT '₹ café' AS \"naïve\", :ds -- é");
    assert_eq!(s.sql, "SELECT '₹ café' AS \"naïve\", $1 -- é");
}
