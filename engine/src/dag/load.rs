//! Reading DAG files: TOML -> untyped table -> validated `Dag`, key by key. Every problem
//! (an unknown key anywhere, a bad value, a missing key, an unknown upstream, a cycle) is
//! reported with its file and line, all of them in one pass; only a TOML syntax error stops
//! the reading of a file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::fields::{self, Ctx, join, unknown_keys};
use super::locate::{Locator, Seg};
use super::notifiers::{self, Available, Found, SharedNotifiers, nearest_notifiers_file};
use super::problem::{DateError, DurationError, KeyPlace, Problem};
use super::{
    DEFAULT_MAX_ACTIVE_TASKS, DEFAULT_POOL, Dag, PoolLines, RetryPolicy, TaskDef, TaskReference,
    build_graph, find_cycles,
};
use crate::kind::{PrepareCtx, Registry};
use crate::schedule::{Schedule, parse_timezone};
use crate::state::{TriggerRule, WeightRule};

/// A problem in a DAG file, at a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct DagError {
    pub file: PathBuf,
    pub line: usize,
    /// What is wrong, with its data.
    pub problem: Problem,
    /// `problem` as users read it (kept rendered: the scheduler stores it, pages show it).
    pub message: String,
}

impl DagError {
    pub fn new(file: PathBuf, line: usize, problem: Problem) -> Self {
        Self {
            file,
            line,
            message: problem.to_string(),
            problem,
        }
    }
}

/// The keys of a DAG file's top level.
const DAG_KEYS: &[&str] = &[
    "dag_id",
    "description",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "tags",
    "defaults",
    "params",
    "tasks",
    "notifiers",
    "on_failure",
    "on_success",
    "on_deadline_miss",
    "deadline",
    "allowed_lateness",
];

/// Keys of `[defaults]`, which any task may override.
const OVERRIDE_KEYS: &[&str] = &[
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "timeout",
    "pool",
    "pool_slots",
    "priority_weight",
    "weight_rule",
    "max_active_tis_per_dag",
    "on_failure",
    "on_retry",
    "on_success",
];

/// Keys every task has, besides [`OVERRIDE_KEYS`] and its kind's own.
const TASK_KEYS: &[&str] = &["id", "kind", "upstream", "trigger_rule"];

const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;

/// Loads and validates one DAG file, with the shared notifiers of the nearest
/// `notifiers.toml` at or above its folder.
pub fn load_dag_file(path: &Path, registry: &Registry) -> Result<Dag, Vec<DagError>> {
    let shared = nearest_notifiers_file(&folder_of(path), None)
        .map(|f| notifiers::load_notifiers_file(&f).0);
    load_dag_file_with(path, registry, shared.as_ref())
}

fn load_dag_file_with(
    path: &Path,
    registry: &Registry,
    shared: Option<&SharedNotifiers>,
) -> Result<Dag, Vec<DagError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![DagError::new(
            path.to_path_buf(),
            1,
            Problem::Unreadable {
                error: e.to_string(),
            },
        )]
    })?;
    load_dag_str_with(path, &text, registry, shared)
}

/// Loads and validates DAG text as if read from `path` (relative files resolve next to it),
/// without shared notifiers.
pub fn load_dag_str(path: &Path, text: &str, registry: &Registry) -> Result<Dag, Vec<DagError>> {
    load_dag_str_with(path, text, registry, None)
}

/// [`load_dag_str`] with the shared notifiers of a `notifiers.toml`.
pub fn load_dag_str_with(
    path: &Path,
    text: &str,
    registry: &Registry,
    shared: Option<&SharedNotifiers>,
) -> Result<Dag, Vec<DagError>> {
    let mut cx = Ctx {
        file: path,
        loc: Locator::new(text),
        errors: Vec::new(),
    };
    // Syntax only: the one kind of problem after which nothing else can be read.
    let doc: toml::Table = match toml::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map_or(1, |s| cx.loc.line_of(s.start));
            return Err(vec![DagError::new(
                path.to_path_buf(),
                line,
                Problem::Syntax {
                    message: e.message().trim().to_string(),
                },
            )]);
        }
    };
    let dag = validate(&mut cx, &doc, registry, shared);
    match dag {
        Some(mut dag) if cx.errors.is_empty() => {
            dag.source = Some(text.to_string());
            Ok(dag)
        }
        _ => {
            cx.errors.sort_by_key(|e| e.line);
            Err(cx.errors)
        }
    }
}

