//! The agent's settings: environment variables (names follow the seed), overridden by
//! command-line flags.

use crate::daemons::DaemonsConfig;
use crate::health::HealthConfig;
use exai_process::settings::{EnvSource, SettingError, Settings};
use exai_proto::DEFAULT_EVENTS_SOCKET;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// Local socket the daemons connect to [env: EXAI_EVENTS_SOCKET] [default: /tmp/exai/events.sock]
    #[arg(long, value_name = "PATH")]
    pub events_socket: Option<String>,
    /// Serve Prometheus metrics [env: METRICS_ENABLED] [default: true]
    #[arg(long, value_name = "BOOL")]
    pub metrics_enabled: Option<String>,
    /// Address for /metrics [env: METRICS_HOST] [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub metrics_host: Option<String>,
    /// Port for /metrics; 0 picks a free one [env: METRICS_PORT] [default: 8000]
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<String>,
    /// Serve the health checks [env: HEALTH_CHECK_ENABLED] [default: true]
    #[arg(long, value_name = "BOOL")]
    pub health_check_enabled: Option<String>,
    /// Address for /health* [env: HEALTH_CHECK_HOST] [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub health_check_host: Option<String>,
    /// Port for /health*; 0 picks a free one [env: HEALTH_CHECK_PORT] [default: 8081]
    #[arg(long, value_name = "PORT")]
    pub health_check_port: Option<String>,
    /// Serve the dashboard [env: MONITORING_ENABLED] [default: true]
    #[arg(long, value_name = "BOOL")]
    pub monitoring_enabled: Option<String>,
    /// Address for the dashboard [env: MONITORING_HOST] [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub monitoring_host: Option<String>,
    /// Port for the dashboard; 0 picks a free one [env: MONITORING_PORT] [default: 8080]
    #[arg(long, value_name = "PORT")]
    pub monitoring_port: Option<String>,
    /// Serve the dashboard's files from this directory instead of the embedded copy
    /// [env: MONITORING_STATIC_DIR]
    #[arg(long, value_name = "DIR")]
    pub monitoring_static_dir: Option<String>,
}

/// An HTTP endpoint the agent may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub enabled: bool,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub events_socket: PathBuf,
    pub metrics: Endpoint,
    pub health: Endpoint,
    pub health_checks: HealthConfig,
    pub monitoring: Endpoint,
    pub dashboard: DashboardConfig,
    pub daemons: DaemonsConfig,
    /// Most event-pipe connections open at once.
    pub pipe_max_connections: usize,
    /// Settings this agent no longer reads, that were set: said once at start.
    pub ignored: Vec<&'static str>,
}

/// Settings of earlier versions that the agent does not use any more: health reports
/// Redis and Supabase as the daemons see them, so the agent needs neither's secrets.
const NO_LONGER_READ: &[&str] = &["REDIS_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Serve the page from here instead of the embedded copy.
    pub static_dir: Option<PathBuf>,
    pub max_clients: usize,
    /// Frames a slow client may have waiting before it loses some.
    pub client_queue: usize,
    /// Live events sent to each client per second, at most.
    pub events_per_second: u32,
}

