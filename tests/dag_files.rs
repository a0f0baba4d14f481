//! DAG files: every validation error names its file, line and problem.

use std::path::Path;

use upiflow_engine::dag::{DagError, load_dag_file, load_dag_str};
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
    assert!(
        msg.starts_with("unknown key `shedule_interval` at the top level (known keys: dag_id,"),
        "{msg}"
    );
}

#[test]
fn a_typo_of_a_key_suggests_the_right_one() {
    let (line, msg) = one_error(&format!(
        "{HEAD}[defaults]\nretires = 3\n[[tasks]]\nid=\"a\"\nkind=\"noop\"\n"
    ));
    assert_eq!(line, 4);
    assert!(
        msg.starts_with(
            "unknown key `retires` in [defaults] (did you mean `retries`? known keys: retries,"
        ),
        "{msg}"
    );
}

#[test]
fn wrong_types_are_errors_and_reading_goes_on() {
    let errs = errors(
        "dag_id = 7\nschedule = \"@daily\"\ncatchup = \"yes\"\nmax_active_runs = 0\ntags = [\"a\", 1]\n\
         [defaults]\nretries = -1\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\nupstream = \"b\"\n\
         [[tasks]]\nkind = \"noop\"\n[[tasks]]\nid = \"c\"\n",
    );
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "`dag_id` must be a string, not the integer 7"),
            (3, "`catchup` must be true or false, not the string \"yes\""),
            (
                4,
                "`max_active_runs` must be a whole number from 1 to 4294967295, not 0"
            ),
            (
                5,
                "`tags` must hold only strings; element 2 is the integer 1"
            ),
            (
                7,
                "`retries` must be a whole number from 0 to 4294967295, not -1"
            ),
            (
                11,
                "`upstream` must be an array of strings, not the string \"b\""
            ),
            (12, "task 2 has no `id` (e.g. id = \"load\")"),
            (
                14,
                "task `c` has no `kind` (one of command, ingest_supervisor, noop, quality, sql)"
            ),
        ],
        "{errs:#?}"
    );
}

#[test]
fn unknown_keys_and_the_kinds_own_problems_are_reported_together() {
    let errs = errors(&format!(
        "{HEAD}[[tasks]]\nid = \"a\"\nkind = \"sql\"\nsqll = \"x.sql\"\nowner = \"me\"\n"
    ));
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got[0].0, 4);
    assert!(
        got[0].1.starts_with("task `a`: missing key `sql`"),
        "{got:#?}"
    );
    assert_eq!(got[1].0, 6);
    assert!(
        got[1].1.starts_with("unknown key `sqll` in task `a` of kind `sql` (did you mean `sql`? known keys: id, kind, upstream, trigger_rule, retries,"),
        "{got:#?}"
    );
    assert_eq!(got[2].0, 7);
    assert!(
        got[2].1.starts_with("unknown key `owner` in task `a`"),
        "{got:#?}"
    );
}

