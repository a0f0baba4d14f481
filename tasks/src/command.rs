//! The `command` kind: runs a program like Airflow's BashOperator (`command = ["sh", "-c",
//! "..."]`), streams its stdout and stderr into the try's log line by line, and fails the try
//! (retryably) on a non-zero exit. The program runs in its own process group, which is killed
//! whole when the try is abandoned (timeouts drop the run future).
//!
//! The argv, the env values and `cwd` are templates (`{{ ds }}`, `{{ params.x }}`,
//! `{{ var.x }}`, `{{ conn.ID.host }}`, see [`crate::template`]), parsed when the DAG is read
//! and rendered per try; the secrets they reveal are masked in the try's log.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Instant;

use futures::future::BoxFuture;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upiflow_engine::logs::LogStream;
use upiflow_engine::{PrepareCtx, PrepareError, TaskContext, TaskError, TaskKind};

use crate::keys::{self, KeySpec};
use crate::template::{self, Refs};

mod output;

use output::pump;

/// `kind = "command"`.
pub struct CommandKind;

/// A prepared `command` task, stored as
/// `{"command": ["sh", "-c", "..."], "env": {"NAME": "value"}, "cwd": "/absolute/dir"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The program and its arguments; never empty.
    pub command: Vec<String>,
    /// Variables added to the worker's environment.
    pub env: BTreeMap<String, String>,
    /// The working directory, absolute (resolved when the DAG was parsed), or, when it is a
    /// template, the template, resolved per try against `cwd_base`.
    pub cwd: String,
    /// The DAG's folder (absolute) when `cwd` is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd_base: Option<String>,
}

/// The keys as written in the DAG file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
}

const SPEC: &[KeySpec] = &[
    KeySpec {
        name: "command",
        expects: "an array of strings, the program and its arguments (e.g. [\"sh\", \"-c\", \"echo hi\"])",
    },
    KeySpec {
        name: "env",
        expects: "a table of strings (e.g. { LANG = \"C\" })",
    },
    KeySpec {
        name: "cwd",
        expects: "a string, a folder relative to the DAG file or absolute",
    },
];

/// Variables upiflow sets for every command; in the order of [`upiflow_env`].
const UPIFLOW_VARS: [&str; 9] = [
    "UPIFLOW_DAG_ID",
    "UPIFLOW_RUN_ID",
    "UPIFLOW_TASK_ID",
    "UPIFLOW_TRY_NUMBER",
    "UPIFLOW_MAX_TRIES",
    "UPIFLOW_LOGICAL_DATE",
    "UPIFLOW_DS",
    "UPIFLOW_DATA_INTERVAL_START",
    "UPIFLOW_DATA_INTERVAL_END",
];

impl TaskKind for CommandKind {
    fn name(&self) -> &'static str {
        "command"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["command", "env", "cwd"]
    }

    fn prepare(&self, ctx: &PrepareCtx<'_>, keys: toml::Table) -> Result<Value, Vec<PrepareError>> {
        let keys: Keys = keys::parse(keys, SPEC)?;
        // Each key is checked on its own, so all of their problems show at once.
        let command = check_command(&keys.command);
        let env = check_env(&keys.env);
        let templated_cwd = keys.cwd.as_deref().filter(|c| template::is_template(c));
        let cwd = match templated_cwd {
            Some(t) => resolve_cwd(ctx, None).map(|base| (t.to_string(), Some(base))),
            None => resolve_cwd(ctx, keys.cwd.as_deref()).map(|cwd| (cwd, None)),
        };
        let mut refs = Refs::default();
        let templates = check_templates(&keys, &mut refs);
        let ((cwd, cwd_base), mut problems) = match (command, env, cwd) {
            (Ok(()), Ok(()), Ok(cwd)) => (cwd, Vec::new()),
            (command, env, cwd) => (
                (String::new(), None),
                [command.err(), env.err(), cwd.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
        };
        problems.extend(templates);
        for conn_id in &refs.connections {
            ctx.uses_connection(
                template_key(&keys, |t| t.contains(conn_id.as_str())),
                conn_id,
            );
        }
        for key in &refs.variables {
            ctx.uses_variable(template_key(&keys, |t| t.contains(key.as_str())), key);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let config = CommandConfig {
            cwd,
            cwd_base,
            command: keys.command,
            env: keys.env,
        };
        Ok(serde_json::to_value(config).map_err(|e| PrepareError::task(e.to_string()))?)
    }

    fn run<'a>(
        &'a self,
        ctx: &'a TaskContext,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(execute(ctx, config))
    }
}

/// The templates of a task by name (`command[2]`, `env.NAME`, `cwd`) and the key each is in.
fn templates(keys: &Keys) -> Vec<(&'static str, String, &str)> {
    let command = keys
        .command
        .iter()
        .enumerate()
        .map(|(i, a)| ("command", format!("command[{i}]"), a.as_str()));
    let env = keys
        .env
        .iter()
        .map(|(n, v)| ("env", format!("env.{n}"), v.as_str()));
    let cwd = keys
        .cwd
        .iter()
        .map(|c| ("cwd", "cwd".to_string(), c.as_str()));
    command
        .chain(env)
        .chain(cwd)
        .filter(|(_, _, t)| template::is_template(t))
        .collect()
}

/// Parses every template, so a syntax error or an unknown name shows when the DAG is read.
fn check_templates(keys: &Keys, refs: &mut Refs) -> Vec<PrepareError> {
    templates(keys)
        .into_iter()
        .filter_map(|(key, name, text)| {
            template::check(&name, text, refs)
                .err()
                .map(|m| PrepareError::at(key, m))
        })
        .collect()
}

/// The key of the first template that mentions a name, for the line of a problem with it.
fn template_key(keys: &Keys, mentions: impl Fn(&str) -> bool) -> &'static str {
    templates(keys)
        .into_iter()
        .find(|(_, _, t)| mentions(t))
        .map_or("command", |(key, _, _)| key)
}

