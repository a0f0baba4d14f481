//! Trigger rules: given the states of a run's task instances, which waiting tasks become
//! scheduled, skipped or upstream_failed. Pure, so every rule is tested without a database.

use std::collections::HashMap;

use crate::dag::Dag;
use crate::state::{TaskState, TriggerRule};

/// Decides every task that is still waiting (state `None`). Decisions cascade in one call:
/// an `upstream_failed` task makes its own downstream `upstream_failed` too.
pub fn evaluate(
    dag: &Dag,
    states: &HashMap<String, Option<TaskState>>,
) -> Vec<(String, TaskState)> {
    let mut current: HashMap<&str, Option<TaskState>> =
        states.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut out = Vec::new();
    for task in dag.topological() {
        if !matches!(current.get(task.id.as_str()), Some(None)) {
            continue;
        }
        let ups: Vec<Option<TaskState>> = task
            .upstream
            .iter()
            .map(|u| current.get(u.as_str()).copied().flatten())
            .collect();
        if let Some(decision) = decide(task.trigger_rule, &ups) {
            current.insert(task.id.as_str(), Some(decision));
            out.push((task.id.clone(), decision));
        }
    }
    out
}

/// One task's decision from its upstream states, or `None` to keep waiting.
pub fn decide(rule: TriggerRule, ups: &[Option<TaskState>]) -> Option<TaskState> {
    use TaskState::*;
    if ups.is_empty() {
        return Some(Scheduled);
    }
    let total = ups.len();
    let count = |f: fn(TaskState) -> bool| ups.iter().flatten().filter(|s| f(**s)).count();
    let success = count(|s| s == Success);
    let failed = count(|s| matches!(s, Failed | UpstreamFailed));
    let skipped = count(|s| s == Skipped);
    let done = count(TaskState::is_terminal);
    let all_done = done == total;
    match rule {
        TriggerRule::AllSuccess => {
            if failed > 0 {
                Some(UpstreamFailed)
            } else if skipped > 0 {
                Some(Skipped)
            } else if success == total {
                Some(Scheduled)
            } else {
                None
            }
        }
        TriggerRule::AllFailed => {
            if success > 0 || skipped > 0 {
                Some(Skipped)
            } else if failed == total {
                Some(Scheduled)
            } else {
                None
            }
        }
        TriggerRule::AllDone => all_done.then_some(Scheduled),
        TriggerRule::OneSuccess => {
            if success > 0 {
                Some(Scheduled)
            } else if !all_done {
                None
            } else if skipped == total {
                Some(Skipped)
            } else {
                Some(UpstreamFailed)
            }
        }
        TriggerRule::OneFailed => {
            if failed > 0 {
                Some(Scheduled)
            } else if all_done {
                Some(Skipped)
            } else {
                None
            }
        }
        TriggerRule::NoneFailed => {
            if failed > 0 {
                Some(UpstreamFailed)
            } else if all_done {
                Some(Scheduled)
            } else {
                None
            }
        }
    }
}

/// The run's outcome once every task instance is terminal: failed if a leaf failed or could
/// not run because of a failure upstream, as in Airflow; `None` while anything is unfinished.
pub fn run_outcome(
    dag: &Dag,
    states: &HashMap<String, Option<TaskState>>,
) -> Option<crate::state::RunState> {
    if !states
        .values()
        .all(|s| s.is_some_and(TaskState::is_terminal))
    {
        return None;
    }
    let leaf_failed = states.iter().any(|(id, s)| {
        dag.is_leaf(id) && matches!(s, Some(TaskState::Failed | TaskState::UpstreamFailed))
    });
    Some(if leaf_failed {
        crate::state::RunState::Failed
    } else {
        crate::state::RunState::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    fn d(rule: TriggerRule, ups: &[Option<TaskState>]) -> Option<TaskState> {
        decide(rule, ups)
    }

    #[test]
    fn all_success_waits_then_runs_or_propagates() {
        let r = TriggerRule::AllSuccess;
        assert_eq!(d(r, &[Some(Success), None]), None);
        assert_eq!(d(r, &[Some(Success), Some(Success)]), Some(Scheduled));
        assert_eq!(d(r, &[Some(Failed), Some(Running)]), Some(UpstreamFailed));
        assert_eq!(d(r, &[Some(Success), Some(Skipped)]), Some(Skipped));
        assert_eq!(d(r, &[Some(UpForRetry)]), None);
    }

    #[test]
    fn all_done_runs_after_any_outcome() {
        let r = TriggerRule::AllDone;
        assert_eq!(d(r, &[Some(Failed), Some(Running)]), None);
        assert_eq!(d(r, &[Some(Failed), Some(Success)]), Some(Scheduled));
        assert_eq!(
            d(r, &[Some(UpstreamFailed), Some(Skipped)]),
            Some(Scheduled)
        );
    }

    #[test]
    fn all_failed_needs_every_upstream_failed() {
        let r = TriggerRule::AllFailed;
        assert_eq!(d(r, &[Some(Failed), Some(UpstreamFailed)]), Some(Scheduled));
        assert_eq!(d(r, &[Some(Failed), Some(Success)]), Some(Skipped));
        assert_eq!(d(r, &[Some(Failed), Some(Running)]), None);
    }

    #[test]
    fn one_success_fires_early() {
        let r = TriggerRule::OneSuccess;
        assert_eq!(d(r, &[Some(Success), Some(Running)]), Some(Scheduled));
        assert_eq!(d(r, &[Some(Failed), Some(Running)]), None);
        assert_eq!(d(r, &[Some(Failed), Some(Skipped)]), Some(UpstreamFailed));
        assert_eq!(d(r, &[Some(Skipped), Some(Skipped)]), Some(Skipped));
    }

    #[test]
    fn one_failed_fires_early() {
        let r = TriggerRule::OneFailed;
        assert_eq!(d(r, &[Some(Failed), Some(Running)]), Some(Scheduled));
        assert_eq!(d(r, &[Some(Success), Some(Running)]), None);
        assert_eq!(d(r, &[Some(Success), Some(Skipped)]), Some(Skipped));
    }

    #[test]
    fn none_failed_accepts_skips() {
        let r = TriggerRule::NoneFailed;
        assert_eq!(d(r, &[Some(Success), Some(Skipped)]), Some(Scheduled));
        assert_eq!(
            d(r, &[Some(UpstreamFailed), Some(Running)]),
            Some(UpstreamFailed)
        );
        assert_eq!(d(r, &[Some(Success), Some(Running)]), None);
    }

    #[test]
    fn roots_are_scheduled() {
        for (_, r) in TriggerRule::ALL {
            assert_eq!(d(r, &[]), Some(Scheduled));
        }
    }
}
