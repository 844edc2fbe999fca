//! Health. The daemon link and the dependencies as the daemons see them are read from
//! the registry of daemons when a request comes, so a daemon's connection or loss shows
//! at once. Only what the agent checks itself — its memory, the disk and, when an
//! operator asks for them, its own probes of Redis and Supabase — runs in the background,
//! on an interval, each check under its timeout; a finding older than twice the interval
//! counts as failed. A health request never waits on a dependency.

pub mod checks;
pub mod report;
pub mod server;

use crate::daemons::{DaemonLink, Daemons};
use crate::metrics::Families;
use checks::{MemoryCheck, MemoryReading, Probe, RedisProbe, SupabaseProbe};
use exai_proto::{StorageErrorKind, SupabaseResult};
use report::{
    Components, DaemonEntry, DaemonHealth, DiskHealth, MemoryHealth, Status, StorageHealth,
    SupabaseHealth, View,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
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
    /// The agent's own Redis probe (EXAI_HEALTH_PROBE_REDIS_URL); may hold a password,
    /// so never printed.
    pub probe_redis_url: Option<String>,
    /// The agent's own Supabase probe: URL and service role key; the key is never printed.
    pub probe_supabase: Option<(String, String)>,
}

impl std::fmt::Debug for HealthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthConfig")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("timezone", &self.timezone)
            .field("disk_path", &self.disk_path)
            .field("probe_redis", &self.probe_redis_url.is_some())
            .field("probe_supabase", &self.probe_supabase.is_some())
            .finish_non_exhaustive()
    }
}

/// A finding and when it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed<T> {
    pub value: T,
    pub at: Instant,
    pub at_wall: SystemTime,
}

impl<T> Timed<T> {
    fn now(value: T) -> Self {
        Self {
            value,
            at: Instant::now(),
            at_wall: SystemTime::now(),
        }
    }
}

/// What the agent's own checks last found; `None` before the first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub memory: Option<Timed<Result<MemoryReading, String>>>,
    pub disk: Option<Timed<DiskHealth>>,
    pub redis: Option<Timed<Probe>>,
    pub supabase: Option<Timed<Probe>>,
}

/// Runs the agent's own checks every interval and publishes what they found.
pub struct AgentChecks {
    config: HealthConfig,
    families: Arc<Families>,
    /// Locked by the blocking task that reads it: a read that never returns keeps it,
    /// and later rounds find it taken instead of piling up threads.
    memory: Arc<Mutex<MemoryCheck>>,
    /// Set while a disk read is under way, for the same reason.
    disk_busy: Arc<AtomicBool>,
    redis: Option<Result<RedisProbe, String>>,
    supabase: Option<SupabaseProbe>,
    findings: Findings,
}

impl AgentChecks {
    pub fn new(config: HealthConfig, families: Arc<Families>) -> Self {
        let redis = config.probe_redis_url.as_deref().map(RedisProbe::new);
        let supabase = config
            .probe_supabase
            .as_ref()
            .map(|(url, key)| SupabaseProbe::new(url, key.clone(), config.timeout));
        Self {
            config,
            families,
            memory: Arc::new(Mutex::new(MemoryCheck::default())),
            disk_busy: Arc::new(AtomicBool::new(false)),
            redis,
            supabase,
            findings: Findings::default(),
        }
    }

