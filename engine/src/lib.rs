//! The upiflow engine: DAGs declared in TOML and resolved into a petgraph graph, the
//! Postgres store of runs, task instances and tries, the scheduler and the executor.
//!
//! It knows no task kind (they come through [`kind::Registry`]) and no HTTP.

pub mod dag;
pub mod kind;
pub mod logs;
pub mod schedule;
pub mod state;

pub use dag::{Dag, DagError, TaskDef};
pub use kind::{PrepareCtx, PrepareError, Reference, Registry, TaskContext, TaskError, TaskKind};
pub use state::{RunState, RunType, TaskState, TriggerRule, TryOutcome};
pub mod audit;
pub mod cluster;
pub mod conf;
pub mod error;
pub mod executor;
pub mod lifecycle;
pub mod notify;
pub mod ops;
pub mod pools;
pub mod product;
pub mod secrets;
pub mod store;

pub use error::{EngineError, ErrorKind};
pub mod backfill;
pub mod clean;
pub mod scheduler;
pub mod timetable;
pub mod transient;
