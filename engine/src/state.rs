//! The closed sets of states, run types and trigger rules, mirrored by Postgres enums
//! (see `migrations/`), so a state is never a free string.

use serde::{Deserialize, Serialize};

/// State of one task instance, as in Airflow. `None` (SQL NULL) means "not yet ready".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "ti_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    UpstreamFailed,
    Skipped,
}

impl TaskState {
    /// Finished for good: nothing will change it short of a clear.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failed | Self::UpstreamFailed | Self::Skipped
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::UpForRetry => "up_for_retry",
            Self::UpstreamFailed => "upstream_failed",
            Self::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State of a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "run_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "run_type", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    Scheduled,
    Manual,
    Backfill,
}

impl RunType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::Backfill => "backfill",
        }
    }
}

impl std::fmt::Display for RunType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "try_outcome", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TryOutcome {
    Success,
    Failed,
    TimedOut,
    /// The worker running it stopped heart-beating.
    Zombie,
    /// Its task instance was marked (success, failed or skipped) while it ran: stopped.
    Marked,
}

impl TryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Zombie => "zombie",
            Self::Marked => "marked",
        }
    }
}

impl std::fmt::Display for TryOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a task may run, given the states of its upstream tasks (Airflow's trigger rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllDone,
    AllFailed,
    OneSuccess,
    OneFailed,
    NoneFailed,
}

impl TriggerRule {
    pub const ALL: [(&'static str, TriggerRule); 6] = [
        ("all_success", Self::AllSuccess),
        ("all_done", Self::AllDone),
        ("all_failed", Self::AllFailed),
        ("one_success", Self::OneSuccess),
        ("one_failed", Self::OneFailed),
        ("none_failed", Self::NoneFailed),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, r)| *r)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("all_success")
    }
}

/// How a task's effective priority is computed from the `priority_weight`s (Airflow's
/// `weight_rule`): `downstream` adds the weights of every task downstream of it (so a chain's
/// head outranks its tail), `upstream` those upstream of it, `absolute` takes its own alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightRule {
    #[default]
    Downstream,
    Upstream,
    Absolute,
}

impl WeightRule {
    pub const ALL: [(&'static str, WeightRule); 3] = [
        ("downstream", Self::Downstream),
        ("upstream", Self::Upstream),
        ("absolute", Self::Absolute),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, r)| *r)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("downstream")
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "log_stream", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Lines the orchestrator itself writes about the try.
    System,
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}