    /// Runs one round now, then one every interval until `cancel`, publishing each.
    pub async fn run(mut self, publish: watch::Sender<Arc<Findings>>, cancel: CancellationToken) {
        loop {
            self.round().await;
            publish.send_replace(Arc::new(self.findings.clone()));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Every check, concurrently, each under the timeout.
    pub async fn round(&mut self) {
        let limit = self.config.timeout;
        let late = || format!("no answer within {} ms", limit.as_millis());
        let memory = {
            let check = self.memory.clone();
            async move {
                let read = tokio::task::spawn_blocking(move || {
                    check.try_lock().ok().map(|mut check| check.run())
                });
                match tokio::time::timeout(limit, read).await {
                    Ok(Ok(Some(reading))) => Ok(reading),
                    Ok(Ok(None)) => Err("the previous memory read has not returned".to_string()),
                    Ok(Err(e)) => Err(format!("memory read failed: {e}")),
                    Err(_) => Err(late()),
                }
            }
        };
        let disk = {
            let config = self.config.clone();
            let busy = self.disk_busy.clone();
            async move {
                let path = config.disk_path.display().to_string();
                let failed = |message: String| DiskHealth {
                    status: Status::Unhealthy,
                    read: false,
                    disk_percent: 0.0,
                    free_gb: 0.0,
                    path: path.clone(),
                    message,
                };
                if busy.swap(true, Ordering::AcqRel) {
                    return failed(format!(
                        "the previous disk read has not returned ({})",
                        late()
                    ));
                }
                let read = tokio::task::spawn_blocking(move || {
                    let d = checks::disk(
                        &config.disk_path,
                        config.disk_degraded_percent,
                        config.disk_unhealthy_percent,
                    );
                    busy.store(false, Ordering::Release);
                    d
                });
                match tokio::time::timeout(limit, read).await {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => failed(format!("disk read failed: {e}")),
                    Err(_) => failed(late()),
                }
            }
        };
        let redis = async {
            match &mut self.redis {
                None => None,
                Some(Err(why)) => Some(Probe {
                    ok: false,
                    latency_ms: None,
                    http_status: None,
                    message: why.clone(),
                }),
                Some(Ok(probe)) => Some(probe.run(limit).await),
            }
        };
        let supabase = async {
            match &self.supabase {
                None => None,
                Some(probe) => Some(probe.run(limit).await),
            }
        };
        let (memory, disk, redis, supabase) = tokio::join!(memory, disk, redis, supabase);
        if let Ok(m) = &memory {
            self.families
                .agent_process(m.agent_rss_bytes, m.agent_cpu_percent);
        }
        if disk.read {
            self.families
                .disk
                .with_label_values(&[&disk.path])
                .set(disk.disk_percent);
        }
        self.findings = Findings {
            memory: Some(Timed::now(memory)),
            disk: Some(Timed::now(disk)),
            redis: redis.map(Timed::now),
            supabase: supabase.map(Timed::now),
        };
    }
}

/// One health verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub components: Components,
    pub status: Status,
    pub ready: bool,
    /// When the agent's own checks behind it ran.
    pub checked_at: SystemTime,
}

/// Composes a verdict from the registry and the agent's findings, on demand.
pub struct Health {
    config: HealthConfig,
    daemons: Arc<Daemons>,
    findings: watch::Receiver<Arc<Findings>>,
}

impl Health {
    pub fn new(
        config: HealthConfig,
        daemons: Arc<Daemons>,
        findings: watch::Receiver<Arc<Findings>>,
    ) -> Self {
        Self {
            config,
            daemons,
            findings,
        }
    }

    pub fn timezone(&self) -> chrono_tz::Tz {
        self.config.timezone
    }

    /// Wakes when the agent's findings change.
    pub fn findings(&self) -> watch::Receiver<Arc<Findings>> {
        self.findings.clone()
    }

    pub fn check(&self) -> Checked {
        let findings = self.findings.borrow().clone();
        let links = self.daemons.links();
        let now = Instant::now();
        let components = Components {
            storage: storage(&links, &findings, &self.config, now),
            supabase: supabase(&links, &findings, &self.config, now),
            memory: memory(&links, &findings, &self.config, now),
            disk: disk(&findings, &self.config, now),
            daemon: daemon(&links, self.config.daemon_silent_after),
        };
        Checked {
            status: components.overall(),
            ready: components.ready(),
            components,
            checked_at: findings
                .disk
                .as_ref()
                .map_or(SystemTime::UNIX_EPOCH, |d| d.at_wall),
        }
    }
}

/// How a finding reads now: itself, or a failure when it is older than twice the
/// interval (the check is stuck, or its task died).
fn fresh<'a, T>(
    finding: &'a Option<Timed<T>>,
    config: &HealthConfig,
    now: Instant,
) -> Result<&'a T, String> {
    match finding {
        None => Err("first check under way".into()),
        Some(t) => {
            let age = now.saturating_duration_since(t.at);
            if age > config.interval * 2 {
                Err(format!(
                    "last checked {:.1} s ago (checks run every {:.1} s): the check is stuck",
                    age.as_secs_f64(),
                    config.interval.as_secs_f64()
                ))
            } else {
                Ok(&t.value)
            }
        }
    }
}

/// The connected daemons that have sent a heartbeat since connecting.
fn reporting(
    links: &[DaemonLink],
) -> impl Iterator<Item = (&str, &crate::daemons::record::LastHeartbeat)> {
    links
        .iter()
        .filter(|l| l.connected)
        .filter_map(|l| l.heartbeat.as_ref().map(|hb| (l.name.as_str(), hb)))
}

