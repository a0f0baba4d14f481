//! Templates without a database: what `check` finds and refuses, and rendering the run's
//! context.

use serde_json::json;

use super::*;
use crate::testing::task_context;

fn refs_of(source: &str) -> Refs {
    let mut refs = Refs::default();
    check("t", source, &mut refs).expect("valid template");
    refs
}

#[test]
fn check_finds_the_variables_and_connections_named_literally() {
    let refs = refs_of(
        "{{ var.a }} {{ var.value.b }} {{ var.json.c.k }} {{ conn.wh.host }} {{ conn.other.get_uri() }} {{ ds }}",
    );
    let vars: Vec<_> = refs.variables.iter().map(String::as_str).collect();
    let conns: Vec<_> = refs.connections.iter().map(String::as_str).collect();
    assert_eq!(vars, ["a", "b", "c"]);
    assert_eq!(conns, ["other", "wh"]);
    // Computed names cannot be seen, and are not guessed at.
    assert_eq!(
        refs_of("{{ var[params.k] }} {{ var.value.get('x', 1) }}")
            .variables
            .len(),
        0
    );
}

#[test]
fn a_template_that_does_not_parse_is_reported_with_its_name_and_line() {
    let e = check("command[2]", "echo {{ ds ", &mut Refs::default()).expect_err("rejected");
    assert!(e.contains("command[2]"), "{e}");
    assert!(e.contains(":1"), "{e}");
    let e = check("env.X", "a\n{% if %}", &mut Refs::default()).expect_err("rejected");
    assert!(e.contains("env.X:2"), "{e}");
}

#[test]
fn an_unknown_name_is_refused_with_the_known_ones() {
    let e = check("command[1]", "{{ dss }} {{ ds }}", &mut Refs::default()).expect_err("rejected");
    assert!(e.contains("`dss`"), "{e}");
    assert!(e.contains("known: ds,"), "{e}");
    assert!(!e.contains("`ds`"), "{e}");
}

fn templates(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

#[tokio::test]
async fn the_run_context_renders_as_airflow_names_it() {
    let ctx = task_context(json!({"region": "south", "n": 3}));
    let out = render(
        &ctx,
        templates(&[
            ("a", "{{ ds }} {{ ds_nodash }} {{ ts }} {{ ts_nodash }}"),
            ("b", "{{ data_interval_start }}|{{ data_interval_end }}"),
            (
                "c",
                "{{ dag_id }}.{{ task_id }} {{ run_id }} try {{ try_number }}/{{ max_tries }}",
            ),
            ("d", "{{ params.region }}-{{ params.n + 1 }}"),
        ]),
    )
    .await
    .expect("renders");
    assert_eq!(
        out.texts,
        [
            "2024-01-02 20240102 2024-01-02T00:00:00+00:00 20240102T000000",
            "2024-01-02T00:00:00+00:00|2024-01-03T00:00:00+00:00",
            "test_dag.test_task scheduled__2024-01-02T00:00:00+00:00 try 1/3",
            "south-4",
        ]
    );
    assert!(out.secrets.is_empty());
}

#[tokio::test]
async fn an_undefined_name_fails_the_try_fatally_naming_the_template() {
    let ctx = task_context(json!({}));
    let e = render(&ctx, templates(&[("command[1]", "x{{ params.missing }}")]))
        .await
        .err()
        .expect("fails");
    let TaskError::Fatal(m) = e else {
        panic!("not fatal: {e:?}")
    };
    assert!(m.contains("command[1]"), "{m}");
    assert!(m.contains("undefined"), "{m}");
}

// Variables and connections (from the database and the environment) are rendered in
// tests/connections_tasks.rs, against a real store and a worker started with the environment.
