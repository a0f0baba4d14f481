//! Notifications (Airflow's callbacks and notifiers, made durable): which notifiers a state
//! change tells, the message they get, and its delivery.
//!
//! A state change that names notifiers (a try ending failed, up for retry or successful; a
//! run finishing; a missed deadline) inserts one outbox row per notifier in the transaction
//! that records the change ([`enqueue_task_events`], [`enqueue_run_event`]): the
//! notification exists iff the change committed, and recording never waits for a receiver.
//! Every scheduler runs [`deliver::run`], which claims due rows, delivers them (webhook,
//! email, command) and records each attempt, retrying with backoff: at least once, with the
//! row's `id` as the stable id receivers de-duplicate on.
//!
//! The message's `url` is built from `UPIFLOW_BASE_URL` (Airflow's `[api] base_url`, default
//! `http://localhost:8080`) as the process recording the change sees it, when it records it:
//! the stored payload is exactly what receivers get.

pub mod deliver;
mod send;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::dag::Dag;
use crate::error::EngineError;
use crate::state::{RunState, TaskState};
use crate::store::notifications::{self, NewNotification};
use crate::store::runs::{self, RunRow};

/// The base of the UI links in messages.
pub const BASE_URL_ENV: &str = "UPIFLOW_BASE_URL";
const DEFAULT_BASE_URL: &str = "http://localhost:8080";

/// What a notification is about (the `notification_event` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    OnFailure,
    OnRetry,
    OnSuccess,
    OnDeadlineMiss,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnFailure => "on_failure",
            Self::OnRetry => "on_retry",
            Self::OnSuccess => "on_success",
            Self::OnDeadlineMiss => "on_deadline_miss",
        }
    }
}

/// How a try of a task instance ended, for its notifications.
#[derive(Debug, Clone)]
pub struct TaskOutcome<'a> {
    pub ti_id: i64,
    pub task_id: &'a str,
    pub try_number: i32,
    /// The state the task instance moved to (success, up_for_retry or failed).
    pub state: TaskState,
    /// The try's error text (masked by the worker).
    pub error: Option<&'a str>,
}

impl TaskOutcome<'_> {
    fn event(&self) -> Option<NotifyEvent> {
        match self.state {
            TaskState::Success => Some(NotifyEvent::OnSuccess),
            TaskState::UpForRetry => Some(NotifyEvent::OnRetry),
            TaskState::Failed => Some(NotifyEvent::OnFailure),
            _ => None,
        }
    }
}

/// The notifiers `dag`'s task `task_id` names for `event`.
fn task_notifiers<'d>(dag: &'d Dag, task_id: &str, event: NotifyEvent) -> &'d [String] {
    let Some(t) = dag.task(task_id) else {
        return &[];
    };
    match event {
        NotifyEvent::OnFailure => &t.on_failure,
        NotifyEvent::OnRetry => &t.on_retry,
        NotifyEvent::OnSuccess => &t.on_success,
        NotifyEvent::OnDeadlineMiss => &[],
    }
}

/// The notifiers `dag` names for a run's `event` (a run has no `on_retry`).
fn run_notifiers(dag: &Dag, event: NotifyEvent) -> &[String] {
    match event {
        NotifyEvent::OnFailure => &dag.on_failure,
        NotifyEvent::OnSuccess => &dag.on_success,
        NotifyEvent::OnDeadlineMiss => &dag.on_deadline_miss,
        NotifyEvent::OnRetry => &[],
    }
}