fn check_command(command: &[String]) -> Result<(), PrepareError> {
    match command.first() {
        None => Err(PrepareError::at(
            "command",
            "must name a program: the array is empty",
        )),
        Some(program) if program.is_empty() => Err(PrepareError::at(
            "command",
            "the program (first element) is an empty string",
        )),
        _ => match command.iter().position(|a| a.contains('\0')) {
            Some(i) => Err(PrepareError::at(
                "command",
                format!("element {i} contains a NUL character"),
            )),
            None => Ok(()),
        },
    }
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), PrepareError> {
    for (name, value) in env {
        let problem = if name.is_empty() || name.contains(['=', '\0']) {
            Some(format!("`{name}` is not a valid variable name"))
        } else if UPIFLOW_VARS.contains(&name.as_str()) {
            Some(format!(
                "`{name}` is set by upiflow and cannot be overridden"
            ))
        } else if value.contains('\0') {
            Some(format!("the value of `{name}` contains a NUL character"))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(PrepareError::at("env", problem));
        }
    }
    Ok(())
}

/// Resolves `cwd` against the DAG's folder (the default), as an absolute path so the run
/// does not depend on the worker's own working directory.
fn resolve_cwd(ctx: &PrepareCtx<'_>, cwd: Option<&str>) -> Result<String, PrepareError> {
    let (given, err): (_, fn(String) -> PrepareError) = match cwd {
        Some(cwd) => (ctx.dag_dir.join(cwd), |m| PrepareError::at("cwd", m)),
        None => (ctx.dag_dir.to_path_buf(), PrepareError::task),
    };
    let dir = std::fs::canonicalize(&given).map_err(|e| {
        err(format!(
            "working directory `{}` cannot be used: {e}",
            given.display()
        ))
    })?;
    if !dir.is_dir() {
        return Err(err(format!(
            "working directory `{}` is not a directory",
            given.display()
        )));
    }
    dir.into_os_string().into_string().map_err(|dir| {
        err(format!(
            "working directory `{}` is not valid UTF-8",
            dir.display()
        ))
    })
}

fn upiflow_env(ctx: &TaskContext) -> impl Iterator<Item = (&'static str, String)> {
    let values = [
        ctx.dag_id.clone(),
        ctx.run_id.clone(),
        ctx.task_id.clone(),
        ctx.try_number.to_string(),
        ctx.max_tries.to_string(),
        ctx.logical_date.to_rfc3339(),
        ctx.ds.format("%Y-%m-%d").to_string(),
        ctx.data_interval_start.to_rfc3339(),
        ctx.data_interval_end.to_rfc3339(),
    ];
    UPIFLOW_VARS.into_iter().zip(values)
}

