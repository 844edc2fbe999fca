//! The daemon link as the health checks see it: which daemons are connected, when the
//! last event arrived and how much memory they reported. Fed as an [`EventSink`]; the
//! ingest path pays one clock read per batch.

use crate::sink::{DaemonInfo, EventSink};
use exai_proto::{Event, EventKind};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct DaemonLink {
    /// When this agent started; event times are kept as milliseconds since then.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last batch, plus one (0: none yet).
    last_event_ms: AtomicU64,
    /// Connected daemons and their last reported resident memory.
    daemons: Mutex<HashMap<String, u64>>,
}

impl Default for DaemonLink {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_event_ms: AtomicU64::new(0),
            daemons: Mutex::new(HashMap::new()),
        }
    }
}

/// The link right now.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkState {
    pub connected: usize,
    pub last_event_age: Option<Duration>,
    /// Summed over connected daemons that have sent a heartbeat.
    pub daemon_rss_bytes: Option<u64>,
}

impl DaemonLink {
    pub fn state(&self) -> LinkState {
        let daemons = self.daemons.lock().unwrap_or_else(|e| e.into_inner());
        let rss: u64 = daemons.values().sum();
        let last = self.last_event_ms.load(Relaxed);
        LinkState {
            connected: daemons.len(),
            last_event_age: (last > 0).then(|| {
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last - 1))
            }),
            daemon_rss_bytes: (rss > 0).then_some(rss),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_event_ms.store(ms, Relaxed);
    }
}

impl EventSink for DaemonLink {
    fn daemon_connected(&self, daemon: &DaemonInfo) {
        self.daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(daemon.instance_id.clone(), 0);
        self.touch();
    }

    fn events(&self, daemon: &DaemonInfo, events: &[Event]) {
        self.touch();
        if let Some(rss) = events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Heartbeat(hb) => Some(hb.process.rss_bytes),
            _ => None,
        }) {
            if let Some(slot) = self
                .daemons
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&daemon.instance_id)
            {
                *slot = rss;
            }
        }
    }

    fn daemon_disconnected(&self, daemon: &DaemonInfo) {
        self.daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&daemon.instance_id);
    }
}
