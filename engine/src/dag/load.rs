//! Reading DAG files: TOML -> typed spec (unknown keys refused) -> validated `Dag`.
//! Every problem is reported with its file and line, and all of them at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::locate::{Locator, Seg};
use super::{Dag, RetryPolicy, TaskDef, build_graph, find_cycles};
use crate::kind::{PrepareCtx, Registry};
use crate::schedule::{Schedule, parse_timezone};
use crate::state::TriggerRule;

/// A problem in a DAG file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct DagError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// The file format. Keys common to every task; the rest belong to the task's kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DagFile {
    dag_id: String,
    description: Option<String>,
    schedule: Option<String>,
    timezone: Option<String>,
    start_date: Option<toml::Value>,
    end_date: Option<toml::Value>,
    #[serde(default)]
    catchup: bool,
    max_active_runs: Option<u32>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    defaults: Overrides,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    tasks: Vec<TaskFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Overrides {
    retries: Option<u32>,
    retry_delay: Option<toml::Value>,
    retry_exponential_backoff: Option<bool>,
    max_retry_delay: Option<toml::Value>,
    timeout: Option<toml::Value>,
}

#[derive(Deserialize)]
struct TaskFile {
    id: String,
    kind: String,
    #[serde(default)]
    upstream: Vec<String>,
    trigger_rule: Option<String>,
    #[serde(flatten)]
    overrides: Overrides,
    /// Everything else: checked against the kind's own keys.
    #[serde(flatten)]
    rest: toml::Table,
}

const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;

struct Ctx<'a> {
    file: &'a Path,
    loc: Locator<'a>,
    errors: Vec<DagError>,
}

impl Ctx<'_> {
    fn err(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        let line = self.loc.line(path);
        self.errors.push(DagError {
            file: self.file.to_path_buf(),
            line,
            message: message.into(),
        });
    }
}