/// Whether any of `outcomes` names a notifier (so the caller need not read its run).
pub fn task_events_wanted(dag: &Dag, outcomes: &[TaskOutcome<'_>]) -> bool {
    outcomes.iter().any(|o| {
        o.event()
            .is_some_and(|e| !task_notifiers(dag, o.task_id, e).is_empty())
    })
}

/// Inserts, in the caller's transaction, one outbox row per notifier each outcome's task
/// names for it (`on_success`, `on_retry`, `on_failure`); a no-op for an outcome already
/// enqueued (same task instance, try, event and notifier). Returns how many rows are new.
pub async fn enqueue_task_events(
    conn: &mut PgConnection,
    dag: &Dag,
    run: &RunRow,
    outcomes: &[TaskOutcome<'_>],
) -> Result<usize, EngineError> {
    let base = base_url();
    let mut rows = Vec::new();
    for o in outcomes {
        let Some(event) = o.event() else { continue };
        for name in task_notifiers(dag, o.task_id, event) {
            let Some(notifier) = dag.notifier(name) else {
                continue;
            };
            let id = Uuid::new_v4();
            let url = format!("{base}{}", ti_path(&run.dag_id, &run.run_id, o.task_id));
            let text = task_text(event, dag, run, o, &url);
            let payload = payload(
                id,
                event,
                run,
                Some(o.task_id),
                Some(o.try_number),
                state_name(o.state),
                o.error,
                &url,
                &text,
                None,
            );
            rows.push(NewNotification {
                id,
                dedupe_key: format!("ti:{}:{}:{}:{name}", o.ti_id, o.try_number, event.as_str()),
                event: event.as_str(),
                notifier: name.clone(),
                spec: serde_json::to_value(notifier).expect("a notifier serialises"),
                dag_id: run.dag_id.clone(),
                run_id: run.run_id.clone(),
                task_id: Some(o.task_id.to_string()),
                try_number: Some(o.try_number),
                payload,
            });
        }
    }
    notifications::enqueue(conn, &rows).await
}

/// Inserts one outbox row per notifier named for `event` on the DAG (its `on_failure` or
/// `on_success` for a finished run, `on_deadline_miss` for a missed deadline), inside the
/// caller's transaction; a no-op for names already enqueued for the same cause: the same
/// finish of the run (a run finished again after a clear is a new cause) or, for
/// `OnDeadlineMiss`, the run (a run misses its deadline once). `OnRetry` names nothing on a
/// run (Ok(0)). Returns how many rows are new.
pub async fn enqueue_run_event(
    conn: &mut PgConnection,
    dag: &Dag,
    run: &RunRow,
    event: NotifyEvent,
) -> Result<usize, EngineError> {
    let names = run_notifiers(dag, event);
    if names.is_empty() {
        return Ok(0);
    }
    // What distinguishes this cause from an earlier one of the same kind.
    let cause = match event {
        NotifyEvent::OnDeadlineMiss => "deadline".to_string(),
        _ => run
            .end_date
            .map_or_else(|| "open".to_string(), |d| d.timestamp_micros().to_string()),
    };
    let error = if event == NotifyEvent::OnFailure {
        failed_tasks_text(conn, run.id).await?
    } else {
        None
    };
    let deadline_at = if event == NotifyEvent::OnDeadlineMiss {
        dag.deadline_at(run.logical_date, run.data_interval_end, run.queued_at)
    } else {
        None
    };
    let base = base_url();
    let url = format!("{base}{}", run_path(&run.dag_id, &run.run_id));
    let mut rows = Vec::new();
    for name in names {
        let Some(notifier) = dag.notifier(name) else {
            continue;
        };
        let id = Uuid::new_v4();
        let text = run_text(event, run, error.as_deref(), deadline_at, &url);
        let payload = payload(
            id,
            event,
            run,
            None,
            None,
            run_state_name(run.state),
            error.as_deref(),
            &url,
            &text,
            deadline_at,
        );
        rows.push(NewNotification {
            id,
            dedupe_key: format!("run:{}:{}:{name}:{cause}", run.id, event.as_str()),
            event: event.as_str(),
            notifier: name.clone(),
            spec: serde_json::to_value(notifier).expect("a notifier serialises"),
            dag_id: run.dag_id.clone(),
            run_id: run.run_id.clone(),
            task_id: None,
            try_number: None,
            payload,
        });
    }
    notifications::enqueue(conn, &rows).await
}

/// Enqueues the DAG's `on_failure` / `on_success` for run `run_pk`, which just finished in
/// `state` (in the settling transaction). Reads the run only if the DAG names notifiers.
pub(crate) async fn run_finished(
    conn: &mut PgConnection,
    dag: &Dag,
    run_pk: i64,
    state: RunState,
) -> Result<usize, EngineError> {
    let event = match state {
        RunState::Success => NotifyEvent::OnSuccess,
        RunState::Failed => NotifyEvent::OnFailure,
        _ => return Ok(0),
    };
    if run_notifiers(dag, event).is_empty() {
        return Ok(0);
    }
    let run = runs::get_by_pk(conn, run_pk).await?;
    enqueue_run_event(conn, dag, &run, event).await
}

/// "failed tasks: a, b" for a failed run (its failed and upstream-failed task instances).
async fn failed_tasks_text(
    conn: &mut PgConnection,
    run_pk: i64,
) -> Result<Option<String>, EngineError> {
    let mut failed: Vec<String> = crate::store::tis::states_of_run(conn, run_pk)
        .await?
        .into_iter()
        .filter(|(_, s)| matches!(s, Some(TaskState::Failed)))
        .map(|(t, _)| t)
        .collect();
    failed.sort();
    Ok((!failed.is_empty()).then(|| format!("failed tasks: {}", failed.join(", "))))
}

fn base_url() -> String {
    let base = std::env::var(BASE_URL_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    base.trim().trim_end_matches('/').to_string()
}

fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Success => "success",
        TaskState::UpForRetry => "up_for_retry",
        TaskState::Failed => "failed",
        TaskState::UpstreamFailed => "upstream_failed",
        TaskState::Skipped => "skipped",
        TaskState::Scheduled => "scheduled",
        TaskState::Queued => "queued",
        TaskState::Running => "running",
    }
}

fn run_state_name(s: RunState) -> &'static str {
    match s {
        RunState::Queued => "queued",
        RunState::Running => "running",
        RunState::Success => "success",
        RunState::Failed => "failed",
    }
}

