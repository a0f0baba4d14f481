//! The UPI pipeline's moving parts: the event and its validation, the synthetic generator,
//! the exactly-once Kafka -> Postgres ingest and its supervisor task kind.

pub mod broker;
pub mod event;
pub mod generator;
pub mod ingest;
pub mod supervisor;