/// Loads and validates one DAG file.
pub fn load_dag_file(path: &Path, registry: &Registry) -> Result<Dag, Vec<DagError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![DagError {
            file: path.to_path_buf(),
            line: 1,
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    load_dag_str(path, &text, registry)
}

/// Loads and validates DAG text as if read from `path` (relative files resolve next to it).
pub fn load_dag_str(path: &Path, text: &str, registry: &Registry) -> Result<Dag, Vec<DagError>> {
    let mut cx = Ctx {
        file: path,
        loc: Locator::new(text),
        errors: Vec::new(),
    };
    let raw: DagFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map_or(1, |s| cx.loc.line_of(s.start));
            return Err(vec![DagError {
                file: path.to_path_buf(),
                line,
                message: e.message().trim().to_string(),
            }]);
        }
    };
    let dag = validate(&mut cx, raw, registry);
    match dag {
        Some(dag) if cx.errors.is_empty() => Ok(dag),
        _ => {
            cx.errors.sort_by_key(|e| e.line);
            Err(cx.errors)
        }
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 250
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn validate(cx: &mut Ctx<'_>, raw: DagFile, registry: &Registry) -> Option<Dag> {
    use Seg::{Index, Key};
    if !valid_id(&raw.dag_id) {
        cx.err(
            &[Key("dag_id")],
            format!(
                "dag_id `{}` must be 1-250 characters of letters, digits, `_`, `-` or `.`",
                raw.dag_id
            ),
        );
    }
    let schedule_text = raw.schedule.clone().unwrap_or_else(|| "none".into());
    if let Err(e) = Schedule::parse(&schedule_text) {
        cx.err(&[Key("schedule")], e);
    }
    let timezone = raw.timezone.clone().unwrap_or_else(|| "UTC".into());
    let tz = match parse_timezone(&timezone) {
        Ok(tz) => Some(tz),
        Err(e) => {
            cx.err(&[Key("timezone")], e);
            None
        }
    };
    let tz_or_utc = tz.unwrap_or(Tz::UTC);
    let start_date = raw
        .start_date
        .as_ref()
        .and_then(|v| parse_date(cx, "start_date", v, tz_or_utc));
    let end_date = raw
        .end_date
        .as_ref()
        .and_then(|v| parse_date(cx, "end_date", v, tz_or_utc));
    if let (Some(s), Some(e)) = (start_date, end_date)
        && e <= s
    {
        cx.err(&[Key("end_date")], "end_date must be after start_date");
    }
    if raw.max_active_runs == Some(0) {
        cx.err(
            &[Key("max_active_runs")],
            "max_active_runs must be at least 1",
        );
    }
    if raw.tasks.is_empty() {
        cx.err(&[Key("dag_id")], "a DAG needs at least one [[tasks]] entry");
    }
    let defaults = resolve_overrides(cx, &[Key("defaults")], &raw.defaults, None);

    let dag_dir = cx
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut tasks = Vec::with_capacity(raw.tasks.len());
    for (i, t) in raw.tasks.iter().enumerate() {
        let here = |key: &'static str| [Key("tasks"), Index(i), Key(key)];
        if !valid_id(&t.id) {
            cx.err(
                &here("id"),
                format!(
                    "task id `{}` must be 1-250 characters of letters, digits, `_`, `-` or `.`",
                    t.id
                ),
            );
        }
        if let Some(&j) = first_seen.get(t.id.as_str()) {
            let first_line = cx.loc.line(&[Key("tasks"), Index(j), Key("id")]);
            cx.err(
                &here("id"),
                format!(
                    "duplicate task id `{}` (first defined at line {first_line})",
                    t.id
                ),
            );
        } else {
            first_seen.insert(&t.id, i);
        }
        let trigger_rule = match t.trigger_rule.as_deref() {
            None => TriggerRule::default(),
            Some(s) => TriggerRule::parse(s).unwrap_or_else(|| {
                cx.err(
                    &here("trigger_rule"),
                    format!(
                        "unknown trigger rule `{s}` (expected one of {})",
                        TriggerRule::ALL.map(|(n, _)| n).join(", ")
                    ),
                );
                TriggerRule::default()
            }),
        };
        let mut seen_up = Vec::new();
        for (j, up) in t.upstream.iter().enumerate() {
            if seen_up.contains(&up) {
                cx.err(
                    &[Key("tasks"), Index(i), Key("upstream"), Index(j)],
                    format!("task `{}` lists upstream `{up}` twice", t.id),
                );
            }
            seen_up.push(up);
        }
        let resolved =
            resolve_overrides(cx, &[Key("tasks"), Index(i)], &t.overrides, Some(&defaults));
        let config = match registry.get(&t.kind) {
            None => {
                cx.err(
                    &here("kind"),
                    format!(
                        "unknown task kind `{}` (known kinds: {})",
                        t.kind,
                        registry.names().join(", ")
                    ),
                );
                Value::Null
            }
            Some(kind) => {
                let allowed = kind.keys();
                let mut ok = true;
                for key in t.rest.keys() {
                    if !allowed.contains(&key.as_str()) {
                        ok = false;
                        cx.err(
                            &[Key("tasks"), Index(i), Key(key)],
                            format!(
                                "unknown key `{key}` in task `{}` of kind `{}` (its keys: {}; every task: id, kind, upstream, trigger_rule, retries, retry_delay, retry_exponential_backoff, max_retry_delay, timeout)",
                                t.id,
                                t.kind,
                                if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
                            ),
                        );
                    }
                }
                if ok {
                    let pcx = PrepareCtx {
                        dag_id: &raw.dag_id,
                        task_id: &t.id,
                        dag_dir: &dag_dir,
                    };
                    match kind.prepare(&pcx, t.rest.clone()) {
                        Ok(v) => v,
                        Err(e) => {
                            let key = e.key.as_deref().unwrap_or("id");
                            cx.err(
                                &[Key("tasks"), Index(i), Key(key)],
                                format!("task `{}`: {}", t.id, e.message),
                            );
                            Value::Null
                        }
                    }
                } else {
                    Value::Null
                }
            }
        };
        tasks.push(TaskDef {
            id: t.id.clone(),
            kind: t.kind.clone(),
            upstream: t.upstream.clone(),
            trigger_rule,
            retry: resolved.retry,
            timeout: resolved.timeout,
            config,
        });
    }

    // Unknown upstreams, then cycles (only meaningful once every edge is known).
    for (i, t) in raw.tasks.iter().enumerate() {
        for (j, up) in t.upstream.iter().enumerate() {
            if !first_seen.contains_key(up.as_str()) {
                cx.err(
                    &[Key("tasks"), Index(i), Key("upstream"), Index(j)],
                    format!("task `{}` lists unknown upstream `{up}`", t.id),
                );
            }
        }
    }
    let (graph, _) = build_graph(
        raw.tasks
            .iter()
            .map(|t| (t.id.as_str(), t.upstream.iter().map(String::as_str))),
    );
    for cycle in find_cycles(&graph) {
        let i = first_seen.get(cycle[0]).copied().unwrap_or(0);
        cx.err(
            &[Key("tasks"), Index(i), Key("upstream")],
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }

    let params: Map<String, Value> = raw
        .params
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect();
    if !cx.errors.is_empty() {
        return None;
    }
    let dag = Dag {
        dag_id: raw.dag_id,
        description: raw.description,
        schedule: schedule_text,
        timezone,
        start_date,
        end_date,
        catchup: raw.catchup,
        max_active_runs: raw.max_active_runs.unwrap_or(DEFAULT_MAX_ACTIVE_RUNS),
        tags: raw.tags,
        params,
        tasks,
        fileloc: cx.file.display().to_string(),
        index: Default::default(),
    };
    match dag.indexed() {
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(&[], e);
            None
        }
    }
}

/// TOML to JSON; datetimes (which JSON lacks) become their RFC 3339 text.
pub(crate) fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

struct Resolved {
    retry: RetryPolicy,
    timeout: Option<Duration>,
}

fn resolve_overrides(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    o: &Overrides,
    base: Option<&Resolved>,
) -> Resolved {
    let mut dur = |key: &'static str, v: &Option<toml::Value>| -> Option<Option<Duration>> {
        let v = v.as_ref()?;
        let mut path = at.to_vec();
        path.push(Seg::Key(key));
        match parse_duration(v) {
            Ok(d) => Some(Some(d)),
            Err(e) => {
                cx.err(&path, format!("bad duration for `{key}`: {e}"));
                None
            }
        }
    };
    let retry_delay = dur("retry_delay", &o.retry_delay);
    let max_retry_delay = dur("max_retry_delay", &o.max_retry_delay);
    let timeout = dur("timeout", &o.timeout);
    let default = RetryPolicy::default();
    let b = base.map(|b| &b.retry).unwrap_or(&default);
    Resolved {
        retry: RetryPolicy {
            retries: o.retries.unwrap_or(b.retries),
            retry_delay: retry_delay.flatten().unwrap_or(b.retry_delay),
            exponential_backoff: o.retry_exponential_backoff.unwrap_or(b.exponential_backoff),
            max_retry_delay: max_retry_delay.unwrap_or(b.max_retry_delay),
        },
        timeout: timeout.unwrap_or(base.and_then(|b| b.timeout)),
    }
}

