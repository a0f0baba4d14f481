//! The UPI pipeline's moving parts: the event and its validation, the synthetic generator,
//! the exactly-once Kafka -> Postgres ingest and its supervisor task kind, and its part of
//! the web (the payments dashboard and the ingest metrics, through
//! [`upiflow_engine::product`]).

pub mod broker;
pub mod dashboard;
pub mod event;
pub mod generator;
pub mod ingest;
pub mod metrics;
pub mod panels;
pub mod product;
pub mod supervisor;