fn storage(
    links: &[DaemonLink],
    findings: &Findings,
    config: &HealthConfig,
    now: Instant,
) -> StorageHealth {
    if config.probe_redis_url.is_some() {
        let (status, latency_ms, message) = match fresh(&findings.redis, config, now) {
            Ok(p) if p.ok => (Status::Healthy, p.latency_ms, p.message.clone()),
            Ok(p) => (Status::Unhealthy, p.latency_ms, p.message.clone()),
            Err(why) => (Status::Unhealthy, None, why),
        };
        return StorageHealth {
            status,
            view: View::Agent,
            kind: Some("redis"),
            latency_ms,
            last_error: None,
            message,
        };
    }
    let views: Vec<(&str, exai_proto::StorageView)> = reporting(links)
        .map(|(name, hb)| (name, hb.storage))
        .collect();
    let Some((_, first)) = views.first() else {
        return StorageHealth {
            status: Status::Unknown,
            view: View::Daemon,
            kind: None,
            latency_ms: None,
            last_error: None,
            message: "no connected daemon has reported yet".into(),
        };
    };
    let down: Vec<&(&str, exai_proto::StorageView)> =
        views.iter().filter(|(_, v)| !v.reachable).collect();
    let kind = if views.iter().all(|(_, v)| v.backend == first.backend) {
        first.backend.as_str()
    } else {
        "mixed"
    };
    let latency_ms = views
        .iter()
        .filter(|(_, v)| v.reachable && v.checked_ms_ago != u64::MAX)
        .map(|(_, v)| checks::round(v.latency_us as f64 / 1000.0))
        .fold(None, |max: Option<f64>, l| {
            Some(max.map_or(l, |m| m.max(l)))
        });
    match down.first() {
        None => StorageHealth {
            status: Status::Healthy,
            view: View::Daemon,
            kind: Some(kind),
            latency_ms,
            last_error: None,
            message: match first.backend {
                exai_proto::StorageBackend::Memory => {
                    "conversations are kept in the daemon's memory".into()
                }
                backend => format!("{backend} answers the daemon"),
            },
        },
        Some((_, view)) => {
            let names: Vec<&str> = down.iter().map(|(name, _)| *name).collect();
            let error = match view.last_error {
                StorageErrorKind::None => StorageErrorKind::Connection,
                e => e,
            };
            StorageHealth {
                status: Status::Unhealthy,
                view: View::Daemon,
                kind: Some(kind),
                latency_ms,
                last_error: Some(error.as_str()),
                message: format!(
                    "{} unreachable from {} ({}); chats answer without history",
                    view.backend,
                    names.join(", "),
                    error.as_str().replace('_', " ")
                ),
            }
        }
    }
}

fn supabase(
    links: &[DaemonLink],
    findings: &Findings,
    config: &HealthConfig,
    now: Instant,
) -> SupabaseHealth {
    let views: Vec<(&str, exai_proto::SupabaseView)> = reporting(links)
        .map(|(name, hb)| (name, hb.supabase))
        .filter(|(_, v)| v.enabled)
        .collect();
    let sum = |f: fn(&exai_proto::SupabaseView) -> u64| {
        views.iter().fold(0u64, |n, (_, v)| n.saturating_add(f(v)))
    };
    let (spool_depth, spool_bytes, refused_turns) = (
        sum(|v| v.spool_depth),
        sum(|v| v.spool_bytes),
        sum(|v| v.refused_turns),
    );
    let waiting = format!("{spool_depth} turn(s) waiting in the spool");
    if config.probe_supabase.is_some() {
        let (status, latency_ms, http_status, message) =
            match fresh(&findings.supabase, config, now) {
                Ok(p) => (
                    if p.ok {
                        Status::Healthy
                    } else {
                        Status::Unhealthy
                    },
                    p.latency_ms,
                    p.http_status,
                    format!("{}; {waiting}", p.message),
                ),
                Err(why) => (Status::Unhealthy, None, None, why),
            };
        return SupabaseHealth {
            status,
            view: View::Agent,
            enabled: true,
            last_upload: None,
            http_status,
            latency_ms,
            spool_depth,
            spool_bytes,
            refused_turns,
            message,
        };
    }
    let off = |status, message: &str| SupabaseHealth {
        status,
        view: View::Daemon,
        enabled: false,
        last_upload: None,
        http_status: None,
        latency_ms: None,
        spool_depth: 0,
        spool_bytes: 0,
        refused_turns: 0,
        message: message.into(),
    };
    if views.is_empty() {
        return match reporting(links).next() {
            None => off(Status::Unknown, "no connected daemon has reported yet"),
            Some(_) => off(Status::Healthy, "persistence is off (SUPABASE_URL not set)"),
        };
    }
    let failing: Vec<&(&str, exai_proto::SupabaseView)> = views
        .iter()
        .filter(|(_, v)| {
            matches!(
                v.last_upload,
                Some(SupabaseResult::Retry | SupabaseResult::Rejected)
            )
        })
        .collect();
    let last = |v: &exai_proto::SupabaseView| v.last_upload.map(SupabaseResult::as_str);
    let http_status =
        |v: &exai_proto::SupabaseView| (v.last_http_status != 0).then_some(v.last_http_status);
    match failing.first() {
        None => SupabaseHealth {
            status: Status::Healthy,
            view: View::Daemon,
            enabled: true,
            last_upload: last(&views[0].1),
            http_status: http_status(&views[0].1),
            latency_ms: None,
            spool_depth,
            spool_bytes,
            refused_turns,
            message: match views[0].1.last_upload {
                None => format!("no upload yet; {waiting}"),
                Some(_) => format!("uploads succeed; {waiting}"),
            },
        },
        Some((_, view)) => {
            let names: Vec<&str> = failing.iter().map(|(name, _)| *name).collect();
            let how = match view.last_upload {
                Some(SupabaseResult::Rejected) => "rejected (uploads paused)",
                _ => "failing (retrying)",
            };
            SupabaseHealth {
                status: Status::Unhealthy,
                view: View::Daemon,
                enabled: true,
                last_upload: last(view),
                http_status: http_status(view),
                latency_ms: None,
                spool_depth,
                spool_bytes,
                refused_turns,
                message: format!(
                    "uploads from {} {how}; {waiting}, nothing lost",
                    names.join(", ")
                ),
            }
        }
    }
}