/// A humantime string (`30s`, `1h 30m`) or a whole number of seconds.
fn parse_duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::String(s) => humantime::parse_duration(s)
            .map_err(|e| format!("`{s}`: {e} (write e.g. \"30s\", \"5m\", \"1h 30m\")")),
        toml::Value::Integer(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        other => Err(format!(
            "`{other}` is not a duration (write e.g. \"30s\", \"5m\", \"1h 30m\")"
        )),
    }
}

fn parse_date(
    cx: &mut Ctx<'_>,
    key: &'static str,
    v: &toml::Value,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            cx.err(
                &[Seg::Key(key)],
                format!("{key} must be a date such as \"2024-01-01\", not `{other}`"),
            );
            return None;
        }
    };
    match parse_datetime_in(&text, tz) {
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(&[Seg::Key(key)], format!("{key}: {e}"));
            None
        }
    }
}

/// Parses `2024-01-01` (midnight in `tz`), `2024-01-01T06:00:00` (local to `tz`) or an
/// RFC 3339 timestamp with its own offset.
pub fn parse_datetime_in(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Ok(d.with_timezone(&Utc));
    }
    let local = if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).expect("midnight exists")
    } else if let Ok(d) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S"))
    {
        d
    } else {
        return Err(format!(
            "`{text}` is not a date (expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339)"
        ));
    };
    tz.from_local_datetime(&local)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| format!("`{text}` does not exist in {tz} (a DST gap)"))
}

/// Every DAG in a folder, and the errors of the files that are not valid.
#[derive(Debug, Default)]
pub struct Folder {
    pub dags: Vec<Dag>,
    pub errors: Vec<DagError>,
}

/// Loads every `*.toml` below `dir` (recursively, skipping hidden entries). Two files with one
/// dag_id: the second is an error.
pub fn load_folder(dir: &Path, registry: &Registry) -> Folder {
    let mut files = Vec::new();
    collect_toml(dir, &mut files);
    files.sort();
    let mut out = Folder::default();
    let mut owners: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        match load_dag_file(&file, registry) {
            Ok(dag) => {
                if let Some(first) = owners.get(&dag.dag_id) {
                    out.errors.push(DagError {
                        file: file.clone(),
                        line: 1,
                        message: format!(
                            "dag_id `{}` is already defined in {}",
                            dag.dag_id,
                            first.display()
                        ),
                    });
                } else {
                    owners.insert(dag.dag_id.clone(), file);
                    out.dags.push(dag);
                }
            }
            Err(errs) => out.errors.extend(errs),
        }
    }
    if !dir.exists() {
        out.errors.push(DagError {
            file: dir.to_path_buf(),
            line: 1,
            message: "the DAGs folder does not exist".into(),
        });
    }
    out
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_toml(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}
