//! The kinds of problems a DAG file can have, each carrying its data (key, value, task,
//! line of a first definition...). `Display` is the message users see in `dags validate`,
//! the UI's import errors and the API; tests/dag_files.rs pins those texts.

use std::path::PathBuf;

use crate::schedule::{ScheduleError, UnknownTimezone};
use crate::state::{TriggerRule, WeightRule};

/// One problem of a DAG file (without its file and line: see `DagError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("cannot read the file: {error}")]
    Unreadable { error: String },
    #[error("TOML syntax: {message}")]
    Syntax { message: String },
    #[error("missing key `dag_id` (the DAG's name, e.g. dag_id = \"daily_upi\")")]
    MissingDagId,
    #[error("dag_id `{id}` must be 1-250 characters of letters, digits, `_`, `-` or `.`")]
    InvalidDagId { id: String },
    #[error("dag_id `{dag_id}` is already defined in {}", first.display())]
    DuplicateDagId { dag_id: String, first: PathBuf },
    #[error("the DAGs folder does not exist")]
    NoFolder,
    #[error(
        "unknown key `{key}` {place} ({}known keys: {})",
        suggestion.as_ref().map(|k| format!("did you mean `{k}`? ")).unwrap_or_default(),
        known.join(", ")
    )]
    UnknownKey {
        key: String,
        place: KeyPlace,
        /// A known key within a small edit distance (a typo).
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error("`{key}` must be {expected}, not {found}")]
    WrongType {
        key: String,
        expected: String,
        /// What the value is ("the integer 3").
        found: String,
    },
    #[error(
        "`{key}` must be a whole number from {min} to {}, not {value}",
        u32::MAX
    )]
    CountOutOfRange { key: String, min: u32, value: i64 },
    #[error("`{key}` must hold only strings; element {number} is {found}")]
    NotAString {
        key: String,
        /// 1-based position in the array.
        number: usize,
        found: String,
    },
    #[error("bad duration for `{key}`: {problem}")]
    BadDuration { key: String, problem: DurationError },
    #[error("{key} must be a date such as \"2024-01-01\", not `{value}`")]
    DateNotText { key: String, value: String },
    #[error("{key}: {problem}")]
    BadDate { key: String, problem: DateError },
    #[error("end_date must be after start_date")]
    EndNotAfterStart,
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Timezone(#[from] UnknownTimezone),
    #[error("a DAG needs at least one [[tasks]] entry")]
    NoTasks,
    #[error("`tasks` must be an array of tables (write each task under [[tasks]]), not {found}")]
    TasksNotArray { found: String },
    #[error("task {number} must be a table ([[tasks]] with id, kind, ...), not {found}")]
    TaskNotTable { number: usize, found: String },
    #[error("task {number} has no `id` (e.g. id = \"load\")")]
    TaskWithoutId { number: usize },
    #[error("task id `{id}` must be 1-250 characters of letters, digits, `_`, `-` or `.`")]
    InvalidTaskId { id: String },
    #[error("duplicate task id `{id}` (first defined at line {first_line})")]
    DuplicateTaskId { id: String, first_line: usize },
    #[error("task `{task}` has no `kind` (one of {})", known.join(", "))]
    TaskWithoutKind { task: String, known: Vec<String> },
    #[error("unknown task kind `{kind}` (known kinds: {})", known.join(", "))]
    UnknownKind { kind: String, known: Vec<String> },
    #[error(
        "unknown trigger rule `{value}` (expected one of {})",
        TriggerRule::ALL.map(|(n, _)| n).join(", ")
    )]
    UnknownTriggerRule { value: String },
    #[error(
        "unknown weight rule `{value}` (expected one of {})",
        WeightRule::ALL.map(|(n, _)| n).join(", ")
    )]
    UnknownWeightRule { value: String },
    #[error(
        "`{key}` must be a whole number from {} to {}, not {value}",
        i32::MIN,
        i32::MAX
    )]
    IntegerOutOfRange { key: String, value: String },
    #[error("pool name `{name}` must be 1-256 characters of letters, digits, `_`, `-` or `.`")]
    InvalidPoolName { name: String },
    #[error(
        "task `{task}` uses pool `{pool}`, which does not exist ({}pools: {}; create it with `upiflow pools set {pool} SLOTS`)",
        suggestion.as_ref().map(|p| format!("did you mean `{p}`? ")).unwrap_or_default(),
        known.join(", ")
    )]
    UnknownPool {
        task: String,
        pool: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error(
        "task `{task}` takes {pool_slots} slots of pool `{pool}`, which has only {slots}: it could never run"
    )]
    PoolTooSmall {
        task: String,
        pool: String,
        pool_slots: u32,
        slots: i64,
    },
    #[error("task `{task}` lists upstream `{upstream}` twice")]
    DuplicateUpstream { task: String, upstream: String },
    #[error("task `{task}` lists unknown upstream `{upstream}`")]
    UnknownUpstream { task: String, upstream: String },
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The tasks around the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// The task kind refused its own keys (`TaskKind::prepare`); the kind words the message.
    #[error("task `{task}`: {message}")]
    Kind {
        task: String,
        key: Option<String>,
        message: String,
    },
    /// A connection a task names that neither the database nor the environment has.
    #[error("task `{task}`: connection `{conn_id}` does not exist (add it with `upiflow connections add {conn_id} --uri URI`, or set UPIFLOW_CONN_{})", conn_id.to_uppercase())]
    UnknownConnection { task: String, conn_id: String },
    /// A variable a task's template names that neither the database nor the environment has.
    #[error("task `{task}`: variable `{key}` does not exist (set it with `upiflow variables set {key} VALUE`, or UPIFLOW_VAR_{})", key.to_uppercase())]
    UnknownVariable { task: String, key: String },
    // --- notifiers and deadlines (#13, "notify" part) ---
    #[error("`notifiers` must be an array of tables (write each under [[notifiers]]), not {found}")]
    NotifiersNotArray { found: String },
    #[error("notifier {number} must be a table ([[notifiers]] with name, kind, ...), not {found}")]
    NotifierNotTable { number: usize, found: String },
    #[error("notifier {number} has no `name` (e.g. name = \"oncall\")")]
    NotifierWithoutName { number: usize },
    #[error("notifier name `{name}` must be 1-250 characters of letters, digits, `_`, `-` or `.`")]
    InvalidNotifierName { name: String },
    #[error("duplicate notifier name `{name}` (first defined at line {first_line})")]
    DuplicateNotifier { name: String, first_line: usize },
    #[error("notifier `{notifier}` has no `kind` (one of webhook, email, command)")]
    NotifierWithoutKind { notifier: String },
    #[error("unknown notifier kind `{kind}` (known kinds: webhook, email, command)")]
    UnknownNotifierKind { kind: String },
    #[error("notifier `{notifier}` of kind `{kind}` needs `{key}`")]
    NotifierMissingKey {
        notifier: String,
        kind: String,
        key: String,
    },
    #[error("notifier `{notifier}`: webhook url `{url}` must be an http(s) URL: {why}")]
    WebhookUrl {
        notifier: String,
        url: String,
        why: String,
    },
    /// Any other bad value of a notifier's key; the message says which and why.
    #[error("notifier `{notifier}`: {message}")]
    NotifierKey { notifier: String, message: String },
    #[error(
        "`{key}` names unknown notifier `{name}` ({})",
        if known.is_empty() { "no valid notifier is defined: add a [[notifiers]] table here or in notifiers.toml".to_string() } else { format!("known notifiers: {}", known.join(", ")) }
    )]
    UnknownNotifier {
        key: String,
        name: String,
        known: Vec<String>,
    },
    #[error("`{key}` names notifier `{name}`, whose definition{} has errors", file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default())]
    BrokenNotifier {
        key: String,
        name: String,
        file: Option<PathBuf>,
    },
    #[error("`{key}` lists notifier `{name}` twice")]
    DuplicateNotifierName { key: String, name: String },
    #[error(
        "`on_retry` at the top level: a run is not retried, its tasks are (put on_retry in [defaults] to apply it to every task)"
    )]
    OnRetryAtTopLevel,
    #[error(
        "`on_deadline_miss` needs a `deadline` (e.g. deadline = {{ reference = \"data_interval_end\", interval = \"2h\" }})"
    )]
    DeadlineMissWithoutDeadline,
    #[error(
        "deadline needs `{key}` (e.g. deadline = {{ reference = \"data_interval_end\", interval = \"2h\" }})"
    )]
    DeadlineMissing { key: &'static str },
    #[error(
        "unknown deadline reference `{value}` (expected one of {})",
        crate::dag::DeadlineReference::ALL.map(|(n, _)| n).join(", ")
    )]
    UnknownDeadlineReference { value: String },
    #[error("deadline `interval` must be more than zero")]
    DeadlineNotPositive,
    /// A connection a notifier names that neither the database nor the environment has.
    #[error("notifier `{notifier}`: connection `{conn_id}` does not exist (add it with `upiflow connections add {conn_id} --uri URI`, or set UPIFLOW_CONN_{})", conn_id.to_uppercase())]
    NotifierUnknownConnection { notifier: String, conn_id: String },
    // --- end of the notify part ---
    /// A definition that passed validation but could not be indexed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The table an unknown key was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlace {
    TopLevel,
    Defaults,
    Task {
        task: String,
        kind: String,
    },
    /// The top level of a `notifiers.toml`.
    NotifiersFile,
    Notifier {
        notifier: String,
        kind: String,
    },
    Deadline,
}