async fn execute(ctx: &TaskContext, config: &Value) -> Result<(), TaskError> {
    let config: CommandConfig = serde_json::from_value(config.clone())
        .map_err(|e| TaskError::Fatal(format!("invalid command task config: {e}")))?;
    let config = render(ctx, config).await?;
    let Some((program, args)) = config.command.split_first() else {
        return Err(TaskError::Fatal(
            "invalid command task config: empty command".into(),
        ));
    };
    if program.is_empty() {
        return Err(TaskError::Fatal(
            "the program (`command[0]`) rendered to an empty string".into(),
        ));
    }
    // The group's leader is a dead man's switch: it reads a pipe from this process, and if
    // the pipe closes without `done` (this worker was SIGKILLed or crashed) it kills the
    // whole group, so no command outlives its worker and still runs when the reaper has
    // failed its try and the retry starts.
    let mut switch = tokio::process::Command::new("sh")
        .args(["-c", "read -r word; [ \"$word\" = done ] || kill -KILL 0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TaskError::Retryable(format!("could not start `sh`: {e}")))?;
    let pgid = switch
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| TaskError::Retryable("`sh` exited at once".into()))?;
    let mut group = GroupGuard(Some(pgid));
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&config.cwd)
        .envs(upiflow_env(ctx))
        .envs(&config.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(pgid)
        .kill_on_drop(true);
    ctx.log
        .info(format!("running {:?} in {}", config.command, config.cwd))
        .await;
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| TaskError::Retryable(format!("could not start `{program}`: {e}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (status, (), ()) = tokio::join!(
        child.wait(),
        pump(stdout, LogStream::Stdout, &ctx.log),
        pump(stderr, LogStream::Stderr, &ctx.log),
    );
    let status =
        status.map_err(|e| TaskError::Retryable(format!("could not wait for `{program}`: {e}")))?;
    // Finished normally: whatever the program left running on purpose is its business.
    group.0 = None;
    disarm(&mut switch).await;
    outcome(status)?;
    ctx.log
        .info(format!(
            "command exited with status 0 after {} ms",
            started.elapsed().as_millis()
        ))
        .await;
    Ok(())
}

/// The config with every template rendered for this try; the secrets the templates looked
/// up are hidden in the try's log before anything is written.
async fn render(ctx: &TaskContext, mut config: CommandConfig) -> Result<CommandConfig, TaskError> {
    let mut slots: Vec<&mut String> = Vec::new();
    let mut sources = Vec::new();
    for (i, arg) in config.command.iter_mut().enumerate() {
        if template::is_template(arg) {
            sources.push((format!("command[{i}]"), arg.clone()));
            slots.push(arg);
        }
    }
    for (name, value) in config.env.iter_mut() {
        if template::is_template(value) {
            sources.push((format!("env.{name}"), value.clone()));
            slots.push(value);
        }
    }
    if config.cwd_base.is_some() {
        sources.push(("cwd".to_string(), config.cwd.clone()));
        slots.push(&mut config.cwd);
    }
    let rendered = template::render(ctx, sources).await?;
    for secret in &rendered.secrets {
        ctx.log.hide(secret);
    }
    for (slot, text) in slots.into_iter().zip(rendered.texts) {
        if text.contains('\0') {
            return Err(TaskError::Fatal(format!(
                "a template rendered `{text}`, which contains a NUL character"
            )));
        }
        *slot = text;
    }
    if let Some(base) = config.cwd_base.take() {
        config.cwd = std::path::Path::new(&base)
            .join(&config.cwd)
            .to_string_lossy()
            .into_owned();
    }
    Ok(config)
}

/// Tells the dead man's switch that the command ended here, and reaps it.
async fn disarm(switch: &mut tokio::process::Child) {
    use tokio::io::AsyncWriteExt;
    if let Some(mut stdin) = switch.stdin.take() {
        let _ = stdin.write_all(b"done\n").await;
    }
    let _ = switch.wait().await;
}

fn outcome(status: ExitStatus) -> Result<(), TaskError> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(TaskError::Retryable(format!(
            "command exited with status {code}"
        ))),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map_or(String::new(), |s| format!(" ({s})"));
            Err(TaskError::Retryable(format!(
                "command was killed by signal {signal}{name}"
            )))
        }
        (None, None) => Err(TaskError::Retryable(format!(
            "command ended abnormally: {status}"
        ))),
    }
}

/// Kills the child's whole process group when dropped while still armed (a timeout or
/// shutdown dropped the run), so grandchildren (`sh -c 'a | b'`) die with it.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.0 else { return };
        match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => tracing::warn!(pgid, %error, "could not kill a command's process group"),
        }
    }
}

#[cfg(test)]
mod tests;
