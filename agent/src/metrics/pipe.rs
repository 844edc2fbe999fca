//! The pipe's own health, so an operator can tell "the daemon sent less" from "the pipe
//! lost it": events received, lost by sequence gap, dropped by the daemon by reason,
//! frames rejected, which daemons are connected, and build info.

use super::instances::Instances;
use super::{counter_vec, gauge_vec, Counter, CounterVec, Gauge, GaugeVec, Registry};
use exai_proto::heartbeat::{DropCounts, DropReason, PipeStats};
use exai_proto::EventLabel;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub struct PipeMetrics {
    received: CounterVec,
    lost: CounterVec,
    daemon_dropped: CounterVec,
    rejected: CounterVec,
    connections: Arc<Counter>,
    connected: GaugeVec,
    queue_depth: GaugeVec,
    queue_capacity: GaugeVec,
    /// The daemon's drop counts are running totals; this is what was last added per
    /// instance id, so only the increase is added to the counter.
    drops_seen: Mutex<HashMap<String, DropCounts>>,
    /// The last drop counts of daemons whose series expired, newest last, so that one
    /// coming back is not counted again from zero.
    drops_forgotten: Mutex<VecDeque<(String, DropCounts)>>,
    instances: Arc<Instances>,
}

/// The pipe's figures, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeSummary {
    pub received: u64,
    pub lost: u64,
    pub dropped: DropCounts,
}

/// The counters of one connected daemon, looked up once at its Hello.
pub struct InstanceCounters {
    /// By event kind, indexed by `EventLabel::index`.
    pub received: Vec<Arc<Counter>>,
    pub lost: Arc<Counter>,
    pub connected: Arc<Gauge>,
}

impl PipeMetrics {
    pub fn new(registry: &Registry, instances: Arc<Instances>) -> Self {
        let build = gauge_vec(
            registry,
            "exai_build_info",
            "Build of this agent; always 1.",
            &["component", "version"],
        );
        build.with_label_values(&["agent", crate::VERSION]).set(1);
        let connections = registry.counter(
            "exai_pipe_connections_total",
            "Event-pipe connections accepted.",
        );
        let rejected = counter_vec(
            registry,
            "exai_pipe_frames_rejected_total",
            "Event-pipe connections closed because a frame was refused, by reason.",
            &["reason"],
        );
        for reason in [
            "bad_length",
            "bad_magic",
            "bad_version",
            "bad_payload",
            "bad_sequence",
            "duplicate_instance",
            "no_hello",
            "bad_instance",
        ] {
            rejected.with_label_values(&[reason]);
        }
        Self {
            received: counter_vec(registry, "exai_pipe_events_received_total", "Events received from a daemon, by kind.", &["instance", "kind"]),
            lost: counter_vec(
                registry,
                "exai_pipe_events_lost_total",
                "Events a daemon wrote that never arrived or were never confirmed, from sequence gaps.",
                &["instance"],
            ),
            daemon_dropped: counter_vec(
                registry,
                "exai_pipe_daemon_dropped_events_total",
                "Events the daemon dropped before they reached the pipe, by reason (from its heartbeats).",
                &["instance", "reason"],
            ),
            rejected,
            connections,
            connected: gauge_vec(registry, "exai_pipe_daemon_connected", "1 while the daemon is connected.", &["instance"]),
            queue_depth: gauge_vec(registry, "exai_pipe_daemon_queue_depth", "Events waiting in the daemon's queue.", &["instance"]),
            queue_capacity: gauge_vec(registry, "exai_pipe_daemon_queue_capacity", "Capacity of the daemon's event queue.", &["instance"]),
            drops_seen: Mutex::new(HashMap::new()),
            drops_forgotten: Mutex::new(VecDeque::new()),
            instances,
        }
    }

    /// Which daemons the per-instance series belong to.
    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    pub fn connection_accepted(&self) {
        self.connections.inc();
    }

    /// The counters of the daemon whose label value is `instance`.
    pub fn instance(&self, instance: &str) -> InstanceCounters {
        InstanceCounters {
            received: EventLabel::ALL
                .iter()
                .map(|kind| self.received.with_label_values(&[instance, kind.as_str()]))
                .collect(),
            lost: self.lost.with_label_values(&[instance]),
            connected: self.connected.with_label_values(&[instance]),
        }
    }

    /// A daemon disconnected: its queue figures describe nothing any more. (Its counters
    /// stay until its series expire.)
    pub fn daemon_gone(&self, instance: &str) {
        if instance != super::instances::OTHER {
            for family in [&self.queue_depth, &self.queue_capacity] {
                family.remove_label_values(&[instance]);
            }
        }
    }

    /// Removes the series of a daemon that went away long ago.
    pub fn forget(&self, instance_id: &str, instance: &str) {
        let last = self
            .drops_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance_id);
        if let Some(last) = last {
            let mut forgotten = self
                .drops_forgotten
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if forgotten.len() == 4096 {
                forgotten.pop_front();
            }
            forgotten.push_back((instance_id.to_string(), last));
        }
        if instance == super::instances::OTHER {
            return;
        }
        for family in [&self.received, &self.lost, &self.daemon_dropped] {
            family.remove_matching("instance", instance);
        }
        for family in [&self.connected, &self.queue_depth, &self.queue_capacity] {
            family.remove_label_values(&[instance]);
        }
    }

    /// Events received and lost, and dropped by the daemons, summed over every daemon
    /// this agent has heard from.
    pub fn summary(&self) -> PipeSummary {
        let sum = |family: &CounterVec, only: Option<(&str, &str)>| -> u64 {
            let mut n = 0u64;
            family.for_each_matching(only, |c| n = n.saturating_add(c.get()));
            n
        };
        let dropped =
            |reason: DropReason| sum(&self.daemon_dropped, Some(("reason", reason.as_str())));
        PipeSummary {
            received: sum(&self.received, None),
            lost: sum(&self.lost, None),
            dropped: DropCounts {
                queue_full: dropped(DropReason::QueueFull),
                write_error: dropped(DropReason::WriteError),
                disconnected: dropped(DropReason::Disconnected),
            },
        }
    }

    pub fn frame_rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// Records the daemon's side of the pipe from a heartbeat.
    pub fn daemon_pipe(&self, instance_id: &str, instance: &str, pipe: &PipeStats) {
        self.queue_depth
            .with_label_values(&[instance])
            .set(i64::from(pipe.queue_depth));
        self.queue_capacity
            .with_label_values(&[instance])
            .set(i64::from(pipe.queue_capacity));
        let mut seen = self.drops_seen.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.entry(instance_id.to_string()).or_insert_with(|| {
            let mut forgotten = self
                .drops_forgotten
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match forgotten.iter().position(|(id, _)| id == instance_id) {
                Some(i) => forgotten.remove(i).map(|(_, d)| d).unwrap_or_default(),
                None => DropCounts::default(),
            }
        });
        for reason in DropReason::ALL {
            let (now, before) = (pipe.dropped.get(*reason), last.get(*reason));
            let counter = self
                .daemon_dropped
                .with_label_values(&[instance, reason.as_str()]);
            if now > before {
                counter.inc_by(now - before);
            }
        }
        *last = pipe.dropped;
    }
}
