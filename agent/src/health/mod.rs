//! Health checks: a background task checks every dependency on its own interval, each
//! check under its own timeout, and publishes the result. Health requests read the last
//! result and never wait on a dependency, so a stalled Redis cannot slow `/health`, and a
//! busy daemon is a healthy one.

pub mod checks;
pub mod link;
pub mod report;
pub mod server;

use crate::metrics::service::ServiceMetrics;
use checks::{MemoryCheck, RedisCheck, SupabaseCheck};
use link::DaemonLink;
use report::{Components, Status, StorageHealth, SupabaseHealth};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone, PartialEq)]
pub struct HealthConfig {
    pub interval: Duration,
    /// Longest any one check may take.
    pub timeout: Duration,
    pub timezone: chrono_tz::Tz,
    pub disk_path: PathBuf,
    pub disk_degraded_percent: f64,
    pub disk_unhealthy_percent: f64,
    pub memory_degraded_percent: f64,
    pub memory_unhealthy_percent: f64,
    /// The agent's own resident memory past which memory is degraded.
    pub agent_memory_mb: u64,
    /// A connected daemon silent for longer than this is unhealthy.
    pub daemon_silent_after: Duration,
    /// The agent's own Redis connection; may hold a password, so never printed.
    pub redis_url: Option<String>,
    /// Supabase's URL and service role key; the key is never printed.
    pub supabase: Option<(String, String)>,
}

impl std::fmt::Debug for HealthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthConfig")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("timezone", &self.timezone)
            .field("disk_path", &self.disk_path)
            .field("redis", &self.redis_url.is_some())
            .field("supabase", &self.supabase.as_ref().map(|(url, _)| url))
            .finish_non_exhaustive()
    }
}

/// One round's findings.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub components: Components,
    pub status: Status,
    pub ready: bool,
    pub at: SystemTime,
}

/// The last round's findings; health requests and the dashboard read it.
pub type HealthCache = watch::Receiver<Arc<Checked>>;

pub struct HealthChecker {
    config: HealthConfig,
    link: Arc<DaemonLink>,
    metrics: Arc<ServiceMetrics>,
    redis: Option<Result<RedisCheck, String>>,
    supabase: Option<SupabaseCheck>,
    memory: MemoryCheck,
}

impl HealthChecker {
    pub fn new(config: HealthConfig, link: Arc<DaemonLink>, metrics: Arc<ServiceMetrics>) -> Self {
        let redis = config.redis_url.as_deref().map(RedisCheck::new);
        let supabase = config
            .supabase
            .as_ref()
            .map(|(url, key)| SupabaseCheck::new(url, key.clone(), config.timeout));
        Self {
            config,
            link,
            metrics,
            redis,
            supabase,
            memory: MemoryCheck::default(),
        }
    }

    /// Runs one round now, then one every interval until `cancel`, publishing each.
    pub async fn run(mut self, publish: watch::Sender<Arc<Checked>>, cancel: CancellationToken) {
        loop {
            let checked = self.round().await;
            publish.send_replace(Arc::new(checked));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Every check, concurrently, each under the timeout.
    pub async fn round(&mut self) -> Checked {
        let timeout = self.config.timeout;
        let (redis, supabase) = (&mut self.redis, &self.supabase);
        let storage = async {
            match redis {
                None => StorageHealth {
                    status: Status::Healthy,
                    kind: "memory",
                    latency_ms: None,
                    message: "REDIS_URL not set: conversations are kept in the daemon's memory"
                        .into(),
                },
                Some(Err(why)) => StorageHealth {
                    status: Status::Unhealthy,
                    kind: "redis",
                    latency_ms: None,
                    message: why.clone(),
                },
                Some(Ok(check)) => check.run(timeout).await,
            }
        };
        let supabase = async {
            match supabase {
                None => SupabaseHealth {
                    status: Status::Healthy,
                    enabled: false,
                    latency_ms: None,
                    http_status: None,
                    message: "SUPABASE_URL not set: persistence is off".into(),
                },
                Some(check) => check.run(timeout).await,
            }
        };
        let (storage, supabase) = tokio::join!(storage, supabase);
        let memory = self.memory.run(&self.config, &self.link);
        self.metrics
            .agent_process(memory.agent_rss_bytes, memory.agent_cpu_percent);
        let disk = checks::disk(
            &self.config.disk_path,
            self.config.disk_degraded_percent,
            self.config.disk_unhealthy_percent,
        );
        self.metrics.disk_usage(&disk.path, disk.disk_percent);
        let components = Components {
            storage,
            supabase,
            memory: memory.health,
            disk,
            daemon: checks::daemon(&self.link, self.config.daemon_silent_after),
        };
        Checked {
            status: components.overall(),
            ready: components.ready(),
            components,
            at: SystemTime::now(),
        }
    }
}

/// What the cache holds before the first round ends.
pub fn not_checked_yet(config: &HealthConfig) -> Checked {
    let pending = "first check under way".to_string();
    let components = Components {
        storage: StorageHealth {
            status: Status::Unhealthy,
            kind: if config.redis_url.is_some() {
                "redis"
            } else {
                "memory"
            },
            latency_ms: None,
            message: pending.clone(),
        },
        supabase: SupabaseHealth {
            status: Status::Unhealthy,
            enabled: config.supabase.is_some(),
            latency_ms: None,
            http_status: None,
            message: pending.clone(),
        },
        memory: report::MemoryHealth {
            status: Status::Unhealthy,
            process_memory_mb: 0.0,
            daemon_memory_mb: None,
            system_memory_percent: 0.0,
            message: pending.clone(),
        },
        disk: report::DiskHealth {
            status: Status::Unhealthy,
            disk_percent: 0.0,
            free_gb: 0.0,
            path: config.disk_path.display().to_string(),
            message: pending.clone(),
        },
        daemon: report::DaemonHealth {
            status: Status::Unhealthy,
            connected: false,
            instances: 0,
            last_event_age_s: None,
            message: pending,
        },
    };
    Checked {
        status: Status::Unhealthy,
        ready: false,
        components,
        at: SystemTime::now(),
    }
}