fn memory(
    links: &[DaemonLink],
    findings: &Findings,
    config: &HealthConfig,
    now: Instant,
) -> MemoryHealth {
    let daemon_rss: u64 = reporting(links).fold(0u64, |n, (_, hb)| n.saturating_add(hb.rss_bytes));
    let daemon_memory_mb = (daemon_rss > 0).then(|| checks::round(daemon_rss as f64 / 1_048_576.0));
    let reading = match fresh(&findings.memory, config, now) {
        Ok(Ok(reading)) => reading,
        Ok(Err(why)) => {
            return MemoryHealth {
                status: Status::Unhealthy,
                process_memory_mb: 0.0,
                daemon_memory_mb,
                system_memory_percent: 0.0,
                message: format!("cannot read memory: {why}"),
            }
        }
        Err(why) => {
            return MemoryHealth {
                status: Status::Unhealthy,
                process_memory_mb: 0.0,
                daemon_memory_mb,
                system_memory_percent: 0.0,
                message: format!("cannot read memory: {why}"),
            }
        }
    };
    let process_mb = reading.agent_rss_bytes as f64 / 1_048_576.0;
    let percent = reading.system_percent;
    let mut status = Status::of(
        percent,
        config.memory_degraded_percent,
        config.memory_unhealthy_percent,
    );
    let mut message = format!("system memory {percent:.1} % used");
    if process_mb >= config.agent_memory_mb as f64 {
        status = status.max(Status::Degraded);
        message = format!(
            "the agent uses {process_mb:.0} MiB, over its {} MiB limit",
            config.agent_memory_mb
        );
    }
    MemoryHealth {
        status,
        process_memory_mb: checks::round(process_mb),
        daemon_memory_mb,
        system_memory_percent: checks::round(percent),
        message,
    }
}

fn disk(findings: &Findings, config: &HealthConfig, now: Instant) -> DiskHealth {
    match fresh(&findings.disk, config, now) {
        Ok(d) => d.clone(),
        Err(why) => DiskHealth {
            status: Status::Unhealthy,
            read: false,
            disk_percent: 0.0,
            free_gb: 0.0,
            path: config.disk_path.display().to_string(),
            message: why,
        },
    }
}

fn daemon(links: &[DaemonLink], silent_after: Duration) -> DaemonHealth {
    let connected: Vec<&DaemonLink> = links.iter().filter(|l| l.connected).collect();
    let last_event_age = links.iter().map(|l| l.last_event_age).min();
    let age = last_event_age.map(|a| checks::round(a.as_secs_f64()));
    let silent: Vec<&str> = connected
        .iter()
        .filter(|l| l.last_event_age > silent_after)
        .map(|l| l.name.as_str())
        .collect();
    let (status, message) = if connected.is_empty() {
        (
            Status::Unhealthy,
            match links.iter().min_by_key(|l| l.since) {
                Some(gone) => format!(
                    "no daemon connected; {} left {:.1} s ago",
                    gone.name,
                    gone.since.as_secs_f64()
                ),
                None => "no daemon has connected yet".to_string(),
            },
        )
    } else if !silent.is_empty() {
        (
            if silent.len() == connected.len() {
                Status::Unhealthy
            } else {
                Status::Degraded
            },
            format!(
                "{} connected but silent for over {} s (heartbeats come every second)",
                silent.join(", "),
                silent_after.as_secs()
            ),
        )
    } else {
        (
            Status::Healthy,
            format!("{} daemon(s) connected", connected.len()),
        )
    };
    DaemonHealth {
        status,
        connected: !connected.is_empty(),
        instances: connected.len(),
        last_event_age_s: age,
        message,
        daemons: links
            .iter()
            .map(|l| DaemonEntry {
                name: l.name.clone(),
                instance_id: l.instance_id.clone(),
                connected: l.connected,
                last_event_age_s: checks::round(l.last_event_age.as_secs_f64()),
            })
            .collect(),
    }
}
