//! The checks themselves. Each runs under the per-check timeout in the background task;
//! none of them is ever awaited by a health request.

use super::link::DaemonLink;
use super::report::{
    DaemonHealth, DiskHealth, MemoryHealth, Status, StorageHealth, SupabaseHealth,
};
use super::HealthConfig;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `check` under `limit`; `Err` carries what to tell an operator.
pub async fn within<T>(
    limit: Duration,
    check: impl Future<Output = Result<T, String>>,
) -> (Result<T, String>, f64) {
    let started = Instant::now();
    let result = match tokio::time::timeout(limit, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    };
    (result, started.elapsed().as_secs_f64() * 1000.0)
}

/// PING on the agent's own Redis connection, reconnecting when it broke.
pub struct RedisCheck {
    client: redis::Client,
    conn: Option<redis::aio::MultiplexedConnection>,
}

impl RedisCheck {
    pub fn new(url: &str) -> Result<Self, String> {
        redis::Client::open(url)
            .map(|client| Self { client, conn: None })
            .map_err(|_| {
                "REDIS_URL is not a Redis URL (redis://[:password@]host[:port][/db])".into()
            })
    }

    pub async fn run(&mut self, timeout: Duration) -> StorageHealth {
        let (result, latency_ms) = within(timeout, self.ping(timeout)).await;
        if result.is_err() {
            // A connection that timed out may hold a half-read answer: start afresh.
            self.conn = None;
        }
        StorageHealth {
            status: if result.is_ok() {
                Status::Healthy
            } else {
                Status::Unhealthy
            },
            kind: "redis",
            latency_ms: result.is_ok().then_some(round(latency_ms)),
            message: match result {
                Ok(()) => "PING answered".into(),
                Err(e) => format!("Redis unreachable: {e}"),
            },
        }
    }

    async fn ping(&mut self, timeout: Duration) -> Result<(), String> {
        if self.conn.is_none() {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| redis_error(&e))?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let pong: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(|e| redis_error(&e))?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(format!("PING answered {pong:?}"))
        }
    }
}

/// The error as an operator needs it; never the URL, which may hold a password.
fn redis_error(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection failed".into()
    } else {
        format!("{:?} error", e.kind())
    }
}

/// Whether Supabase's REST API answers the service role key: a one-row select on the
/// conversations table, which also shows the schema is in place.
pub struct SupabaseCheck {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl SupabaseCheck {
    pub fn new(base: &str, key: String, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .unwrap_or_default(),
            url: format!(
                "{}/rest/v1/conversations?select=id&limit=1",
                base.trim_end_matches('/')
            ),
            key,
        }
    }

    pub async fn run(&self, timeout: Duration) -> SupabaseHealth {
        let request = self
            .http
            .get(&self.url)
            .header("apikey", &self.key)
            .bearer_auth(&self.key)
            .send();
        let (result, latency_ms) = within(timeout, async {
            request.await.map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", timeout.as_millis())
                } else if e.is_connect() {
                    "connection failed".to_string()
                } else {
                    "request failed".to_string()
                }
            })
        })
        .await;
        let (status, http_status, message) = match result {
            Ok(response) => {
                let code = response.status().as_u16();
                match code {
                    200..=299 => (Status::Healthy, code, "REST API answered".to_string()),
                    401 | 403 => (
                        Status::Unhealthy,
                        code,
                        format!("the service role key was rejected (HTTP {code})"),
                    ),
                    _ => (
                        Status::Unhealthy,
                        code,
                        format!("REST API answered HTTP {code}"),
                    ),
                }
            }
            Err(e) => {
                return SupabaseHealth {
                    status: Status::Unhealthy,
                    enabled: true,
                    latency_ms: None,
                    http_status: None,
                    message: format!("Supabase unreachable: {e}"),
                }
            }
        };
        SupabaseHealth {
            status,
            enabled: true,
            latency_ms: Some(round(latency_ms)),
            http_status: Some(http_status),
            message,
        }
    }
}

/// The agent's own memory and CPU, and the system's memory.
pub struct MemoryCheck {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
}

