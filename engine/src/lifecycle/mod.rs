//! The lifecycle of task instances and runs: every decision about them lives here.
//!
//! - [`claim`]: which task instances a worker takes (runnable ones of running runs of
//!   unpaused DAGs), opening a try for each.
//! - [`finish`]: how a try ended ([`TryEnd`]), and what follows for its task instance:
//!   success, a retry after a delay ([`retry`]) or failure; then the run is settled, and a
//!   worker claims what became runnable in the same transaction ([`finish_and_claim`]).
//! - [`run`]: settling a run (trigger rules, [`rules`], decide its waiting task instances;
//!   the run finishes when every instance is final) and starting queued runs within
//!   `max_active_runs` and a backfill's own limit.
//! - [`reap`]: failing (so retrying) the tries of dead workers and a worker's lost claims.
//! - [`clear`]: putting task instances back to run again, with a fresh allowance of retries.
//! - [`mark`]: setting task instances or a run to a state by hand (stopping marked tries).
//! - [`deadline`]: marking runs unfinished past their deadline late, once, and notifying.
//!
//! It composes `crate::store` statements into transactions; the store decides nothing. The
//! executor (`crate::executor`) runs task bodies and reports their [`TryEnd`]; the scheduler
//! creates runs and asks here to start them.

pub mod claim;
pub mod clear;
pub mod deadline;
pub mod deps;
pub mod finish;
pub mod mark;
pub mod reap;
pub mod retry;
pub mod rules;
pub mod run;
pub mod ti_delete;

pub use finish::{BatchResult, Finished, TryEnd, finish_and_claim, finish_batch};
