//! The daemon's own RSS and CPU, read once a second by the pipe writer for heartbeats.

use exai_proto::ProcessStats;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

pub struct ProcessSampler {
    system: System,
    pid: Pid,
}

impl ProcessSampler {
    pub fn new() -> Self {
        Self {
            system: System::new(),
            pid: Pid::from_u32(std::process::id()),
        }
    }

    /// RSS now, and CPU in percent of one core since the previous call.
    pub fn sample(&mut self) -> ProcessStats {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        match self.system.process(self.pid) {
            Some(p) => ProcessStats {
                rss_bytes: p.memory(),
                cpu_percent: p.cpu_usage(),
            },
            None => ProcessStats::default(),
        }
    }
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self::new()
    }
}
