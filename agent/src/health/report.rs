//! What the health report says, component by component, and how it reads as JSON and
//! HTTP status codes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    /// Nothing reports on it yet: storage and Supabase while no daemon is connected.
    Unknown,
    Degraded,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Unknown => "unknown",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// The status of a figure against a degraded and an unhealthy threshold.
    pub fn of(value: f64, degraded: f64, unhealthy: f64) -> Self {
        if value >= unhealthy {
            Status::Unhealthy
        } else if value >= degraded {
            Status::Degraded
        } else {
            Status::Healthy
        }
    }
}

/// Whose view a dependency's status is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// What the connected daemons report in their heartbeats (the default).
    Daemon,
    /// The agent's own probe (EXAI_HEALTH_PROBE_*).
    Agent,
}

/// Conversation storage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageHealth {
    pub status: Status,
    pub view: View,
    /// `redis` or `memory`; `null` while nothing reports.
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    pub latency_ms: Option<f64>,
    /// What the last failure was (`timeout`, `connection_refused`, …); `null` when none.
    pub last_error: Option<&'static str>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupabaseHealth {
    pub status: Status,
    pub view: View,
    pub enabled: bool,
    /// The last upload's outcome (`ok`, `retry`, `rejected`); `null` before the first.
    pub last_upload: Option<&'static str>,
    pub http_status: Option<u16>,
    pub latency_ms: Option<f64>,
    /// Turns waiting in the daemons' spools, their size, and turns refused because a
    /// spool was full (since each daemon started).
    pub spool_depth: u64,
    pub spool_bytes: u64,
    pub refused_turns: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryHealth {
    pub status: Status,
    /// The agent's resident memory.
    pub process_memory_mb: f64,
    /// The connected daemons' resident memory, from their last heartbeats.
    pub daemon_memory_mb: Option<f64>,
    pub system_memory_percent: f64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskHealth {
    pub status: Status,
    /// Whether the figures below were read (else the message says why not).
    #[serde(skip)]
    pub read: bool,
    pub disk_percent: f64,
    pub free_gb: f64,
    pub path: String,
    pub message: String,
}

/// One daemon, as the daemon component lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonEntry {
    pub name: String,
    pub instance_id: String,
    pub connected: bool,
    /// Seconds since its last event (heartbeats come every second).
    pub last_event_age_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonHealth {
    pub status: Status,
    pub connected: bool,
    /// Daemons connected now.
    pub instances: usize,
    /// Seconds since the last event from any daemon; `null` before the first.
    pub last_event_age_s: Option<f64>,
    pub message: String,
    /// Every daemon the agent knows: connected, or gone less than its time to live ago.
    pub daemons: Vec<DaemonEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Components {
    pub storage: StorageHealth,
    pub supabase: SupabaseHealth,
    pub memory: MemoryHealth,
    pub disk: DiskHealth,
    pub daemon: DaemonHealth,
}

impl Components {
    /// Each component's name and status, for change detection and the dashboard.
    pub fn statuses(&self) -> [(&'static str, Status); 5] {
        [
            ("storage", self.storage.status),
            ("supabase", self.supabase.status),
            ("memory", self.memory.status),
            ("disk", self.disk.status),
            ("daemon", self.daemon.status),
        ]
    }

    /// The overall status. Without a daemon there is no service: unhealthy. Memory or
    /// disk past their unhealthy threshold: unhealthy. A failing dependency (Redis,
    /// Supabase) leaves the service answering — without history, or into the spool — so
    /// it is degraded. What nothing reports on yet counts for nothing.
    pub fn overall(&self) -> Status {
        let critical = [self.daemon.status, self.memory.status, self.disk.status];
        if critical.contains(&Status::Unhealthy) {
            return Status::Unhealthy;
        }
        let worst = self
            .statuses()
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| *s != Status::Unknown)
            .max();
        match worst {
            Some(Status::Healthy) | None => Status::Healthy,
            Some(_) => Status::Degraded,
        }
    }

    /// The components that keep the agent from being ready: ingesting from a daemon, and
    /// no dependency failing. Memory and disk pressure shows in `/health`, not here: it
    /// does not make the service unable to answer.
    pub fn waiting_for(&self) -> Vec<&'static str> {
        let mut waiting = Vec::new();
        if self.daemon.status != Status::Healthy {
            waiting.push("daemon");
        }
        for (name, status) in [
            ("storage", self.storage.status),
            ("supabase", self.supabase.status),
        ] {
            if matches!(status, Status::Degraded | Status::Unhealthy) {
                waiting.push(name);
            }
        }
        waiting
    }

    pub fn ready(&self) -> bool {
        self.waiting_for().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_healthy() -> Components {
        Components {
            storage: StorageHealth {
                status: Status::Healthy,
                view: View::Daemon,
                kind: Some("memory"),
                latency_ms: None,
                last_error: None,
                message: String::new(),
            },
            supabase: SupabaseHealth {
                status: Status::Healthy,
                view: View::Daemon,
                enabled: false,
                last_upload: None,
                http_status: None,
                latency_ms: None,
                spool_depth: 0,
                spool_bytes: 0,
                refused_turns: 0,
                message: String::new(),
            },
            memory: MemoryHealth {
                status: Status::Healthy,
                process_memory_mb: 10.0,
                daemon_memory_mb: None,
                system_memory_percent: 20.0,
                message: String::new(),
            },
            disk: DiskHealth {
                status: Status::Healthy,
                read: true,
                disk_percent: 20.0,
                free_gb: 10.0,
                path: "/".into(),
                message: String::new(),
            },
            daemon: DaemonHealth {
                status: Status::Healthy,
                connected: true,
                instances: 1,
                last_event_age_s: Some(0.1),
                message: String::new(),
                daemons: Vec::new(),
            },
        }
    }

    #[test]
    fn a_failing_dependency_degrades_and_a_missing_daemon_is_unhealthy() {
        let mut c = all_healthy();
        assert_eq!((c.overall(), c.ready()), (Status::Healthy, true));
        c.storage.status = Status::Unhealthy;
        assert_eq!((c.overall(), c.ready()), (Status::Degraded, false));
        assert_eq!(c.waiting_for(), ["storage"]);
        c = all_healthy();
        c.disk.status = Status::Degraded;
        assert_eq!((c.overall(), c.ready()), (Status::Degraded, true));
        c.disk.status = Status::Unhealthy;
        assert_eq!((c.overall(), c.ready()), (Status::Unhealthy, true));
        c = all_healthy();
        c.daemon.status = Status::Unhealthy;
        c.storage.status = Status::Unknown;
        assert_eq!((c.overall(), c.ready()), (Status::Unhealthy, false));
        assert_eq!(c.waiting_for(), ["daemon"]);
    }

    #[test]
    fn what_nothing_reports_on_counts_for_nothing() {
        let mut c = all_healthy();
        c.storage.status = Status::Unknown;
        c.supabase.status = Status::Unknown;
        assert_eq!((c.overall(), c.ready()), (Status::Healthy, true));
    }

    #[test]
    fn thresholds_are_inclusive() {
        assert_eq!(Status::of(84.9, 85.0, 95.0), Status::Healthy);
        assert_eq!(Status::of(85.0, 85.0, 95.0), Status::Degraded);
        assert_eq!(Status::of(95.0, 85.0, 95.0), Status::Unhealthy);
    }
}
