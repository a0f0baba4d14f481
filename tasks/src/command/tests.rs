//! Unit tests of the `command` kind: key checks, exit statuses, environment and the kill of
//! the whole process group when a try is abandoned.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::kill;
use serde_json::json;

use tokio::io::BufReader;

use super::output::{MAX_LINE_BYTES, next_line};
use super::*;
use crate::testing::{only, prepare_ctx, scratch_dir, table, task_context};
use upiflow_engine::Reference;

fn prepare(dir: &Path, text: &str) -> Result<Value, PrepareError> {
    CommandKind
        .prepare(&prepare_ctx(dir), table(text))
        .map_err(only)
}

fn canonical(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).expect("canonical");
    dir.to_str().expect("utf-8 temp dir").to_string()
}

async fn run_sh(script: &str, env: Value, cwd: &Path) -> Result<(), TaskError> {
    let ctx = task_context(json!({}));
    let config = json!({"command": ["sh", "-c", script], "env": env, "cwd": canonical(cwd)});
    CommandKind.run(&ctx, &config).await
}

#[test]
fn prepare_defaults_cwd_to_the_dag_folder_and_env_to_empty() {
    let dir = scratch_dir();
    let config = prepare(&dir, r#"command = ["sh", "-c", "echo hi"]"#).expect("valid");
    assert_eq!(
        config,
        json!({"command": ["sh", "-c", "echo hi"], "env": {}, "cwd": canonical(&dir)})
    );
}

#[test]
fn prepare_resolves_a_relative_cwd_against_the_dag_folder() {
    let dir = scratch_dir();
    std::fs::create_dir(dir.join("scripts")).expect("mkdir");
    let config = prepare(
        &dir,
        "command = [\"ls\"]\ncwd = \"scripts\"\nenv = { A = \"1\" }",
    )
    .expect("valid");
    assert_eq!(config["cwd"], json!(canonical(&dir.join("scripts"))));
    assert_eq!(config["env"], json!({"A": "1"}));
}

#[test]
fn prepare_rejects_a_missing_or_non_directory_cwd_at_cwd() {
    let dir = scratch_dir();
    std::fs::write(dir.join("file"), "").expect("write");
    for cwd in ["nope", "file"] {
        let err = prepare(&dir, &format!("command = [\"ls\"]\ncwd = \"{cwd}\"")).expect_err(cwd);
        assert_eq!(err.key.as_deref(), Some("cwd"), "{err:?}");
        assert!(err.message.contains(cwd), "{err:?}");
    }
}

#[test]
fn prepare_rejects_bad_commands_at_command() {
    let dir = scratch_dir();
    for text in [
        "command = []",
        "command = [\"\"]",
        "command = \"echo hi\"",
        "command = [\"echo\", 1]",
        "command = [\"echo\", \"a\\u0000b\"]",
    ] {
        let err = prepare(&dir, text).expect_err(text);
        assert_eq!(err.key.as_deref(), Some("command"), "{text}: {err:?}");
    }
    let missing = prepare(&dir, "env = {}").expect_err("missing command");
    assert!(
        missing.message.contains("missing key `command`"),
        "{missing:?}"
    );
}

#[test]
fn prepare_rejects_bad_env_at_env() {
    let dir = scratch_dir();
    for text in [
        "env = \"A=1\"",
        "env = { A = 1 }",
        "env = { \"A=B\" = \"1\" }",
        "env = { UPIFLOW_DS = \"2020-01-01\" }",
    ] {
        let err = prepare(&dir, &format!("command = [\"ls\"]\n{text}")).expect_err(text);
        assert_eq!(err.key.as_deref(), Some("env"), "{text}: {err:?}");
    }
}

#[tokio::test]
async fn exit_status_zero_succeeds() {
    assert_eq!(
        run_sh("echo out; echo err >&2", json!({}), &scratch_dir()).await,
        Ok(())
    );
}

#[tokio::test]
async fn non_zero_exit_is_retryable_with_the_status() {
    let result = run_sh("exit 3", json!({}), &scratch_dir()).await;
    assert_eq!(
        result,
        Err(TaskError::Retryable("command exited with status 3".into()))
    );
}

#[tokio::test]
async fn death_by_signal_names_the_signal() {
    let result = run_sh("kill -9 $$", json!({}), &scratch_dir()).await;
    assert_eq!(
        result,
        Err(TaskError::Retryable(
            "command was killed by signal 9 (SIGKILL)".into()
        ))
    );
}

#[tokio::test]
async fn a_missing_program_is_retryable_and_named() {
    let ctx = task_context(json!({}));
    let config = json!({"command": ["upiflow-no-such-program"], "env": {}, "cwd": "/"});
    match CommandKind.run(&ctx, &config).await {
        Err(TaskError::Retryable(m)) => assert!(m.contains("`upiflow-no-such-program`"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_config_is_fatal() {
    let ctx = task_context(json!({}));
    let result = CommandKind.run(&ctx, &json!({"command": "ls"})).await;
    assert!(matches!(result, Err(TaskError::Fatal(_))), "{result:?}");
}

#[tokio::test]
async fn the_command_sees_upiflow_variables_its_env_and_its_cwd() {
    let dir = scratch_dir();
    let script = "for v in UPIFLOW_DAG_ID UPIFLOW_RUN_ID UPIFLOW_TASK_ID UPIFLOW_TRY_NUMBER \
                  UPIFLOW_MAX_TRIES UPIFLOW_LOGICAL_DATE UPIFLOW_DS UPIFLOW_DATA_INTERVAL_START \
                  UPIFLOW_DATA_INTERVAL_END MY_VAR; do eval \"echo \\$$v\"; done > out.txt; pwd >> out.txt";
    run_sh(script, json!({"MY_VAR": "hello world"}), &dir)
        .await
        .expect("runs");
    let out = std::fs::read_to_string(dir.join("out.txt")).expect("written");
    let expected = [
        "test_dag",
        "scheduled__2024-01-02T00:00:00+00:00",
        "test_task",
        "1",
        "3",
        "2024-01-02T00:00:00+00:00",
        "2024-01-02",
        "2024-01-02T00:00:00+00:00",
        "2024-01-03T00:00:00+00:00",
        "hello world",
        &canonical(&dir),
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

/// Whether `pid` is gone; a zombie counts as gone (it is dead, only not reaped yet, and
/// PID 1 of a container may never reap it).
fn is_gone(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[tokio::test]
async fn dropping_the_run_kills_the_whole_process_group() {
    let dir = scratch_dir();
    let run = run_sh("sleep 30 & echo $! > pid; wait", json!({}), &dir);
    let timed_out = tokio::time::timeout(Duration::from_millis(500), run).await;
    assert!(timed_out.is_err(), "the command should still be running");
    let pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .expect("pid written")
        .trim()
        .parse()
        .expect("a pid");
    let deadline = Instant::now() + Duration::from_secs(1);
    while !is_gone(pid) {
        assert!(Instant::now() < deadline, "grandchild {pid} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn lines_are_split_without_endings_and_decoded_lossily() {
    let input: &[u8] = b"one\r\ntwo\n\nbad \xff byte\nlast";
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    while let Some(line) = next_line(&mut reader, &mut buf).await.expect("reads") {
        lines.push(line);
    }
    assert_eq!(lines, ["one", "two", "", "bad \u{FFFD} byte", "last"]);
}

#[tokio::test]
async fn an_overlong_line_is_cut_into_pieces() {
    let input = vec![b'x'; MAX_LINE_BYTES as usize + 10];
    let mut reader = BufReader::new(input.as_slice());
    let mut buf = Vec::new();
    let first = next_line(&mut reader, &mut buf).await.expect("reads");
    assert_eq!(first.map(|l| l.len()), Some(MAX_LINE_BYTES as usize));
    let second = next_line(&mut reader, &mut buf).await.expect("reads");
    assert_eq!(second.map(|l| l.len()), Some(10));
}

#[test]
fn templates_are_parsed_at_prepare_and_their_references_recorded() {
    let dir = scratch_dir();
    let ctx = prepare_ctx(&dir);
    let config = CommandKind
        .prepare(
            &ctx,
            table(
                "command = [\"echo\", \"{{ ds }} {{ conn.wh.host }}\"]\nenv = { R = \"{{ var.region }}\" }",
            ),
        )
        .expect("valid");
    // Stored as written: rendered per try.
    assert_eq!(config["command"][1], json!("{{ ds }} {{ conn.wh.host }}"));
    let refs = ctx.references.borrow().clone();
    assert_eq!(
        refs,
        [
            ("command".to_string(), Reference::Connection("wh".into())),
            ("env".to_string(), Reference::Variable("region".into())),
        ]
    );
}

#[test]
fn every_bad_template_is_reported_at_its_key() {
    let dir = scratch_dir();
    let problems = CommandKind
        .prepare(
            &prepare_ctx(&dir),
            table(
                "command = [\"echo\", \"{{ ds \"]\nenv = { A = \"{% if %}\", B = \"{{ nope }}\" }",
            ),
        )
        .expect_err("refused");
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_deref()).collect();
    assert_eq!(
        keys,
        [Some("command"), Some("env"), Some("env")],
        "{problems:?}"
    );
    assert!(problems[0].message.contains("command[1]"), "{problems:?}");
    assert!(problems[2].message.contains("`nope`"), "{problems:?}");
}

#[tokio::test]
async fn a_templated_cwd_is_rendered_against_the_dag_folder() {
    let dir = scratch_dir();
    std::fs::create_dir(dir.join("2024-01-02")).expect("mkdir");
    let config = CommandKind
        .prepare(
            &prepare_ctx(&dir),
            table("command = [\"sh\", \"-c\", \"test \\\"$(basename $(pwd))\\\" = {{ ds }}\"]\ncwd = \"{{ ds }}\""),
        )
        .expect("valid");
    assert_eq!(config["cwd"], json!("{{ ds }}"));
    let ctx = task_context(json!({}));
    CommandKind
        .run(&ctx, &config)
        .await
        .expect("runs in the rendered folder");
}
