//! What a round of checks found, and how it reads as JSON and HTTP status codes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
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

/// Conversation storage as the agent sees it on its own connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageHealth {
    pub status: Status,
    /// `redis` when `REDIS_URL` is set, else `memory`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub latency_ms: Option<f64>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupabaseHealth {
    pub status: Status,
    pub enabled: bool,
    pub latency_ms: Option<f64>,
    pub http_status: Option<u16>,
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
    pub disk_percent: f64,
    pub free_gb: f64,
    pub path: String,
    pub message: String,
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
    /// it is degraded.
    pub fn overall(&self) -> Status {
        let critical = [self.daemon.status, self.memory.status, self.disk.status];
        if critical.contains(&Status::Unhealthy) {
            return Status::Unhealthy;
        }
        let worst = self.statuses().iter().map(|(_, s)| *s).max();
        match worst {
            Some(Status::Healthy) | None => Status::Healthy,
            Some(_) => Status::Degraded,
        }
    }

    /// Ready to serve: ingesting from a daemon and every enabled dependency healthy.
    /// Memory and disk pressure shows in `/health`, not here: it does not make the
    /// service unable to answer.
    pub fn ready(&self) -> bool {
        self.daemon.status == Status::Healthy
            && self.storage.status == Status::Healthy
            && self.supabase.status == Status::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_healthy() -> Components {
        Components {
            storage: StorageHealth {
                status: Status::Healthy,
                kind: "memory",
                latency_ms: None,
                message: String::new(),
            },
            supabase: SupabaseHealth {
                status: Status::Healthy,
                enabled: false,
                latency_ms: None,
                http_status: None,
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
            },
        }
    }

    #[test]
    fn a_failing_dependency_degrades_and_a_missing_daemon_is_unhealthy() {
        let mut c = all_healthy();
        assert_eq!((c.overall(), c.ready()), (Status::Healthy, true));
        c.storage.status = Status::Unhealthy;
        assert_eq!((c.overall(), c.ready()), (Status::Degraded, false));
        c = all_healthy();
        c.disk.status = Status::Degraded;
        assert_eq!((c.overall(), c.ready()), (Status::Degraded, true));
        c.disk.status = Status::Unhealthy;
        assert_eq!((c.overall(), c.ready()), (Status::Unhealthy, true));
        c = all_healthy();
        c.daemon.status = Status::Unhealthy;
        assert_eq!((c.overall(), c.ready()), (Status::Unhealthy, false));
    }

    #[test]
    fn thresholds_are_inclusive() {
        assert_eq!(Status::of(84.9, 85.0, 95.0), Status::Healthy);
        assert_eq!(Status::of(85.0, 85.0, 95.0), Status::Degraded);
        assert_eq!(Status::of(95.0, 85.0, 95.0), Status::Unhealthy);
    }
}
