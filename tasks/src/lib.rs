//! Task kinds of upiflow and the UPI product built on it.
//!
//! Kinds: `noop`, `command` (a program in its own process group, like Airflow's
//! BashOperator), `sql` (a `.sql` file run in one transaction with the run's values as bind
//! parameters, like a dbt model), `quality` (dbt-style checks) and `ingest_supervisor` (keeps
//! the Kafka ingest running). The engine knows no kind; the binary hands it [`registry()`].
//! Kinds reach the orchestrator only through `TaskContext`.
//!
//! [`upi`] is the UPI payments product: the event, the generator, the exactly-once Kafka ->
//! Postgres ingest, and its side of the web (dashboard panels and metric families through
//! `upiflow_engine::product`). Only it names the UPI tables.

pub mod command;
mod database;
mod keys;
pub mod noop;
pub mod quality;
pub mod sql;
pub mod sql_params;
pub mod template;
#[cfg(test)]
mod testing;
pub mod upi;

use upiflow_engine::Registry;

pub use command::{CommandConfig, CommandKind};
pub use noop::NoopKind;
pub use quality::{QualityConfig, QualityKind};
pub use sql::{SqlConfig, SqlKind};

/// A registry holding every kind of this crate.
pub fn registry() -> Registry {
    Registry::new()
        .with(NoopKind)
        .with(CommandKind)
        .with(SqlKind)
        .with(QualityKind)
        .with(upi::supervisor::IngestSupervisorKind)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_registry_holds_every_kind() {
        assert_eq!(
            super::registry().names(),
            ["command", "ingest_supervisor", "noop", "quality", "sql"]
        );
    }
}
