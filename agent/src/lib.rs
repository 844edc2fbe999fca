//! The exai observability agent: it listens for daemons on a local socket and turns
//! their events into metrics, health and a live dashboard. It knows the event protocol,
//! not MCP.

pub mod config;
pub mod health;
pub mod http_server;
pub mod listener;
pub mod metrics;
pub mod sink;

pub use sink::{DaemonInfo, EventSink};

/// The agent's version, for build info.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
