//! Where decoded events go. The metrics and dashboard each implement [`EventSink`]; the
//! listener hands every batch to the sink it was given, on the connection's own task.

use exai_proto::{Event, SamplingPolicy};
use std::sync::Arc;

/// A connected daemon, as its Hello described it.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonInfo {
    pub instance_id: String,
    /// The `instance` label value of its series: the id, or `other` past the cap.
    pub label: String,
    pub pid: u32,
    pub version: String,
    pub started_at_unix_ms: u64,
    pub sampling: SamplingPolicy,
}

pub trait EventSink: Send + Sync + 'static {
    fn daemon_connected(&self, _daemon: &DaemonInfo) {}

    /// A batch of events, in sequence order. Must not block: it runs on the ingest path.
    fn events(&self, daemon: &DaemonInfo, events: &[Event]);

    fn daemon_disconnected(&self, _daemon: &DaemonInfo) {}
}

/// Hands everything to each of several sinks in turn.
#[derive(Default, Clone)]
pub struct FanOut(pub Vec<Arc<dyn EventSink>>);

impl EventSink for FanOut {
    fn daemon_connected(&self, daemon: &DaemonInfo) {
        self.0.iter().for_each(|s| s.daemon_connected(daemon));
    }

    fn events(&self, daemon: &DaemonInfo, events: &[Event]) {
        self.0.iter().for_each(|s| s.events(daemon, events));
    }

    fn daemon_disconnected(&self, daemon: &DaemonInfo) {
        self.0.iter().for_each(|s| s.daemon_disconnected(daemon));
    }
}