impl std::fmt::Display for KeyPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TopLevel => f.write_str("at the top level"),
            Self::Defaults => f.write_str("in [defaults]"),
            Self::Task { task, kind } => write!(f, "in task `{task}` of kind `{kind}`"),
            Self::NotifiersFile => f.write_str("in notifiers.toml (it holds only [[notifiers]])"),
            Self::Notifier { notifier, kind } => {
                write!(f, "in notifier `{notifier}` of kind `{kind}`")
            }
            Self::Deadline => f.write_str("in `deadline`"),
        }
    }
}

/// Why a duration value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{text}`: {error} (write e.g. \"30s\", \"5m\", \"1h 30m\")")]
    Unparsable { text: String, error: String },
    #[error("`{value}` is not a duration (write e.g. \"30s\", \"5m\", \"1h 30m\")")]
    NotADuration { value: String },
}

/// Why a date or timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("`{text}` is not a date (expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339)")]
    NotADate { text: String },
    #[error("`{text}` does not exist in {tz} (a DST gap)")]
    DstGap { text: String, tz: chrono_tz::Tz },
}

/// Why a DAG definition (read from a file or from a stored version) could not be indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("task `{task}` lists unknown upstream `{upstream}`")]
    UnknownUpstream { task: String, upstream: String },
    #[error("dependency cycle through `{task}`")]
    Cycle { task: String },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Timezone(#[from] UnknownTimezone),
    /// A stored version whose JSON does not match the model (serde's message).
    #[error("{error}")]
    Json { error: String },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::dag::load_dag_str;
    use crate::kind::Registry;

    #[test]
    fn each_problem_is_a_typed_variant_with_its_data_and_its_message() {
        let text = "dag_id = \"d\"\nshedule = \"@daily\"\ntimezone = \"Mars/Olympus\"\n\
                    [[tasks]]\nid = \"a\"\nkind = \"shell\"\nupstream = [\"b\", \"zzz\"]\n\
                    [[tasks]]\nid = \"a\"\nkind = \"shell\"\n";
        let errs = load_dag_str(Path::new("d.toml"), text, &Registry::new()).unwrap_err();
        let problems: Vec<(usize, &Problem)> = errs.iter().map(|e| (e.line, &e.problem)).collect();
        assert!(
            problems.contains(&(
                2,
                &Problem::UnknownKey {
                    key: "shedule".into(),
                    place: KeyPlace::TopLevel,
                    suggestion: Some("schedule".into()),
                    known: [
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
                        "allowed_lateness"
                    ]
                    .map(String::from)
                    .to_vec(),
                }
            ))
        );
        assert!(problems.contains(&(
            3,
            &Problem::Timezone(UnknownTimezone {
                name: "Mars/Olympus".into()
            })
        )));
        assert!(problems.contains(&(
            9,
            &Problem::DuplicateTaskId {
                id: "a".into(),
                first_line: 5
            }
        )));
        assert!(problems.contains(&(
            7,
            &Problem::UnknownUpstream {
                task: "a".into(),
                upstream: "zzz".into()
            }
        )));
        assert!(problems.iter().any(|(_, p)| matches!(
            p,
            Problem::UnknownKind { kind, known } if kind == "shell" && known.is_empty()
        )));
        // The rendered message is the problem's Display.
        for e in &errs {
            assert_eq!(e.message, e.problem.to_string());
            assert_eq!(e.to_string(), format!("d.toml:{}: {}", e.line, e.problem));
        }
    }
}
