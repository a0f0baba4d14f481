//! Who may change what: Airflow's four roles and the actions each may take, checked on every
//! changing API route ([`crate::auth::Allowed`]) and UI form ([`crate::ui::session::Permitted`]).
//!
//! Every role reads everything the UI and API show (connections without their passwords).
//! Changing needs, as Airflow's default roles (`Viewer` < `User` < `Op` < `Admin`):
//!
//! | action            | viewer | user | op | admin |
//! |-------------------|--------|------|----|-------|
//! | trigger           |        | yes  | yes | yes  |
//! | clear             |        | yes  | yes | yes  |
//! | mark              |        | yes  | yes | yes  |
//! | pause             |        |      | yes | yes  |
//! | backfill          |        |      | yes | yes  |
//! | pools             |        |      | yes | yes  |
//! | variables         |        |      | yes | yes  |
//! | connections       |        |      |     | yes  |
//!
//! The same table is in README.md, and `tests/roles.rs` checks every route against it.

use crate::auth::Role;

/// A kind of change a role may or may not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Trigger a DAG run.
    Trigger,
    /// Clear task instances or a run, so they run again.
    Clear,
    /// Mark a run's or a task instance's state, or note it.
    Mark,
    /// Pause or unpause a DAG.
    Pause,
    /// Start a backfill or run the missed intervals.
    Backfill,
    /// Create, resize or delete pools.
    Pools,
    /// Create, change or delete variables.
    Variables,
    /// Create, change, test or delete connections.
    Connections,
}

impl Action {
    /// Every action, in the order of the table above.
    pub const ALL: [Action; 8] = [
        Action::Trigger,
        Action::Clear,
        Action::Mark,
        Action::Pause,
        Action::Backfill,
        Action::Pools,
        Action::Variables,
        Action::Connections,
    ];

    /// The name in the README's table and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Clear => "clear",
            Action::Mark => "mark",
            Action::Pause => "pause",
            Action::Backfill => "backfill",
            Action::Pools => "pools",
            Action::Variables => "variables",
            Action::Connections => "connections",
        }
    }

    /// The least role that may take it.
    pub fn least_role(self) -> Role {
        match self {
            Action::Trigger | Action::Clear | Action::Mark => Role::User,
            Action::Pause | Action::Backfill | Action::Pools | Action::Variables => Role::Op,
            Action::Connections => Role::Admin,
        }
    }

    /// What the action changes, for refusals ("may not trigger runs").
    fn what(self) -> &'static str {
        match self {
            Action::Trigger => "trigger runs",
            Action::Clear => "clear task instances or runs",
            Action::Mark => "mark runs or task instances",
            Action::Pause => "pause or unpause DAGs",
            Action::Backfill => "start backfills",
            Action::Pools => "change pools",
            Action::Variables => "change variables",
            Action::Connections => "change connections",
        }
    }
}

/// Whether `role` may take `action`.
pub fn may(role: Role, action: Action) -> bool {
    role >= action.least_role()
}

/// Why `username` is refused `action` (the API's 403 and the UI's alike).
pub fn refusal(username: &str, role: Role, action: Action) -> String {
    format!(
        "user `{username}` (role {}) may not {}: that needs the role {} or above",
        role.name(),
        action.what(),
        action.least_role().name()
    )
}

/// An action as a type, for the extractors: `Allowed<may::Trigger>`.
pub trait Permission: Send + Sync + 'static {
    const ACTION: Action;
}

/// The actions as types (see [`Permission`]).
pub mod may {
    use super::{Action, Permission};

    macro_rules! permissions {
        ($($name:ident),*) => {$(
            #[doc = concat!("The `", stringify!($name), "` action.")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl Permission for $name {
                const ACTION: Action = Action::$name;
            }
        )*};
    }

    permissions!(
        Trigger,
        Clear,
        Mark,
        Pause,
        Backfill,
        Pools,
        Variables,
        Connections
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grow_from_viewer_to_admin() {
        for a in Action::ALL {
            assert!(!may(Role::Viewer, a), "a viewer may not {}", a.name());
            assert!(may(Role::Admin, a), "an admin may {}", a.name());
            // Whatever a role may do, every role above it may do too.
            for w in Role::ALL.windows(2) {
                assert!(!may(w[0], a) || may(w[1], a));
            }
        }
        assert!(may(Role::User, Action::Trigger) && !may(Role::User, Action::Pause));
        assert!(may(Role::Op, Action::Pools) && !may(Role::Op, Action::Connections));
    }
}
