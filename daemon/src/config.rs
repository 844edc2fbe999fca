//! The daemon's settings: environment variables, overridden by command-line flags.

use exai_proto::settings::{EnvSource, SettingError, Settings};
use exai_proto::{SampleClass, SamplingPolicy, DEFAULT_EVENTS_SOCKET};
use std::path::PathBuf;

/// Flags given on the command line; each overrides its environment variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// Local socket of the observability agent [env: EXAI_EVENTS_SOCKET] [default: /tmp/exai/events.sock]
    #[arg(long, value_name = "PATH")]
    pub events_socket: Option<String>,
    /// Capacity of the bounded event queue [env: EXAI_EVENT_QUEUE_CAPACITY] [default: 65536]
    #[arg(long, value_name = "EVENTS")]
    pub event_queue_capacity: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub events_socket: PathBuf,
    pub event_queue_capacity: usize,
    pub sampling: SamplingPolicy,
}

/// The environment variable holding each class's "1 in N" rate.
pub fn sampling_variable(class: SampleClass) -> &'static str {
    match class {
        SampleClass::WsMessages => "EXAI_SAMPLE_WS_MESSAGES",
        SampleClass::Requests => "EXAI_SAMPLE_REQUESTS",
        SampleClass::StorageReads => "EXAI_SAMPLE_STORAGE_READS",
        SampleClass::StorageWrites => "EXAI_SAMPLE_STORAGE_WRITES",
        SampleClass::Supabase => "EXAI_SAMPLE_SUPABASE",
        SampleClass::ProviderCalls => "EXAI_SAMPLE_PROVIDER_CALLS",
        SampleClass::Connections => "EXAI_SAMPLE_CONNECTIONS",
    }
}

impl DaemonConfig {
    pub fn load(env: &dyn EnvSource, flags: &Flags) -> Result<Self, SettingError> {
        let s = Settings::new(env);
        let events_socket = s.get(
            "EXAI_EVENTS_SOCKET",
            flags
                .events_socket
                .as_deref()
                .map(|v| ("--events-socket", v)),
            PathBuf::from(DEFAULT_EVENTS_SOCKET),
        )?;
        let event_queue_capacity = s.get_checked(
            "EXAI_EVENT_QUEUE_CAPACITY",
            flags
                .event_queue_capacity
                .as_deref()
                .map(|v| ("--event-queue-capacity", v)),
            65_536usize,
            |n| match n {
                1..=16_777_216 => Ok(()),
                _ => Err("expected from 1 to 16777216 events".into()),
            },
        )?;
        let mut sampling = SamplingPolicy::default();
        for class in SampleClass::ALL {
            let rate = s.get(sampling_variable(*class), None, sampling.rate(*class))?;
            sampling = sampling.with_rate(*class, rate);
        }
        Ok(Self {
            events_socket,
            event_queue_capacity,
            sampling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_environment() {
        let config = DaemonConfig::load(&[("UNRELATED", "1")], &Flags::default()).unwrap();
        assert_eq!(config.events_socket, PathBuf::from("/tmp/exai/events.sock"));
        assert_eq!(config.sampling, SamplingPolicy::default());
    }

    #[test]
    fn sampling_rates_and_flags_apply() {
        let env = [
            ("EXAI_SAMPLE_WS_MESSAGES", "100"),
            ("EXAI_EVENTS_SOCKET", "/run/a.sock"),
        ];
        let flags = Flags {
            events_socket: Some("/run/b.sock".into()),
            ..Flags::default()
        };
        let config = DaemonConfig::load(&env, &flags).unwrap();
        assert_eq!(config.sampling.rate(SampleClass::WsMessages), 100);
        assert_eq!(config.events_socket, PathBuf::from("/run/b.sock"));
    }

    #[test]
    fn a_bad_rate_is_named() {
        let err = DaemonConfig::load(&[("EXAI_SAMPLE_STORAGE_READS", "-1")], &Flags::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EXAI_SAMPLE_STORAGE_READS=\"-1\""),
            "{err}"
        );
    }
}
