//! Shared harness for the end-to-end tests: start the real binaries, read their logs,
//! scrape their metrics, and wait for what a user would observe.

pub mod compose;
pub mod conversation;
pub mod drill;
pub mod fake_llm;
pub mod fake_postgrest;
pub mod haproxy;
pub mod http_mcp;
pub mod mcp;
pub mod metrics;
pub mod process;
pub mod procfs;
pub mod redis;
pub mod spool;

pub use metrics::Scrape;
pub use process::{Agent, Daemon, Proc};

use std::time::{Duration, Instant};

/// A loopback port free at the moment of asking: for a program that cannot be told to pick
/// one itself, or as a port nobody listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Polls `check` until it returns `Some`, or panics after `timeout` saying what was
/// awaited. The deadline bounds a failing test; a passing test returns as soon as the
/// condition holds.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Generous bound for things that normally take milliseconds, so that a loaded CI
/// machine does not fail a correct build.
pub const PATIENCE: Duration = Duration::from_secs(20);