/// The folder relative files of a DAG resolve against: the file's own folder, `.` for a
/// bare file name (whose parent is the empty path, which no file call accepts).
fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The registered kind names, for messages.
fn known_kinds(registry: &Registry) -> Vec<String> {
    registry.names().iter().map(|n| n.to_string()).collect()
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 250
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// One `[[tasks]]` entry as far as it could be read.
struct RawTask<'t> {
    id: Option<&'t str>,
    upstream: Vec<&'t str>,
}

/// A notifier name written in an `on_*` key, at its line.
struct NameUse {
    line: usize,
    key: &'static str,
    name: String,
}

/// The `on_*` key `key` of `table` (at `at`): its names, each use recorded with its line.
fn notifier_names(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &toml::Table,
    key: &'static str,
    uses: &mut Vec<NameUse>,
) -> Option<Vec<String>> {
    let names = fields::strings(cx, at, table, key)?;
    for (i, name) in names.iter().enumerate() {
        let mut path = join(at, key);
        path.push(Seg::Index(i));
        if names[..i].contains(name) {
            cx.err(
                &path,
                Problem::DuplicateNotifierName {
                    key: key.to_string(),
                    name: name.to_string(),
                },
            );
        }
        uses.push(NameUse {
            line: cx.loc.line(&path),
            key,
            name: name.to_string(),
        });
    }
    let mut out: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    out.dedup();
    Some(out)
}

