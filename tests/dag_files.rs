//! DAG files: every validation error names its file, line and problem.

use std::path::Path;

use upiflow_engine::dag::{DagError, load_dag_str};
use upiflow_engine::state::TriggerRule;

fn errors(text: &str) -> Vec<DagError> {
    load_dag_str(Path::new("dags/x.toml"), text, &upiflow_tasks::registry())
        .expect_err("the DAG should be invalid")
}

fn one_error(text: &str) -> (usize, String) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:?}");
    (errs[0].line, errs[0].message.clone())
}

const HEAD: &str = "dag_id = \"d\"\nschedule = \"@daily\"\n";

#[test]
fn a_valid_dag_resolves_defaults_and_overrides() {
    let text = format!(
        "{HEAD}timezone = \"Asia/Kolkata\"\nstart_date = \"2024-01-01\"\n\
         [defaults]\nretries = 2\nretry_delay = \"30s\"\nretry_exponential_backoff = true\nmax_retry_delay = \"10m\"\ntimeout = \"15m\"\n\
         [params]\nmin_amount = 0\n\
         [[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
         [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\nretries = 5\ntrigger_rule = \"all_done\"\ntimeout = 3\n"
    );
    let dag = load_dag_str(Path::new("dags/x.toml"), &text, &upiflow_tasks::registry()).unwrap();
    let a = dag.task("a").unwrap();
    let b = dag.task("b").unwrap();
    assert_eq!(a.retry.retries, 2);
    assert_eq!(a.retry.retry_delay.as_secs(), 30);
    assert_eq!(a.timeout.unwrap().as_secs(), 900);
    assert_eq!(b.retry.retries, 5);
    assert!(b.retry.exponential_backoff);
    assert_eq!(b.timeout.unwrap().as_secs(), 3);
    assert_eq!(b.trigger_rule, TriggerRule::AllDone);
    // Midnight in Kolkata is 18:30 UTC the day before.
    assert_eq!(
        dag.start_date.unwrap().to_rfc3339(),
        "2023-12-31T18:30:00+00:00"
    );
    assert_eq!(dag.params["min_amount"], 0);
}

#[test]
fn unknown_top_level_key_is_an_error_with_its_line() {
    let (line, msg) = one_error(&format!(
        "{HEAD}shedule_interval = \"x\"\n[[tasks]]\nid=\"a\"\nkind=\"noop\"\n"
    ));
    assert_eq!(line, 3);
    assert!(msg.contains("unknown field `shedule_interval`"), "{msg}");
}

#[test]
fn syntax_error_names_the_line() {
    let (line, msg) = one_error(&format!("{HEAD}\n\n[[tasks]]\nid = \"a\nkind=\"noop\"\n"));
    assert_eq!(line, 6, "{msg}");
}

#[test]
fn duplicate_task_ids_point_at_both_definitions() {
    let (line, msg) = one_error(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"noop\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n"
    ));
    assert_eq!(line, 7);
    assert!(
        msg.contains("duplicate task id `a` (first defined at line 4)"),
        "{msg}"
    );
}

#[test]
fn unknown_upstream_is_reported_where_it_is_listed() {
    let (line, msg) = one_error(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"noop\"\nupstream = [\n  \"nope\",\n]\n"
    ));
    assert_eq!(line, 7);
    assert!(msg.contains("unknown upstream `nope`"), "{msg}");
}

#[test]
fn unknown_kind_lists_the_known_ones() {
    let (line, msg) = one_error(&format!("{HEAD}[[tasks]]\nid = \"a\"\nkind = \"bash\"\n"));
    assert_eq!(line, 5);
    assert!(msg.contains("unknown task kind `bash`"), "{msg}");
    assert!(
        msg.contains("command") && msg.contains("sql") && msg.contains("noop"),
        "{msg}"
    );
}

#[test]
fn unknown_trigger_rule_is_an_error() {
    let (line, msg) = one_error(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"noop\"\ntrigger_rule = \"sometimes\"\n"
    ));
    assert_eq!(line, 6);
    assert!(msg.contains("unknown trigger rule `sometimes`"), "{msg}");
    assert!(msg.contains("none_failed"), "{msg}");
}

#[test]
fn bad_durations_are_errors_in_defaults_and_tasks() {
    let errs = errors(&format!(
        "{HEAD}[defaults]\nretry_delay = \"5 parsecs\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\ntimeout = \"soon\"\n"
    ));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].line, 4);
    assert!(errs[0].message.contains("bad duration for `retry_delay`"));
    assert_eq!(errs[1].line, 8);
    assert!(errs[1].message.contains("bad duration for `timeout`"));
}

#[test]
fn bad_cron_and_time_zone_are_errors() {
    let errs = errors(
        "dag_id = \"d\"\nschedule = \"0 25 * * *\"\ntimezone = \"Mars/Olympus\"\n[[tasks]]\nid=\"a\"\nkind=\"noop\"\n",
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!((errs[0].line, errs[1].line), (2, 3));
    assert!(
        errs[0].message.contains("cron expression `0 25 * * *`"),
        "{}",
        errs[0].message
    );
    assert!(errs[1].message.contains("unknown time zone `Mars/Olympus`"));
}

#[test]
fn a_cycle_is_listed_in_full() {
    let errs = errors(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"noop\"\nupstream = [\"c\"]\n\
         [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n\
         [[tasks]]\nid = \"c\"\nkind = \"noop\"\nupstream = [\"b\"]\n\
         [[tasks]]\nid = \"d\"\nkind = \"noop\"\nupstream = [\"d\"]\n"
    ));
    let msgs: Vec<_> = errs.iter().map(|e| e.message.as_str()).collect();
    assert!(
        msgs.contains(&"dependency cycle: a -> b -> c -> a"),
        "{msgs:?}"
    );
    assert!(msgs.contains(&"dependency cycle: d -> d"), "{msgs:?}");
    assert_eq!(
        errs.iter()
            .find(|e| e.message.contains("a -> b"))
            .unwrap()
            .line,
        6
    );
}

#[test]
fn kind_specific_keys_are_checked() {
    let (line, msg) = one_error(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"noop\"\nsql = \"x.sql\"\n"
    ));
    assert_eq!(line, 6);
    assert!(
        msg.contains("unknown key `sql` in task `a` of kind `noop`"),
        "{msg}"
    );
    let (line, msg) = one_error(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"sql\"\nsql = \"does/not/exist.sql\"\n"
    ));
    assert_eq!(line, 6);
    assert!(msg.contains("exist.sql"), "{msg}");
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let errs = errors(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"noop\"\ntrigger_rule = \"x\"\n[[tasks]]\nid = \"b\"\nkind = \"nope\"\nupstream = [\"zz\"]\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    for e in &errs {
        assert!(e.to_string().starts_with("dags/x.toml:"), "{e}");
    }
}