fn flag<'a>(name: &'static str, value: &'a Option<String>) -> Option<(&'static str, &'a str)> {
    value.as_deref().map(|v| (name, v))
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn endpoint(
    s: &Settings,
    names: [&'static str; 3],
    flags: [Option<(&'static str, &str)>; 3],
    default_port: u16,
) -> Result<Endpoint, SettingError> {
    let [enabled, host, port] = flags;
    Ok(Endpoint {
        enabled: s.get(names[0], enabled, true)?,
        addr: SocketAddr::new(
            s.get(names[1], host, LOOPBACK)?,
            s.get(names[2], port, default_port)?,
        ),
    })
}

/// A check that a count lies in `min..=max`.
fn within(min: usize, max: usize) -> impl Fn(&usize) -> Result<(), String> {
    move |n| {
        if (min..=max).contains(n) {
            Ok(())
        } else {
            Err(format!("expected a whole number from {min} to {max}"))
        }
    }
}

fn percent(s: &Settings, key: &'static str, default: u16) -> Result<f64, SettingError> {
    s.get_checked(key, None, default, |p| match *p {
        1..=100 => Ok(()),
        _ => Err("expected a percentage from 1 to 100".into()),
    })
    .map(f64::from)
}

fn millis(
    s: &Settings,
    key: &'static str,
    default: u64,
    min: u64,
) -> Result<Duration, SettingError> {
    s.get_checked(key, None, default, |ms| {
        if *ms >= min {
            Ok(())
        } else {
            Err(format!("expected at least {min} ms"))
        }
    })
    .map(Duration::from_millis)
}

/// `new`, unless only its former name `old` is set.
fn either(env: &dyn EnvSource, new: &'static str, old: &'static str) -> &'static str {
    match (env.get(new), env.get(old)) {
        (None, Some(_)) => old,
        _ => new,
    }
}

/// A setting whose value may hold a secret: a bad one is named, never shown.
fn redacted(key: &'static str, why: &str) -> SettingError {
    SettingError {
        key,
        flag: None,
        value: "<redacted>".into(),
        why: why.into(),
    }
}

fn health_checks(s: &Settings, env: &dyn EnvSource) -> Result<HealthConfig, SettingError> {
    let timezone: String = s.get("EXAI_TIMEZONE", None, "Australia/Melbourne".to_string())?;
    let timezone = timezone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| SettingError {
            key: "EXAI_TIMEZONE",
            flag: None,
            value: timezone.clone(),
            why: "expected an IANA time zone such as Australia/Melbourne or UTC".into(),
        })?;
    let disk_degraded_percent = percent(s, "EXAI_HEALTH_DISK_DEGRADED_PERCENT", 85)?;
    let disk_unhealthy_percent = percent(s, "EXAI_HEALTH_DISK_UNHEALTHY_PERCENT", 95)?;
    let memory_degraded_percent = percent(s, "EXAI_HEALTH_MEMORY_DEGRADED_PERCENT", 90)?;
    let memory_unhealthy_percent = percent(s, "EXAI_HEALTH_MEMORY_UNHEALTHY_PERCENT", 95)?;
    let probe_redis_url = env
        .get("EXAI_HEALTH_PROBE_REDIS_URL")
        .filter(|u| !u.trim().is_empty());
    if let Some(url) = &probe_redis_url {
        if redis::parse_redis_url(url).is_none() {
            return Err(redacted(
                "EXAI_HEALTH_PROBE_REDIS_URL",
                "expected redis://[:password@]host[:port][/db]",
            ));
        }
    }
    let supabase_url = env
        .get("EXAI_HEALTH_PROBE_SUPABASE_URL")
        .filter(|u| !u.trim().is_empty());
    let supabase_key = env
        .get("EXAI_HEALTH_PROBE_SUPABASE_KEY")
        .filter(|k| !k.trim().is_empty());
    let probe_supabase = match (supabase_url, supabase_key) {
        (Some(url), Some(key)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                // It may carry credentials: named, not shown.
                return Err(redacted(
                    "EXAI_HEALTH_PROBE_SUPABASE_URL",
                    "expected an http:// or https:// URL",
                ));
            }
            Some((url, key))
        }
        (Some(_), None) => {
            return Err(redacted(
                "EXAI_HEALTH_PROBE_SUPABASE_KEY",
                "must be set when EXAI_HEALTH_PROBE_SUPABASE_URL is",
            ))
        }
        _ => None,
    };
    let timeout = millis(s, "EXAI_HEALTH_TIMEOUT_MS", 1000, 10)?;
    Ok(HealthConfig {
        interval: millis(s, "EXAI_HEALTH_INTERVAL_MS", 5000, 50)?,
        timeout,
        timezone,
        disk_path: s.get("EXAI_HEALTH_DISK_PATH", None, PathBuf::from("/"))?,
        disk_degraded_percent,
        disk_unhealthy_percent: disk_unhealthy_percent.max(disk_degraded_percent),
        memory_degraded_percent,
        memory_unhealthy_percent: memory_unhealthy_percent.max(memory_degraded_percent),
        agent_memory_mb: s.get("EXAI_HEALTH_AGENT_MEMORY_MB", None, 512u64)?,
        daemon_silent_after: millis(s, "EXAI_HEALTH_DAEMON_SILENT_MS", 5000, 1000)?,
        probe_redis_url,
        probe_supabase,
    })
}