fn validate(
    cx: &mut Ctx<'_>,
    doc: &toml::Table,
    registry: &Registry,
    shared: Option<&SharedNotifiers>,
) -> Option<Dag> {
    use Seg::{Index, Key};
    if doc.contains_key("on_retry") {
        cx.err(&[Key("on_retry")], Problem::OnRetryAtTopLevel);
        let rest: toml::Table = doc
            .iter()
            .filter(|(k, _)| *k != "on_retry")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        unknown_keys(cx, &[], &rest, DAG_KEYS, KeyPlace::TopLevel);
    } else {
        unknown_keys(cx, &[], doc, DAG_KEYS, KeyPlace::TopLevel);
    }
    let mut uses: Vec<NameUse> = Vec::new();
    let own_notifiers = notifiers::parse(cx, doc);
    let dag_on_failure = notifier_names(cx, &[], doc, "on_failure", &mut uses).unwrap_or_default();
    let dag_on_success = notifier_names(cx, &[], doc, "on_success", &mut uses).unwrap_or_default();
    let on_deadline_miss =
        notifier_names(cx, &[], doc, "on_deadline_miss", &mut uses).unwrap_or_default();
    let deadline = notifiers::deadline(cx, doc);
    if doc.contains_key("on_deadline_miss") && !doc.contains_key("deadline") {
        cx.err(
            &[Key("on_deadline_miss")],
            Problem::DeadlineMissWithoutDeadline,
        );
    }
    let dag_id = match doc.get("dag_id") {
        None => {
            cx.err(&[], Problem::MissingDagId);
            None
        }
        Some(_) => fields::string(cx, &[], doc, "dag_id"),
    };
    if let Some(id) = dag_id
        && !valid_id(id)
    {
        cx.err(
            &[Key("dag_id")],
            Problem::InvalidDagId { id: id.to_string() },
        );
    }
    let description = fields::string(cx, &[], doc, "description");
    let schedule_text = fields::string(cx, &[], doc, "schedule").unwrap_or("none");
    if let Err(e) = Schedule::parse(schedule_text) {
        cx.err(&[Key("schedule")], e);
    }
    let timezone = fields::string(cx, &[], doc, "timezone").unwrap_or("UTC");
    let tz = match parse_timezone(timezone) {
        Ok(tz) => Some(tz),
        Err(e) => {
            cx.err(&[Key("timezone")], e);
            None
        }
    };
    let tz_or_utc = tz.unwrap_or(Tz::UTC);
    let start_date = doc
        .get("start_date")
        .and_then(|v| parse_date(cx, "start_date", v, tz_or_utc));
    let end_date = doc
        .get("end_date")
        .and_then(|v| parse_date(cx, "end_date", v, tz_or_utc));
    if let (Some(s), Some(e)) = (start_date, end_date)
        && e <= s
    {
        cx.err(&[Key("end_date")], Problem::EndNotAfterStart);
    }
    let catchup = fields::boolean(cx, &[], doc, "catchup").unwrap_or(false);
    let allowed_lateness = doc
        .get("allowed_lateness")
        .and_then(|v| match parse_duration(v) {
            Ok(d) => Some(d),
            Err(problem) => {
                cx.err(
                    &[Key("allowed_lateness")],
                    Problem::BadDuration {
                        key: "allowed_lateness".into(),
                        problem,
                    },
                );
                None
            }
        });
    let max_active_runs =
        fields::count(cx, &[], doc, "max_active_runs", 1).unwrap_or(DEFAULT_MAX_ACTIVE_RUNS);
    let max_active_tasks =
        fields::count(cx, &[], doc, "max_active_tasks", 1).unwrap_or(DEFAULT_MAX_ACTIVE_TASKS);
    let tags = fields::strings(cx, &[], doc, "tags").unwrap_or_default();
    let empty = toml::Table::new();
    let defaults_table = fields::table(cx, &[], doc, "defaults", "[defaults]").unwrap_or(&empty);
    unknown_keys(
        cx,
        &[Key("defaults")],
        defaults_table,
        OVERRIDE_KEYS,
        KeyPlace::Defaults,
    );
    let defaults = resolve_overrides(cx, &[Key("defaults")], defaults_table, None, &mut uses);
    let params: Map<String, Value> = fields::table(cx, &[], doc, "params", "[params]")
        .unwrap_or(&empty)
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect();

    let entries: &[toml::Value] = match doc.get("tasks") {
        None => {
            cx.err(&[Key("dag_id")], Problem::NoTasks);
            &[]
        }
        Some(toml::Value::Array(a)) => {
            if a.is_empty() {
                cx.err(&[Key("tasks")], Problem::NoTasks);
            }
            a
        }
        Some(v) => {
            cx.err(
                &[Key("tasks")],
                Problem::TasksNotArray {
                    found: fields::describe(v),
                },
            );
            &[]
        }
    };

    let dag_dir = folder_of(cx.file);
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut raw_tasks: Vec<RawTask<'_>> = Vec::with_capacity(entries.len());
    let mut tasks = Vec::with_capacity(entries.len());
    let mut pool_lines = HashMap::new();
    let mut references = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = [Key("tasks"), Index(i)];
        let Some(t) = entry.as_table() else {
            cx.err(
                &at,
                Problem::TaskNotTable {
                    number: i + 1,
                    found: fields::describe(entry),
                },
            );
            continue;
        };
        let id = match t.get("id") {
            None => {
                cx.err(&at, Problem::TaskWithoutId { number: i + 1 });
                None
            }
            Some(_) => fields::string(cx, &at, t, "id"),
        };
        // How messages name the task: its id, or its position when it has none.
        let name = id.map_or_else(|| format!("#{}", i + 1), |id| id.to_string());
        if let Some(id) = id {
            if !valid_id(id) {
                cx.err(
                    &join(&at, "id"),
                    Problem::InvalidTaskId { id: id.to_string() },
                );
            }
            if let Some(&j) = first_seen.get(id) {
                let first_line = cx.loc.line(&[Key("tasks"), Index(j), Key("id")]);
                cx.err(
                    &join(&at, "id"),
                    Problem::DuplicateTaskId {
                        id: id.to_string(),
                        first_line,
                    },
                );
            } else {
                first_seen.insert(id, i);
            }
        }
        let kind_name = match t.get("kind") {
            None => {
                cx.err(
                    &at,
                    Problem::TaskWithoutKind {
                        task: name.clone(),
                        known: known_kinds(registry),
                    },
                );
                None
            }
            Some(_) => fields::string(cx, &at, t, "kind"),
        };
        let trigger_rule = match fields::string(cx, &at, t, "trigger_rule") {
            None => TriggerRule::default(),
            Some(s) => TriggerRule::parse(s).unwrap_or_else(|| {
                cx.err(
                    &join(&at, "trigger_rule"),
                    Problem::UnknownTriggerRule {
                        value: s.to_string(),
                    },
                );
                TriggerRule::default()
            }),
        };
        let upstream = fields::strings(cx, &at, t, "upstream").unwrap_or_default();
        for (j, up) in upstream.iter().enumerate() {
            if upstream[..j].contains(up) {
                cx.err(
                    &[Key("tasks"), Index(i), Key("upstream"), Index(j)],
                    Problem::DuplicateUpstream {
                        task: name.clone(),
                        upstream: up.to_string(),
                    },
                );
            }
        }
        let resolved = resolve_overrides(cx, &at, t, Some(&defaults), &mut uses);
        let kind = kind_name.and_then(|k| match registry.get(k) {
            Some(kind) => Some(kind),
            None => {
                cx.err(
                    &join(&at, "kind"),
                    Problem::UnknownKind {
                        kind: k.to_string(),
                        known: known_kinds(registry),
                    },
                );
                None
            }
        });
        // With the kind unknown, its keys cannot be told from mistakes: only the common
        // keys were checked.
        let config = match kind {
            None => Value::Null,
            Some(kind) => {
                let own = kind.keys();
                let allowed: Vec<&str> = TASK_KEYS
                    .iter()
                    .chain(OVERRIDE_KEYS)
                    .chain(own)
                    .copied()
                    .collect();
                unknown_keys(
                    cx,
                    &at,
                    t,
                    &allowed,
                    KeyPlace::Task {
                        task: name.clone(),
                        kind: kind.name().to_string(),
                    },
                );
                // The kind still checks the keys that are its own, so a missing or bad one is
                // reported in the same pass as the unknown ones.
                let keys: toml::Table = t
                    .iter()
                    .filter(|(k, _)| own.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let used = std::cell::RefCell::new(Vec::new());
                let pcx = PrepareCtx {
                    dag_id: dag_id.unwrap_or_default(),
                    task_id: id.unwrap_or_default(),
                    dag_dir: &dag_dir,
                    references: &used,
                };
                let prepared = kind.prepare(&pcx, keys);
                for (key, reference) in used.into_inner() {
                    references.push(TaskReference {
                        task: name.clone(),
                        notifier: None,
                        file: None,
                        line: cx.loc.line(&join(&at, &key)),
                        reference,
                    });
                }
                match prepared {
                    Ok(v) => v,
                    Err(problems) => {
                        for e in problems {
                            let path = match e.key.as_deref() {
                                Some(key) => join(&at, key),
                                None if id.is_some() => join(&at, "id"),
                                None => at.to_vec(),
                            };
                            cx.err(
                                &path,
                                Problem::Kind {
                                    task: name.clone(),
                                    key: e.key.clone(),
                                    message: e.message,
                                },
                            );
                        }
                        Value::Null
                    }
                }
            }
        };
        raw_tasks.push(RawTask {
            id,
            upstream: upstream.clone(),
        });
        if let (Some(id), Some(kind)) = (id, kind_name) {
            let id_line = cx.loc.line(&join(&at, "id"));
            pool_lines.insert(
                id.to_string(),
                PoolLines {
                    pool: resolved.pool.as_ref().map_or(id_line, |p| p.1),
                    pool_slots: resolved.pool_slots.map_or(id_line, |p| p.1),
                },
            );
            tasks.push(TaskDef {
                id: id.to_string(),
                kind: kind.to_string(),
                upstream: upstream.iter().map(|s| s.to_string()).collect(),
                trigger_rule,
                retry: resolved.retry,
                timeout: resolved.timeout,
                config,
                pool: resolved
                    .pool
                    .map_or_else(|| DEFAULT_POOL.to_string(), |p| p.0),
                pool_slots: resolved.pool_slots.map_or(1, |p| p.0),
                priority_weight: resolved.priority_weight.unwrap_or(1),
                weight_rule: resolved.weight_rule.unwrap_or_default(),
                max_active_tis_per_dag: resolved.max_active_tis_per_dag,
                on_failure: resolved.on_failure.unwrap_or_default(),
                on_retry: resolved.on_retry.unwrap_or_default(),
                on_success: resolved.on_success.unwrap_or_default(),
            });
        }
    }

    // Unknown upstreams, then cycles (only meaningful once every edge is known).
    for (i, t) in raw_tasks.iter().enumerate() {
        let name =
            t.id.map_or_else(|| format!("#{}", i + 1), |id| id.to_string());
        for (j, up) in t.upstream.iter().enumerate() {
            if !first_seen.contains_key(up) {
                cx.err(
                    &[Key("tasks"), Index(i), Key("upstream"), Index(j)],
                    Problem::UnknownUpstream {
                        task: name.clone(),
                        upstream: up.to_string(),
                    },
                );
            }
        }
    }
    let (graph, _) = build_graph(
        raw_tasks
            .iter()
            .filter_map(|t| Some((t.id?, t.upstream.iter().copied()))),
    );
    for cycle in find_cycles(&graph) {
        let i = first_seen.get(cycle[0]).copied().unwrap_or(0);
        cx.err(
            &[Key("tasks"), Index(i), Key("upstream")],
            Problem::Cycle {
                cycle: cycle.iter().map(|t| t.to_string()).collect(),
            },
        );
    }

    // Every notifier name against the DAG's own notifiers and the shared ones.
    let available = Available {
        own: &own_notifiers,
        shared,
    };
    let mut used: BTreeMap<String, super::Notifier> = BTreeMap::new();
    for u in &uses {
        let found = available.find(&u.name);
        match &found {
            Found::Own(n) | Found::Shared(n, _) => {
                if !used.contains_key(&n.name) {
                    references.extend(available.references(&found));
                    used.insert(n.name.clone(), (*n).clone());
                }
            }
            Found::Broken { shared_file } => cx.errors.push(DagError::new(
                cx.file.to_path_buf(),
                u.line,
                Problem::BrokenNotifier {
                    key: u.key.to_string(),
                    name: u.name.clone(),
                    file: shared_file.map(Path::to_path_buf),
                },
            )),
            Found::Unknown => cx.errors.push(DagError::new(
                cx.file.to_path_buf(),
                u.line,
                Problem::UnknownNotifier {
                    key: u.key.to_string(),
                    name: u.name.clone(),
                    known: available.names(),
                },
            )),
        }
    }

    if !cx.errors.is_empty() {
        return None;
    }
    let dag = Dag {
        notifiers: used.into_values().collect(),
        on_failure: dag_on_failure,
        on_success: dag_on_success,
        on_deadline_miss,
        deadline,
        allowed_lateness,
        dag_id: dag_id?.to_string(),
        description: description.map(str::to_string),
        schedule: schedule_text.to_string(),
        timezone: timezone.to_string(),
        start_date,
        end_date,
        catchup,
        max_active_runs,
        max_active_tasks,
        tags: tags.iter().map(|s| s.to_string()).collect(),
        params,
        tasks,
        fileloc: cx.file.display().to_string(),
        source: None,
        pool_lines,
        references,
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
    /// The pool and the line it is written at.
    pool: Option<(String, usize)>,
    pool_slots: Option<(u32, usize)>,
    priority_weight: Option<i32>,
    weight_rule: Option<WeightRule>,
    max_active_tis_per_dag: Option<u32>,
    on_failure: Option<Vec<String>>,
    on_retry: Option<Vec<String>>,
    on_success: Option<Vec<String>>,
}

/// What a pool may be called (the `pools.name` check), in DAG files and `crate::pools`.
pub(crate) fn valid_pool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The `[defaults]` keys of `table` (the defaults themselves or a task) over `base`.
fn resolve_overrides(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &toml::Table,
    base: Option<&Resolved>,
    uses: &mut Vec<NameUse>,
) -> Resolved {
    let dur = |cx: &mut Ctx<'_>, key: &'static str| -> Option<Duration> {
        let v = table.get(key)?;
        match parse_duration(v) {
            Ok(d) => Some(d),
            Err(e) => {
                cx.err(
                    &join(at, key),
                    Problem::BadDuration {
                        key: key.to_string(),
                        problem: e,
                    },
                );
                None
            }
        }
    };
    let retry_delay = dur(cx, "retry_delay");
    let max_retry_delay = dur(cx, "max_retry_delay");
    let timeout = dur(cx, "timeout");
    let retries = fields::count(cx, at, table, "retries", 0);
    let backoff = fields::boolean(cx, at, table, "retry_exponential_backoff");
    let pool = fields::string(cx, at, table, "pool").and_then(|p| {
        if valid_pool_name(p) {
            Some((p.to_string(), cx.loc.line(&join(at, "pool"))))
        } else {
            cx.err(
                &join(at, "pool"),
                Problem::InvalidPoolName {
                    name: p.to_string(),
                },
            );
            None
        }
    });
    let pool_slots = fields::count(cx, at, table, "pool_slots", 1)
        .map(|n| (n, cx.loc.line(&join(at, "pool_slots"))));
    let priority_weight = fields::integer(cx, at, table, "priority_weight");
    let weight_rule = fields::string(cx, at, table, "weight_rule").and_then(|s| {
        let rule = WeightRule::parse(s);
        if rule.is_none() {
            cx.err(
                &join(at, "weight_rule"),
                Problem::UnknownWeightRule {
                    value: s.to_string(),
                },
            );
        }
        rule
    });
    let max_active_tis_per_dag = fields::count(cx, at, table, "max_active_tis_per_dag", 1);
    let on_failure = notifier_names(cx, at, table, "on_failure", uses);
    let on_retry = notifier_names(cx, at, table, "on_retry", uses);
    let on_success = notifier_names(cx, at, table, "on_success", uses);
    let default = RetryPolicy::default();
    let b = base.map(|b| &b.retry).unwrap_or(&default);
    Resolved {
        pool: pool.or_else(|| base.and_then(|b| b.pool.clone())),
        pool_slots: pool_slots.or(base.and_then(|b| b.pool_slots)),
        priority_weight: priority_weight.or(base.and_then(|b| b.priority_weight)),
        weight_rule: weight_rule.or(base.and_then(|b| b.weight_rule)),
        max_active_tis_per_dag: max_active_tis_per_dag
            .or(base.and_then(|b| b.max_active_tis_per_dag)),
        retry: RetryPolicy {
            retries: retries.unwrap_or(b.retries),
            retry_delay: retry_delay.unwrap_or(b.retry_delay),
            exponential_backoff: backoff.unwrap_or(b.exponential_backoff),
            max_retry_delay: max_retry_delay.or(b.max_retry_delay),
        },
        timeout: timeout.or(base.and_then(|b| b.timeout)),
        on_failure: on_failure.or_else(|| base.and_then(|b| b.on_failure.clone())),
        on_retry: on_retry.or_else(|| base.and_then(|b| b.on_retry.clone())),
        on_success: on_success.or_else(|| base.and_then(|b| b.on_success.clone())),
    }
}

/// A humantime string (`30s`, `1h 30m`) or a whole number of seconds.
pub(super) fn parse_duration(v: &toml::Value) -> Result<Duration, DurationError> {
    match v {
        toml::Value::String(s) => {
            humantime::parse_duration(s).map_err(|e| DurationError::Unparsable {
                text: s.clone(),
                error: e.to_string(),
            })
        }
        toml::Value::Integer(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        other => Err(DurationError::NotADuration {
            value: other.to_string(),
        }),
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
                Problem::DateNotText {
                    key: key.to_string(),
                    value: other.to_string(),
                },
            );
            return None;
        }
    };
    match parse_datetime_in(&text, tz) {
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(
                &[Seg::Key(key)],
                Problem::BadDate {
                    key: key.to_string(),
                    problem: e,
                },
            );
            None
        }
    }
}

