//! Support for the chaos soak (tests/chaos_soak.rs): a private Postgres cluster it may
//! restart, a private Tansu broker, the `upiflow` processes it kills and restarts, the
//! figures it expects from the generator's own deterministic sequence, and the checks of
//! the tables against an independent computation from the raw payloads.
#![allow(dead_code)]

pub mod cluster;
pub mod expect;
pub mod procs;
pub mod rng;
pub mod verify;

use std::path::Path;

/// A free TCP port on loopback (bound and released; good enough for a private server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The last `n` lines of a file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
