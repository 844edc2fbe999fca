//! The agent's settings: environment variables (names follow the seed), overridden by
//! command-line flags.

use exai_proto::settings::{EnvSource, SettingError, Settings};
use exai_proto::DEFAULT_EVENTS_SOCKET;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

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
}

/// An HTTP endpoint the agent may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub enabled: bool,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub events_socket: PathBuf,
    pub metrics: Endpoint,
}

fn flag<'a>(name: &'static str, value: &'a Option<String>) -> Option<(&'static str, &'a str)> {
    value.as_deref().map(|v| (name, v))
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl AgentConfig {
    pub fn load(env: &dyn EnvSource, flags: &Flags) -> Result<Self, SettingError> {
        let s = Settings::new(env);
        Ok(Self {
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
        assert_eq!(
            config.metrics,
            Endpoint {
                enabled: true,
                addr: "127.0.0.1:8000".parse().unwrap()
            }
        );
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
    }
}
