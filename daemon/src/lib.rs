//! The exai MCP daemon. Its request path touches observability through one object, the
//! [`EventEmitter`]: a counter to decide sampling, a non-blocking push to record. The
//! [`pipe_writer`] ships what was recorded to the agent off the request path.

pub mod bridge;
pub mod cause;
pub mod chat;
pub mod clock;
pub mod config;
pub mod emitter;
pub mod fd_limit;
pub mod mcp;
pub mod memory;
pub mod pipe_writer;
pub mod process_stats;
pub mod providers;
pub mod redact;
mod sampler;
pub mod security;
pub mod server;
pub mod storage;
pub mod supabase;
pub mod tasks;
pub mod tools;
pub mod totals;
pub mod views;

pub use emitter::{EmitterStats, EventEmitter, Recorded};
pub use totals::{ModelSlot, TokenCounts, Totals};

/// The daemon's version, as reported in the Hello and by the `version` tool.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
