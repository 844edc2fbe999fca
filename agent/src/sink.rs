//! Where decoded events go. The metrics and dashboard each implement [`EventSink`]; the
//! listener hands every batch to the sink it was given, on the connection's own task.
//! [`Increases`] turns the running totals in heartbeats into increases once, for all.

use crate::metrics::deltas::RunningTotals;
use exai_proto::heartbeat::Totals;
use exai_proto::{Event, EventKind, SamplingPolicy};
use std::sync::{Arc, Mutex};

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

    /// How much a daemon's running totals grew since its previous heartbeat (only what
    /// grew), from [`Increases`]. Exact counts come from here.
    fn totals_grew(&self, _daemon: &DaemonInfo, _increase: &Totals) {}

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

    fn totals_grew(&self, daemon: &DaemonInfo, increase: &Totals) {
        self.0.iter().for_each(|s| s.totals_grew(daemon, increase));
    }

    fn daemon_disconnected(&self, daemon: &DaemonInfo) {
        self.0.iter().for_each(|s| s.daemon_disconnected(daemon));
    }
}

/// Passes everything on to `inner`, and after each heartbeat the increase of that
/// daemon's running totals. Each daemon's last totals are kept once here, not once per
/// consumer: they are hundreds of entries a daemon, and an agent may serve hundreds.
pub struct Increases<S> {
    inner: S,
    totals: Mutex<RunningTotals>,
}

impl<S: EventSink> Increases<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            totals: Mutex::new(RunningTotals::default()),
        }
    }

    /// Forgets a daemon gone for good: if it ever returns, its next heartbeat is a
    /// baseline, not an increase from zero.
    pub fn forget(&self, instance_id: &str) {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(instance_id);
    }
}

impl<S: EventSink> EventSink for Increases<S> {
    fn daemon_connected(&self, daemon: &DaemonInfo) {
        self.inner.daemon_connected(daemon);
    }

    fn events(&self, daemon: &DaemonInfo, events: &[Event]) {
        self.inner.events(daemon, events);
        for event in events {
            if let EventKind::Heartbeat(hb) = &event.kind {
                let increase = self
                    .totals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .increase(&daemon.instance_id, &hb.totals);
                if !increase.is_empty() {
                    self.inner.totals_grew(daemon, &increase);
                }
            }
        }
    }

    fn totals_grew(&self, daemon: &DaemonInfo, increase: &Totals) {
        self.inner.totals_grew(daemon, increase);
    }

    fn daemon_disconnected(&self, daemon: &DaemonInfo) {
        self.inner.daemon_disconnected(daemon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exai_proto::heartbeat::RequestTotal;
    use exai_proto::{Heartbeat, McpMethod, RequestStatus, Tool, Transport};

    /// Records the request counts of each increase it is given.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<u64>>);

    impl EventSink for Recorder {
        fn events(&self, _: &DaemonInfo, _: &[Event]) {}

        fn totals_grew(&self, _: &DaemonInfo, increase: &Totals) {
            let n = increase.requests.iter().map(|r| r.count).sum();
            self.0.lock().unwrap().push(n);
        }
    }

    fn beat(requests: u64) -> Event {
        let mut hb = Heartbeat::default();
        hb.totals.requests.push(RequestTotal {
            transport: Transport::WebSocket,
            method: McpMethod::Ping,
            tool: Tool::None,
            status: RequestStatus::Success,
            count: requests,
        });
        crate::testing::heartbeat(hb)
    }

    #[test]
    fn every_consumer_gets_each_increase_once() {
        let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let sink = Increases::new(FanOut(vec![a.clone(), b.clone()]));
        let daemon = crate::testing::daemon("d1");
        sink.events(&daemon, &[beat(5), beat(12)]);
        sink.events(&daemon, &[beat(12)]);
        sink.forget("d1");
        // Back after being forgotten: a baseline, then increases again.
        sink.events(&daemon, &[beat(20), beat(21)]);
        for seen in [&a, &b] {
            assert_eq!(*seen.0.lock().unwrap(), [5, 7, 1]);
        }
    }
}
