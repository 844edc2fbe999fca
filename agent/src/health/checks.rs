//! The agent's own checks: its memory and the system's, the disk, and — only when an
//! operator asks for them — its own probes of Redis and Supabase. Each runs under the
//! per-check timeout in the background task (the blocking ones on the blocking pool);
//! none of them is ever awaited by a health request.

use super::report::{DiskHealth, Status};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// What an agent-side probe of a dependency found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub http_status: Option<u16>,
    pub message: String,
}

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
pub struct RedisProbe {
    client: redis::Client,
    conn: Option<redis::aio::MultiplexedConnection>,
}

impl RedisProbe {
    pub fn new(url: &str) -> Result<Self, String> {
        redis::Client::open(url)
            .map(|client| Self { client, conn: None })
            .map_err(|_| {
                "EXAI_HEALTH_PROBE_REDIS_URL is not a Redis URL (redis://[:password@]host[:port][/db])"
                    .into()
            })
    }

    pub async fn run(&mut self, timeout: Duration) -> Probe {
        let (result, latency_ms) = within(timeout, self.ping(timeout)).await;
        if result.is_err() {
            // A connection that timed out may hold a half-read answer: start afresh.
            self.conn = None;
        }
        Probe {
            ok: result.is_ok(),
            latency_ms: result.is_ok().then_some(round(latency_ms)),
            http_status: None,
            message: match result {
                Ok(()) => "the agent's PING was answered".into(),
                Err(e) => format!("Redis unreachable from the agent: {e}"),
            },
        }
    }

    async fn ping(&mut self, timeout: Duration) -> Result<(), String> {
        if self.conn.is_none() {
            // The check's own limit (`within`) decides; these only keep an abandoned
            // attempt from lingering, so they are set past it.
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout * 2))
                .set_response_timeout(Some(timeout * 2));
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
pub struct SupabaseProbe {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl SupabaseProbe {
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

    pub async fn run(&self, timeout: Duration) -> Probe {
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
        match result {
            Ok(response) => {
                let code = response.status().as_u16();
                let (ok, message) = match code {
                    200..=299 => (true, "the agent's REST request was answered".to_string()),
                    401 | 403 => (
                        false,
                        format!("the service role key was rejected (HTTP {code})"),
                    ),
                    _ => (false, format!("REST API answered HTTP {code}")),
                };
                Probe {
                    ok,
                    latency_ms: Some(round(latency_ms)),
                    http_status: Some(code),
                    message,
                }
            }
            Err(e) => Probe {
                ok: false,
                latency_ms: None,
                http_status: None,
                message: format!("Supabase unreachable from the agent: {e}"),
            },
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

/// What the memory check read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryReading {
    pub agent_rss_bytes: u64,
    pub agent_cpu_percent: f32,
    pub system_percent: f64,
}

impl MemoryCheck {
    /// Reads `/proc`: blocking, so it runs on the blocking pool.
    pub fn run(&mut self) -> MemoryReading {
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
        MemoryReading {
            agent_rss_bytes: rss,
            agent_cpu_percent: cpu,
            system_percent: if total > 0 {
                used as f64 * 100.0 / total as f64
            } else {
                0.0
            },
        }
    }
}

/// Use of the filesystem holding `path`, as `df` counts it.
pub fn disk(path: &Path, degraded: f64, unhealthy: f64) -> DiskHealth {
    let shown = path.display().to_string();
    match disk_usage(path) {
        Ok((percent, free_bytes)) => DiskHealth {
            status: Status::of(percent, degraded, unhealthy),
            read: true,
            disk_percent: round(percent),
            free_gb: round(free_bytes as f64 / 1_073_741_824.0),
            path: shown,
            message: format!(
                "{percent:.1} % used (degraded at {degraded} %, unhealthy at {unhealthy} %)"
            ),
        },
        Err(e) => DiskHealth {
            status: Status::Unhealthy,
            read: false,
            disk_percent: 0.0,
            free_gb: 0.0,
            path: shown,
            message: format!("cannot read disk usage: {e}"),
        },
    }
}

/// `statvfs` of `path`: the share used (of what is usable by unprivileged users, as
/// `df` counts it) and the bytes available. Blocking.
#[cfg(unix)]
fn disk_usage(path: &Path) -> std::io::Result<(f64, u64)> {
    let stat = rustix::fs::statvfs(path)?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree);
    let usable = used.saturating_add(stat.f_bavail);
    let percent = if usable == 0 {
        0.0
    } else {
        used as f64 * 100.0 / usable as f64
    };
    Ok((percent, stat.f_bavail.saturating_mul(stat.f_frsize)))
}

#[cfg(not(unix))]
fn disk_usage(_path: &Path) -> std::io::Result<(f64, u64)> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "disk usage is read on Unix only",
    ))
}

pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_disk_of_a_path_and_names_a_missing_one() {
        let d = disk(Path::new("/"), 85.0, 95.0);
        assert!(d.disk_percent > 0.0 && d.disk_percent <= 100.0, "{d:?}");
        assert!(d.free_gb >= 0.0);
        let missing = disk(Path::new("/no/such/path/here"), 85.0, 95.0);
        assert_eq!(missing.status, Status::Unhealthy);
        assert!(
            missing.message.starts_with("cannot read disk usage"),
            "{missing:?}"
        );
    }
}