impl AgentConfig {
    pub fn load(env: &dyn EnvSource, flags: &Flags) -> Result<Self, SettingError> {
        let s = Settings::new(env);
        let health = endpoint(
            &s,
            [
                "HEALTH_CHECK_ENABLED",
                "HEALTH_CHECK_HOST",
                "HEALTH_CHECK_PORT",
            ],
            [
                flag("--health-check-enabled", &flags.health_check_enabled),
                flag("--health-check-host", &flags.health_check_host),
                flag("--health-check-port", &flags.health_check_port),
            ],
            8081,
        )?;
        let monitoring = endpoint(
            &s,
            ["MONITORING_ENABLED", "MONITORING_HOST", "MONITORING_PORT"],
            [
                flag("--monitoring-enabled", &flags.monitoring_enabled),
                flag("--monitoring-host", &flags.monitoring_host),
                flag("--monitoring-port", &flags.monitoring_port),
            ],
            8080,
        )?;
        let static_dir: Option<PathBuf> = match s.get(
            "MONITORING_STATIC_DIR",
            flag("--monitoring-static-dir", &flags.monitoring_static_dir),
            PathBuf::new(),
        )? {
            dir if dir.as_os_str().is_empty() => None,
            dir => Some(dir),
        };
        let nonzero = |n: &usize| match *n {
            0 => Err("expected at least 1".to_string()),
            _ => Ok(()),
        };
        Ok(Self {
            health,
            health_checks: health_checks(&s, env)?,
            monitoring,
            dashboard: DashboardConfig {
                static_dir,
                max_clients: s.get_checked(
                    "MONITORING_MAX_CLIENTS",
                    None,
                    100usize,
                    within(1, 10_000),
                )?,
                client_queue: s.get_checked(
                    "MONITORING_CLIENT_QUEUE",
                    None,
                    64usize,
                    within(1, 4096),
                )?,
                events_per_second: s.get_checked(
                    "MONITORING_EVENTS_PER_SECOND",
                    None,
                    50u32,
                    |n| within(4, 100_000)(&(*n as usize)),
                )?,
            },
            daemons: DaemonsConfig {
                ttl: Duration::from_secs(s.get_checked(
                    either(
                        env,
                        "EXAI_METRICS_DAEMON_TTL_S",
                        "EXAI_METRICS_INSTANCE_TTL_S",
                    ),
                    None,
                    600u64,
                    |ttl| match *ttl {
                        0 => Err("expected at least 1 second".to_string()),
                        _ => Ok(()),
                    },
                )?),
                max_daemons: s.get_checked(
                    either(
                        env,
                        "EXAI_METRICS_MAX_DAEMONS",
                        "EXAI_METRICS_MAX_INSTANCES",
                    ),
                    None,
                    64usize,
                    nonzero,
                )?,
                max_models: s.get_checked(
                    "EXAI_METRICS_MAX_MODELS",
                    None,
                    64usize,
                    within(1, 1000),
                )?,
            },
            pipe_max_connections: s.get_checked(
                "EXAI_PIPE_MAX_CONNECTIONS",
                None,
                256usize,
                within(1, 65_536),
            )?,
            ignored: NO_LONGER_READ
                .iter()
                .copied()
                .filter(|key| env.get(key).is_some_and(|v| !v.trim().is_empty()))
                .collect(),
            events_socket: s.get(
                "EXAI_EVENTS_SOCKET",
                flag("--events-socket", &flags.events_socket),
                PathBuf::from(DEFAULT_EVENTS_SOCKET),
            )?,
            metrics: Endpoint {
                enabled: s.get(
                    "METRICS_ENABLED",
                    flag("--metrics-enabled", &flags.metrics_enabled),
                    true,
                )?,
                addr: SocketAddr::new(
                    s.get(
                        "METRICS_HOST",
                        flag("--metrics-host", &flags.metrics_host),
                        LOOPBACK,
                    )?,
                    s.get(
                        "METRICS_PORT",
                        flag("--metrics-port", &flags.metrics_port),
                        8000u16,
                    )?,
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_ports_on_loopback() {
        let config = AgentConfig::load(&[("X", "1")], &Flags::default()).unwrap();
        for (endpoint, port) in [
            (config.metrics, 8000),
            (config.health, 8081),
            (config.monitoring, 8080),
        ] {
            assert_eq!(
                endpoint,
                Endpoint {
                    enabled: true,
                    addr: SocketAddr::new(LOOPBACK, port)
                }
            );
        }
        assert_eq!(
            config.health_checks.timezone,
            chrono_tz::Australia::Melbourne
        );
        assert_eq!(config.health_checks.disk_degraded_percent, 85.0);
        assert_eq!(config.health_checks.disk_unhealthy_percent, 95.0);
        assert_eq!(config.events_socket, PathBuf::from("/tmp/exai/events.sock"));
    }

    #[test]
    fn flags_override_and_bad_values_are_named() {
        let env = [("METRICS_HOST", "0.0.0.0"), ("METRICS_PORT", "9000")];
        let flags = Flags {
            metrics_port: Some("9100".into()),
            ..Flags::default()
        };
        let config = AgentConfig::load(&env, &flags).unwrap();
        assert_eq!(config.metrics.addr, "0.0.0.0:9100".parse().unwrap());
        let err =
            AgentConfig::load(&[("METRICS_ENABLED", "sometimes")], &Flags::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "METRICS_ENABLED=\"sometimes\": expected true or false"
        );
        let err =
            AgentConfig::load(&[("EXAI_TIMEZONE", "Mars/Olympus")], &Flags::default()).unwrap_err();
        assert_eq!(err.key, "EXAI_TIMEZONE");
    }

    #[test]
    fn secrets_in_bad_settings_are_not_echoed() {
        let err = AgentConfig::load(
            &[("EXAI_HEALTH_PROBE_REDIS_URL", "http://:hunter2@host")],
            &Flags::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("EXAI_HEALTH_PROBE_REDIS_URL"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = AgentConfig::load(
            &[("EXAI_HEALTH_PROBE_SUPABASE_URL", "https://x.supabase.co")],
            &Flags::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "EXAI_HEALTH_PROBE_SUPABASE_KEY");
        let config = AgentConfig::load(
            &[
                ("EXAI_HEALTH_PROBE_SUPABASE_URL", "https://x.supabase.co"),
                ("EXAI_HEALTH_PROBE_SUPABASE_KEY", "sekrit-service-role"),
            ],
            &Flags::default(),
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("sekrit"));
    }

    #[test]
    fn the_daemons_secrets_are_not_read() {
        let config = AgentConfig::load(
            &[
                ("REDIS_URL", "redis://:hunter2@redis:6379"),
                ("SUPABASE_SERVICE_ROLE_KEY", "sekrit"),
                ("EXAI_METRICS_INSTANCE_TTL_S", "30"),
            ],
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(config.ignored, ["REDIS_URL", "SUPABASE_SERVICE_ROLE_KEY"]);
        assert_eq!(config.health_checks.probe_redis_url, None);
        assert_eq!(
            config.daemons.ttl,
            Duration::from_secs(30),
            "the former name still works"
        );
        assert_eq!(config.daemons.max_models, 64);
    }
}
