//! The exai observability agent: it listens for daemons on a local socket and turns
//! their events into metrics, health and a live dashboard. It knows the event protocol,
//! not MCP.

pub mod config;
pub mod daemons;
pub mod dashboard;
pub mod health;
pub mod http_server;
pub mod listener;
pub mod metrics;
pub mod sink;

pub use sink::EventSink;

/// The agent's version, for build info.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the unit tests build again and again.
#[cfg(test)]
pub(crate) mod testing {
    use exai_proto::{Event, EventKind, Heartbeat};

    /// `hb` as the event it arrives in.
    pub fn heartbeat(hb: Heartbeat) -> Event {
        Event {
            at_unix_us: 0,
            correlation: Default::default(),
            weight: 1,
            kind: EventKind::Heartbeat(Box::new(hb)),
        }
    }
}