impl Default for MemoryCheck {
    fn default() -> Self {
        Self {
            system: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }
}

/// What the memory check read, for the metrics as well as the report.
pub struct MemoryReading {
    pub health: MemoryHealth,
    pub agent_rss_bytes: u64,
    pub agent_cpu_percent: f32,
}

impl MemoryCheck {
    pub fn run(&mut self, config: &HealthConfig, link: &DaemonLink) -> MemoryReading {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
        self.system.refresh_memory();
        let (rss, cpu) = match self.pid {
            Some(pid) => {
                self.system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_memory().with_cpu(),
                );
                self.system
                    .process(pid)
                    .map_or((0, 0.0), |p| (p.memory(), p.cpu_usage()))
            }
            None => (0, 0.0),
        };
        let total = self.system.total_memory();
        let used = total.saturating_sub(self.system.available_memory());
        let system_percent = if total > 0 {
            used as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        let process_mb = rss as f64 / 1_048_576.0;
        let mut status = Status::of(
            system_percent,
            config.memory_degraded_percent,
            config.memory_unhealthy_percent,
        );
        let mut message = format!("system memory {system_percent:.1} % used");
        if process_mb >= config.agent_memory_mb as f64 {
            status = status.max(Status::Degraded);
            message = format!(
                "the agent uses {process_mb:.0} MiB, over its {} MiB limit",
                config.agent_memory_mb
            );
        }
        MemoryReading {
            health: MemoryHealth {
                status,
                process_memory_mb: round(process_mb),
                daemon_memory_mb: link
                    .state()
                    .daemon_rss_bytes
                    .map(|b| round(b as f64 / 1_048_576.0)),
                system_memory_percent: round(system_percent),
                message,
            },
            agent_rss_bytes: rss,
            agent_cpu_percent: cpu,
        }
    }
}

/// Use of the filesystem holding `path`, as `df` counts it.
pub fn disk(path: &Path, degraded: f64, unhealthy: f64) -> DiskHealth {
    let shown = path.display().to_string();
    match disk_usage(path) {
        Ok((percent, free_bytes)) => DiskHealth {
            status: Status::of(percent, degraded, unhealthy),
            disk_percent: round(percent),
            free_gb: round(free_bytes as f64 / 1_073_741_824.0),
            path: shown,
            message: format!(
                "{percent:.1} % used (degraded at {degraded} %, unhealthy at {unhealthy} %)"
            ),
        },
        Err(e) => DiskHealth {
            status: Status::Unhealthy,
            disk_percent: 0.0,
            free_gb: 0.0,
            path: shown,
            message: format!("cannot read disk usage: {e}"),
        },
    }
}

#[cfg(unix)]
fn disk_usage(path: &Path) -> std::io::Result<(f64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = stat.f_frsize as u64;
    let used = (stat.f_blocks as u64).saturating_sub(stat.f_bfree as u64);
    let available = stat.f_bavail as u64;
    let usable = used + available;
    let percent = if usable == 0 {
        0.0
    } else {
        used as f64 * 100.0 / usable as f64
    };
    Ok((percent, available * frsize))
}

#[cfg(not(unix))]
fn disk_usage(_path: &Path) -> std::io::Result<(f64, u64)> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "disk usage is read on Unix only",
    ))
}

pub fn daemon(link: &DaemonLink, silent_after: Duration) -> DaemonHealth {
    let state = link.state();
    let age = state.last_event_age.map(|a| round(a.as_secs_f64()));
    let (status, message) = if state.connected == 0 {
        (
            Status::Unhealthy,
            match age {
                Some(age) => format!("no daemon connected; last event {age} s ago"),
                None => "no daemon has connected yet".to_string(),
            },
        )
    } else if state.last_event_age.is_none_or(|a| a > silent_after) {
        (
            Status::Unhealthy,
            format!(
                "connected but silent for over {} s (heartbeats come every second)",
                silent_after.as_secs()
            ),
        )
    } else {
        (
            Status::Healthy,
            format!("{} daemon(s) connected", state.connected),
        )
    };
    DaemonHealth {
        status,
        connected: state.connected > 0,
        instances: state.connected,
        last_event_age_s: age,
        message,
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
