//! The executor: workers claim runnable task instances, run them under their timeout while
//! heart-beating, and record every try; trigger rules and retry delays decide what follows.

pub mod retry;
pub mod rules;
mod worker;

pub use worker::{Worker, WorkerConfig};