/// tests/fixtures/many_mistakes.toml: sixteen mistakes, each reported at its line.
#[test]
fn every_mistake_of_a_file_is_reported_in_one_pass_with_its_line() {
    let path = Path::new("tests/fixtures/many_mistakes.toml");
    let errs = load_dag_file(path, &upiflow_tasks::registry()).expect_err("invalid");
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.message.as_str())).collect();
    let top = "known keys: dag_id, description, schedule, timezone, start_date, end_date, catchup, max_active_runs, max_active_tasks, tags, defaults, params, tasks, notifiers, on_failure, on_success, on_deadline_miss, deadline, allowed_lateness";
    let task = "known keys: id, kind, upstream, trigger_rule, retries, retry_delay, retry_exponential_backoff, max_retry_delay, timeout, pool, pool_slots, priority_weight, weight_rule, max_active_tis_per_dag, on_failure, on_retry, on_success";
    let want: Vec<(usize, String)> = vec![
        (2, format!("unknown key `shedule` at the top level (did you mean `schedule`? {top})")),
        (3, "cron expression `0 24 * * *`: the hour field `24` is out of range 0-23".into()),
        (4, "unknown time zone `Asia/Kolkatta` (expected an IANA name such as Asia/Kolkata)".into()),
        (5, "start_date: `2024-13-01` is not a date (expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339)".into()),
        (6, format!("unknown key `owner` at the top level ({top})")),
        (9, "bad duration for `retry_delay`: `5 parsecs`: unknown time unit \"parsecs\", supported units: ns, us/\u{b5}s, ms, sec, min, hours, days, weeks, months, years (and few variations) (write e.g. \"30s\", \"5m\", \"1h 30m\")".into()),
        (10, "unknown key `retires` in [defaults] (did you mean `retries`? known keys: retries, retry_delay, retry_exponential_backoff, max_retry_delay, timeout, pool, pool_slots, priority_weight, weight_rule, max_active_tis_per_dag, on_failure, on_retry, on_success)".into()),
        (13, "task `extract`: missing key `sql` (a string, the path of a .sql file relative to the DAG file)".into()),
        (19, "task `transform` lists unknown upstream `nowhere`".into()),
        (20, "unknown trigger rule `sometimes` (expected one of all_success, all_done, all_failed, one_success, one_failed, none_failed)".into()),
        (21, format!("unknown key `sql` in task `transform` of kind `noop` ({task})")),
        (24, "duplicate task id `transform` (first defined at line 17)".into()),
        (25, "unknown task kind `bash` (known kinds: command, ingest_supervisor, noop, quality, sql)".into()),
        (31, "dependency cycle: a -> b -> a".into()),
        (32, "bad duration for `timeout`: `soon`: expected number at 0 (write e.g. \"30s\", \"5m\", \"1h 30m\")".into()),
        (37, "task `b`: `command` must be an array of strings, the program and its arguments (e.g. [\"sh\", \"-c\", \"echo hi\"]): invalid type: string \"true\", expected a sequence".into()),
    ];
    let want: Vec<(usize, &str)> = want.iter().map(|(l, m)| (*l, m.as_str())).collect();
    assert_eq!(got, want);
    for e in &errs {
        assert!(
            e.to_string()
                .starts_with("tests/fixtures/many_mistakes.toml:"),
            "{e}"
        );
    }
}

#[test]
fn a_bare_file_name_resolves_next_to_the_current_directory() {
    // `mydag.toml` has the empty path as its parent; the command's cwd must still resolve.
    let dag = load_dag_str(
        Path::new("x.toml"),
        &format!("{HEAD}[[tasks]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"true\"]\n"),
        &upiflow_tasks::registry(),
    )
    .expect("valid");
    let cwd = dag.task("a").unwrap().config["cwd"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        Path::new(&cwd),
        std::env::current_dir().unwrap().canonicalize().unwrap()
    );
}

#[test]
fn a_cron_error_speaks_of_the_five_fields_the_user_wrote() {
    for (schedule, message) in [
        (
            "0 24 * * *",
            "cron expression `0 24 * * *`: the hour field `24` is out of range 0-23",
        ),
        (
            "0 0 * *",
            "cron expression `0 0 * *` has 4 fields; expected 5 (minute hour day-of-month month day-of-week)",
        ),
        (
            "0 0 0 * * *",
            "cron expression `0 0 0 * * *` has 6 fields; expected 5 (minute hour day-of-month month day-of-week); seconds are not supported",
        ),
    ] {
        let (line, msg) = one_error(&format!(
            "dag_id = \"d\"\nschedule = \"{schedule}\"\n[[tasks]]\nid=\"a\"\nkind=\"noop\"\n"
        ));
        assert_eq!((line, msg.as_str()), (2, message));
    }
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
fn allowed_lateness_is_a_duration_and_reaches_the_dag() {
    let (line, message) = one_error(&format!(
        "{HEAD}allowed_lateness = \"a while\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n"
    ));
    assert_eq!(line, 3);
    assert!(
        message.contains("bad duration for `allowed_lateness`"),
        "{message}"
    );
    let dag = load_dag_str(
        Path::new("dags/x.toml"),
        &format!("{HEAD}allowed_lateness = \"15m\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n"),
        &upiflow_tasks::registry(),
    )
    .unwrap();
    assert_eq!(
        dag.allowed_lateness,
        Some(std::time::Duration::from_secs(900))
    );
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

#[test]
fn a_dag_without_tasks_is_an_error() {
    let (line, msg) = one_error(HEAD);
    assert_eq!(
        (line, msg.as_str()),
        (1, "a DAG needs at least one [[tasks]] entry")
    );
    let (line, msg) = one_error(&format!("{HEAD}tasks = []\n"));
    assert_eq!(
        (line, msg.as_str()),
        (3, "a DAG needs at least one [[tasks]] entry")
    );
    let (line, msg) = one_error(&format!("{HEAD}tasks = \"a\"\n"));
    assert_eq!(line, 3);
    assert!(
        msg.starts_with("`tasks` must be an array of tables"),
        "{msg}"
    );
}