fn ts(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[allow(clippy::too_many_arguments)]
fn payload(
    id: Uuid,
    event: NotifyEvent,
    run: &RunRow,
    task_id: Option<&str>,
    try_number: Option<i32>,
    state: &str,
    error: Option<&str>,
    url: &str,
    text: &str,
    deadline_at: Option<DateTime<Utc>>,
) -> Value {
    let mut v = json!({
        "id": id.to_string(),
        "event": event.as_str(),
        "text": text,
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "task_id": task_id,
        "try_number": try_number,
        "state": state,
        "error": error,
        "logical_date": ts(run.logical_date),
        "data_interval_start": ts(run.data_interval_start),
        "data_interval_end": ts(run.data_interval_end),
        "url": url,
    });
    if let Some(d) = deadline_at {
        v["deadline_at"] = Value::String(ts(d));
    }
    v
}

/// Errors are cut to one line in `text` (the structured `error` field keeps all of it).
fn short(error: &str) -> String {
    let line = error
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut s: String = line.chars().take(300).collect();
    if s.len() < line.len() || error.trim().lines().count() > 1 {
        s.push('…');
    }
    s
}

fn task_text(
    event: NotifyEvent,
    dag: &Dag,
    run: &RunRow,
    o: &TaskOutcome<'_>,
    url: &str,
) -> String {
    let err = o
        .error
        .map(|e| format!(": {}", short(e)))
        .unwrap_or_default();
    let (task, dag_id, run_id, n) = (o.task_id, &dag.dag_id, &run.run_id, o.try_number);
    match event {
        NotifyEvent::OnFailure => {
            format!(
                ":red_circle: Task {task} failed in {dag_id} run {run_id}, try {n}{err} — {url}"
            )
        }
        NotifyEvent::OnRetry => format!(
            ":large_orange_circle: Task {task} will be retried in {dag_id} run {run_id}, try {n} failed{err} — {url}"
        ),
        NotifyEvent::OnSuccess => format!(
            ":large_green_circle: Task {task} succeeded in {dag_id} run {run_id}, try {n} — {url}"
        ),
        NotifyEvent::OnDeadlineMiss => String::new(),
    }
}

fn run_text(
    event: NotifyEvent,
    run: &RunRow,
    error: Option<&str>,
    deadline_at: Option<DateTime<Utc>>,
    url: &str,
) -> String {
    let (dag_id, run_id) = (&run.dag_id, &run.run_id);
    match event {
        NotifyEvent::OnFailure => {
            let err = error.map(|e| format!(" ({e})")).unwrap_or_default();
            format!(":red_circle: Run {run_id} of {dag_id} failed{err} — {url}")
        }
        NotifyEvent::OnSuccess => {
            format!(":large_green_circle: Run {run_id} of {dag_id} succeeded — {url}")
        }
        NotifyEvent::OnDeadlineMiss => format!(
            ":alarm_clock: Run {run_id} of {dag_id} missed its deadline{} and is still {} — {url}",
            deadline_at
                .map(|d| format!(" {}", ts(d)))
                .unwrap_or_default(),
            run_state_name(run.state)
        ),
        NotifyEvent::OnRetry => String::new(),
    }
}

/// One path segment, percent-encoded (run ids carry `:` and `+`), as the UI's links are.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The UI's run page (web/src/ui/links.rs `run_url`).
fn run_path(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}/runs/{}", seg(dag_id), seg(run_id))
}

/// The UI's task instance page (web/src/ui/links.rs `ti_url`).
fn ti_path(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!("{}/tasks/{}", run_path(dag_id, run_id), seg(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_match_the_ui_paths() {
        assert_eq!(
            ti_path("d", "manual__2024-01-01T00:00:00+00:00", "a b"),
            "/dags/d/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00/tasks/a%20b"
        );
    }

    #[test]
    fn text_keeps_the_first_line_of_an_error() {
        assert_eq!(short("boom\nstack"), "boom…");
        assert_eq!(short("boom"), "boom");
    }
}
