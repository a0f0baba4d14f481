//! The executor: a worker process claims runnable task instances (through
//! `crate::lifecycle`), runs their bodies under their timeout while heart-beating, and
//! reports how each try ended ([`crate::lifecycle::TryEnd`]); what follows is decided by the
//! lifecycle.

mod worker;

pub use worker::{Worker, WorkerConfig};