/// Parses `2024-01-01` (midnight in `tz`), `2024-01-01T06:00:00` (local to `tz`) or an
/// RFC 3339 timestamp with its own offset.
pub fn parse_datetime_in(text: &str, tz: Tz) -> Result<DateTime<Utc>, DateError> {
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
        return Err(DateError::NotADate {
            text: text.to_string(),
        });
    };
    tz.from_local_datetime(&local)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| DateError::DstGap {
            text: text.to_string(),
            tz,
        })
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
    // An empty folder name (`UPIFLOW_DAGS_FOLDER=`) means the current directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut files = Vec::new();
    collect_toml(dir, &mut files);
    files.sort();
    let mut out = Folder::default();
    // Shared notifiers: each notifiers.toml read once, its problems reported at its lines.
    let mut shared: HashMap<PathBuf, SharedNotifiers> = HashMap::new();
    let (notifier_files, dag_files): (Vec<PathBuf>, Vec<PathBuf>) =
        files.into_iter().partition(|f| {
            f.file_name()
                .is_some_and(|n| n == notifiers::NOTIFIERS_FILE)
        });
    for f in notifier_files {
        let (notifiers, errors) = notifiers::load_notifiers_file(&f);
        out.errors.extend(errors);
        shared.insert(f, notifiers);
    }
    let mut owners: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in dag_files {
        let nearest = nearest_notifiers_file(&folder_of(&file), Some(dir));
        match load_dag_file_with(&file, registry, nearest.and_then(|n| shared.get(&n))) {
            Ok(dag) => {
                if let Some(first) = owners.get(&dag.dag_id) {
                    out.errors.push(DagError::new(
                        file.clone(),
                        1,
                        Problem::DuplicateDagId {
                            dag_id: dag.dag_id.clone(),
                            first: first.clone(),
                        },
                    ));
                } else {
                    owners.insert(dag.dag_id.clone(), file);
                    out.dags.push(dag);
                }
            }
            Err(errs) => out.errors.extend(errs),
        }
    }
    if !dir.exists() {
        out.errors
            .push(DagError::new(dir.to_path_buf(), 1, Problem::NoFolder));
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
