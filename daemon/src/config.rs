//! The daemon's settings: environment variables, overridden by command-line flags.

mod connections;
mod persistence;
mod tasks;

pub use connections::{ConnectionLimits, BODY_GRACE};
pub use persistence::{redact_url, StorageConfig, SupabaseConfig};
pub use tasks::TaskConfig;

use crate::providers::catalogue::{self, Catalogue, Entry};
use crate::providers::models;
use crate::providers::models_file;
use crate::providers::Secret;
use exai_process::settings::{EnvSource, SettingError, Settings};
use exai_proto::{SampleClass, SamplingPolicy, DEFAULT_EVENTS_SOCKET};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Flags given on the command line; each overrides its environment variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// Local socket of the observability agent [env: EXAI_EVENTS_SOCKET] [default: /tmp/exai/events.sock]
    #[arg(long, value_name = "PATH")]
    pub events_socket: Option<String>,
    /// Capacity of the bounded event queue [env: EXAI_EVENT_QUEUE_CAPACITY] [default: 65536]
    #[arg(long, value_name = "EVENTS")]
    pub event_queue_capacity: Option<String>,
    /// Address MCP clients connect to [env: EXAI_WS_HOST] [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub ws_host: Option<String>,
    /// Port for MCP over WebSocket and Streamable HTTP; 0 picks a free one [env: EXAI_WS_PORT] [default: 8079]
    #[arg(long, value_name = "PORT")]
    pub ws_port: Option<String>,
    /// Model used when a client names none [env: DEFAULT_MODEL] [default: glm-4.5-flash]
    #[arg(long, value_name = "MODEL")]
    pub default_model: Option<String>,
    /// Keep conversations in Redis instead of memory [env: REDIS_URL] [default: none, in memory]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Durable spool of turns waiting for Supabase [env: EXAI_SPOOL_DIR] [default: ~/.local/state/exai/spool]
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<String>,
}

/// Where MCP clients connect and what they may do.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Required bearer token (EXAI_WS_TOKEN), at least 16 characters; `None` = open.
    pub token: Option<Secret>,
    /// Places for clients, deadlines, and the Streamable HTTP session bound.
    pub limits: ConnectionLimits,
    pub max_frame_bytes: usize,
    pub max_inflight_per_connection: usize,
    /// Tool results above this are cut, with a notice.
    pub max_result_bytes: usize,
    /// Host names besides loopback that /mcp answers to (EXAI_WS_ALLOWED_HOSTS).
    pub allowed_hosts: Vec<String>,
    /// How often a running tool call reports progress when asked (at most 5 s).
    pub progress_every: Duration,
}

/// Limits on model calls.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLimits {
    pub global: usize,
    pub kimi: usize,
    pub glm: usize,
    /// How long a call may wait for a free place before it is refused as busy.
    pub max_wait: Duration,
    /// Bytes of prompts that may wait for a place at once (EXAI_WAITING_BYTES_MAX):
    /// past it a call that would wait is refused at once, so a queue of large requests
    /// cannot take the daemon's memory.
    pub max_waiting_bytes: usize,
    pub call_timeout: Duration,
    pub max_attempts: u32,
}

/// One provider's endpoint and key.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    pub base_url: String,
    pub key: Option<Secret>,
    /// Why there is no key, naming the variables to set.
    pub missing_key: String,
}

/// The model catalogue at start, and how it is kept current.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelsConfig {
    /// The built-in table with EXAI_MODELS_FILE applied.
    pub entries: Vec<Entry>,
    /// EXAI_MODELS_FILE, when set.
    pub file: Option<PathBuf>,
    /// How often each provider's `GET /models` is asked (EXAI_MODELS_REFRESH_S); `None`
    /// never asks.
    pub refresh: Option<Duration>,
    /// DEFAULT_MODEL: a name, an alias or `provider:id`.
    pub default_model: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConversationConfig {
    pub ttl: Duration,
    pub max_turns: usize,
    /// Bytes of threads the in-memory store keeps (EXAI_MEMORY_STORE_MAX_BYTES); past it
    /// whole threads go, the least recently written first.
    pub memory_max_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// EXAI_DAEMON_NAME; by default [`default_daemon_name`] of the bound port.
    pub name: Option<String>,
    pub events_socket: PathBuf,
    pub event_queue_capacity: usize,
    pub sampling: SamplingPolicy,
    pub server: ServerConfig,
    pub limits: CallLimits,
    pub kimi: ProviderSettings,
    pub glm: ProviderSettings,
    pub models: ModelsConfig,
    pub tasks: TaskConfig,
    pub conversations: ConversationConfig,
    pub storage: StorageConfig,
    /// `None` unless both SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set.
    pub supabase: Option<SupabaseConfig>,
    /// At SIGTERM, how long `/readyz` answers 503 while everything is still served,
    /// before the daemon stops accepting (EXAI_DRAIN_S).
    pub drain: Duration,
    /// After the drain, how long model calls in flight may go on before they are
    /// cancelled and answered with an error (EXAI_SHUTDOWN_GRACE_S).
    pub shutdown_grace: Duration,
}

fn at_least(min: usize) -> impl FnOnce(&usize) -> Result<(), String> {
    move |n| {
        if *n >= min {
            Ok(())
        } else {
            Err(format!("must be at least {min}"))
        }
    }
}

fn flag<'a>(name: &'static str, value: &'a Option<String>) -> Option<(&'static str, &'a str)> {
    value.as_deref().map(|v| (name, v))
}

/// A key from the first of `names` that is set, e.g. KIMI_API_KEY, then MOONSHOT_API_KEY.
fn provider_settings(
    env: &dyn EnvSource,
    s: &Settings,
    url_key: &'static str,
    default_url: &str,
    names: [&str; 2],
) -> Result<ProviderSettings, SettingError> {
    let base_url: String = s
        .get_checked(url_key, None, default_url.to_string(), |u| {
            if u.starts_with("http://") || u.starts_with("https://") {
                Ok(())
            } else {
                Err("expected an http:// or https:// URL".into())
            }
        })
        // The URL may carry credentials: an error shows it redacted.
        .map_err(|mut e| {
            e.value = crate::redact::redact_url(&e.value);
            e
        })?;
    let key = names
        .iter()
        .find_map(|n| env.get(n).filter(|v| !v.trim().is_empty()))
        .map(|v| Secret::new(v.trim()));
    Ok(ProviderSettings {
        base_url,
        key,
        missing_key: format!("no API key: set {} (or {})", names[0], names[1]),
    })
}

/// Longest daemon name: the agent's `daemon` label value.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` can be a daemon's name: a label value and log field, so printable,
/// short and plain.
pub fn check_daemon_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} bytes"));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed: use letters, digits, '.', '_', ':' and '-'"
        )),
        None => Ok(()),
    }
}

/// The name a daemon goes by when EXAI_DAEMON_NAME is not set: its host name and port,
/// stable across restarts and distinct for daemons side by side.
pub fn default_daemon_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_NAME_LEN - 6)
        .collect();
    let host = if host.is_empty() { "localhost" } else { &host };
    format!("{host}:{port}")
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

/// EXAI_MODELS_FILE, EXAI_MODELS_REFRESH_S and DEFAULT_MODEL, which must name a model of
/// the table (or be `kimi:<id>` / `glm:<id>`).
fn models_config(s: &Settings, flags: &Flags) -> Result<ModelsConfig, SettingError> {
    let file: String = s.get("EXAI_MODELS_FILE", None, String::new())?;
    let file = (!file.trim().is_empty()).then(|| PathBuf::from(file.trim()));
    let entries = match &file {
        None => Catalogue::builtin(),
        Some(path) => {
            models_file::load(path, Catalogue::builtin()).map_err(|why| SettingError {
                key: "EXAI_MODELS_FILE",
                flag: None,
                value: path.display().to_string(),
                why,
            })?
        }
    };
    let refresh_s = s.get_checked("EXAI_MODELS_REFRESH_S", None, 3600u64, |n| match n {
        0..=604_800 => Ok(()),
        _ => Err("expected 0 (off) to 604800 seconds".into()),
    })?;
    let default_model = s.get(
        "DEFAULT_MODEL",
        flag("--default-model", &flags.default_model),
        models::DEFAULT_MODEL.to_string(),
    )?;
    let table = Catalogue::new(entries.clone());
    let known = match catalogue::parse(&default_model) {
        Ok(catalogue::Wanted::Direct(..) | catalogue::Wanted::Auto) => true,
        Ok(catalogue::Wanted::Named(name)) => table.find(name).is_some(),
        _ => false,
    };
    if !known {
        return Err(SettingError {
            key: "DEFAULT_MODEL",
            flag: flags.default_model.as_ref().map(|_| "--default-model"),
            value: default_model.clone(),
            why: format!(
                "unknown model; name one of {} (or an alias), or kimi:<id> / glm:<id>",
                table
                    .entries()
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(ModelsConfig {
        entries,
        file,
        refresh: (refresh_s > 0).then(|| Duration::from_secs(refresh_s)),
        default_model: default_model.trim().to_string(),
    })
}

impl DaemonConfig {
    pub fn load(env: &dyn EnvSource, flags: &Flags) -> Result<Self, SettingError> {
        let s = Settings::new(env);
        let name = match s.get::<String>("EXAI_DAEMON_NAME", None, String::new())? {
            n if n.is_empty() => None,
            n => {
                check_daemon_name(&n).map_err(|why| SettingError {
                    key: "EXAI_DAEMON_NAME",
                    flag: None,
                    value: n.clone(),
                    why,
                })?;
                Some(n)
            }
        };
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
        let token = match s.get::<String>("EXAI_WS_TOKEN", None, String::new())? {
            t if t.is_empty() => None,
            t if t.chars().count() < 16 => {
                return Err(SettingError {
                    key: "EXAI_WS_TOKEN",
                    flag: None,
                    value: "[redacted]".into(),
                    why: format!("must be at least 16 characters (got {})", t.chars().count()),
                })
            }
            t => Some(Secret::new(t)),
        };
        let server = ServerConfig {
            addr: SocketAddr::new(
                s.get(
                    "EXAI_WS_HOST",
                    flag("--ws-host", &flags.ws_host),
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                )?,
                s.get("EXAI_WS_PORT", flag("--ws-port", &flags.ws_port), 8079u16)?,
            ),
            token,
            limits: connections::load(env, &s)?,
            max_frame_bytes: s.get_checked(
                "EXAI_WS_MAX_FRAME_BYTES",
                None,
                4usize << 20,
                at_least(1024),
            )?,
            max_inflight_per_connection: s.get_checked(
                "EXAI_WS_MAX_INFLIGHT_PER_CONNECTION",
                None,
                8usize,
                at_least(1),
            )?,
            max_result_bytes: s.get_checked(
                "EXAI_MAX_RESULT_BYTES",
                None,
                900usize << 10,
                at_least(1024),
            )?,
            allowed_hosts: s
                .get("EXAI_WS_ALLOWED_HOSTS", None, String::new())?
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect(),
            progress_every: Duration::from_millis(s.get_checked(
                "EXAI_PROGRESS_INTERVAL_MS",
                None,
                2000u64,
                |ms| match ms {
                    50..=5000 => Ok(()),
                    _ => {
                        Err("expected 50 to 5000 ms (progress must come at most 5 s apart)".into())
                    }
                },
            )?),
        };
        let limits = CallLimits {
            global: s.get_checked("EXAI_WS_GLOBAL_MAX_INFLIGHT", None, 24usize, at_least(1))?,
            kimi: s.get_checked("EXAI_WS_KIMI_MAX_INFLIGHT", None, 6usize, at_least(1))?,
            glm: s.get_checked("EXAI_WS_GLM_MAX_INFLIGHT", None, 4usize, at_least(1))?,
            max_wait: Duration::from_millis(s.get("EXAI_INFLIGHT_WAIT_MS", None, 10_000u64)?),
            max_waiting_bytes: s.get_checked(
                "EXAI_WAITING_BYTES_MAX",
                None,
                64usize << 20,
                at_least(1024),
            )?,
            call_timeout: Duration::from_secs(s.get_checked(
                "EXAI_PROVIDER_TIMEOUT_SECS",
                None,
                300usize,
                at_least(1),
            )? as u64),
            max_attempts: s.get_checked("EXAI_PROVIDER_MAX_ATTEMPTS", None, 3usize, at_least(1))?
                as u32,
        };
        let kimi = provider_settings(
            env,
            &s,
            "KIMI_API_URL",
            "https://api.moonshot.ai/v1",
            ["KIMI_API_KEY", "MOONSHOT_API_KEY"],
        )?;
        let glm = provider_settings(
            env,
            &s,
            "GLM_API_URL",
            "https://api.z.ai/api/paas/v4",
            ["GLM_API_KEY", "ZHIPUAI_API_KEY"],
        )?;
        let models = models_config(&s, flags)?;
        let tasks = tasks::load(&s)?;
        let conversations = ConversationConfig {
            ttl: Duration::from_secs(
                s.get_checked("CONVERSATION_TIMEOUT_HOURS", None, 3usize, at_least(1))? as u64
                    * 3600,
            ),
            max_turns: s.get_checked("MAX_CONVERSATION_TURNS", None, 20usize, at_least(1))?,
            memory_max_bytes: s.get_checked(
                "EXAI_MEMORY_STORE_MAX_BYTES",
                None,
                128usize << 20,
                at_least(1 << 20),
            )?,
        };
        let storage = persistence::storage(env, &s, flags)?;
        let supabase = persistence::supabase(env, &s, flags)?;
        let seconds = |n: &u64| match n {
            0..=3600 => Ok(()),
            _ => Err("expected 0 to 3600 seconds".to_string()),
        };
        // Two checks of a balancer at HAProxy's default interval (2 s), and a second more.
        let drain = Duration::from_secs(s.get_checked("EXAI_DRAIN_S", None, 5u64, seconds)?);
        let shutdown_grace =
            Duration::from_secs(s.get_checked("EXAI_SHUTDOWN_GRACE_S", None, 8u64, seconds)?);
        Ok(Self {
            name,
            events_socket,
            event_queue_capacity,
            sampling,
            server,
            limits,
            kimi,
            glm,
            models,
            tasks,
            conversations,
            storage,
            supabase,
            drain,
            shutdown_grace,
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
    fn providers_without_keys_say_which_variable_to_set() {
        let config =
            DaemonConfig::load(&[("MOONSHOT_API_KEY", "sk-123")], &Flags::default()).unwrap();
        assert_eq!(config.kimi.key.as_ref().map(Secret::expose), Some("sk-123"));
        assert_eq!(config.glm.key, None);
        assert_eq!(
            config.glm.missing_key,
            "no API key: set GLM_API_KEY (or ZHIPUAI_API_KEY)"
        );
        assert_eq!(config.models.default_model, "glm-4.5-flash");
        assert_eq!(config.models.refresh, Some(Duration::from_secs(3600)));
        assert_eq!(
            (config.tasks.max, config.tasks.ttl_max),
            (64, Duration::from_secs(3600))
        );
        assert_eq!(config.server.addr, "127.0.0.1:8079".parse().unwrap());
        assert_eq!(
            (config.limits.global, config.limits.kimi, config.limits.glm),
            (24, 6, 4)
        );
    }

    #[test]
    fn a_daemon_name_is_a_plain_label_value() {
        let config =
            DaemonConfig::load(&[("EXAI_DAEMON_NAME", "api-1.eu:8079")], &Flags::default())
                .unwrap();
        assert_eq!(config.name.as_deref(), Some("api-1.eu:8079"));
        let err = DaemonConfig::load(&[("EXAI_DAEMON_NAME", "a b")], &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("EXAI_DAEMON_NAME=\"a b\": ' ' is not allowed"),
            "{err}"
        );
        assert!(check_daemon_name(&"x".repeat(65)).is_err());
        let default = default_daemon_name(8079);
        assert!(default.ends_with(":8079"), "{default}");
        assert_eq!(check_daemon_name(&default), Ok(()));
    }

    #[test]
    fn a_short_token_is_refused_without_printing_it() {
        let err = DaemonConfig::load(&[("EXAI_WS_TOKEN", "short-secret")], &Flags::default())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("EXAI_WS_TOKEN=\"[redacted]\": must be at least 16 characters"),
            "{text}"
        );
        assert!(!text.contains("short-secret"));
        let err = DaemonConfig::load(&[("DEFAULT_MODEL", "gpt-5")], &Flags::default()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "DEFAULT_MODEL=\"gpt-5\": unknown model; name one of kimi-k2.6, kimi-k2.5"
            ),
            "{err}"
        );
        let direct =
            DaemonConfig::load(&[("DEFAULT_MODEL", "glm:glm-9")], &Flags::default()).unwrap();
        assert_eq!(direct.models.default_model, "glm:glm-9");
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

    #[test]
    fn a_models_file_and_the_refresh_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.json");
        std::fs::write(
            &path,
            r#"{"models": [{"name": "glm-5.1", "provider": "glm", "aliases": ["g51"]}]}"#,
        )
        .unwrap();
        let env = [
            ("EXAI_MODELS_FILE", path.to_str().unwrap()),
            ("EXAI_MODELS_REFRESH_S", "0"),
            ("DEFAULT_MODEL", "g51"),
        ];
        let config = DaemonConfig::load(&env, &Flags::default()).unwrap();
        assert!(config.models.entries.iter().any(|m| m.name == "glm-5.1"));
        assert_eq!(config.models.refresh, None);
        std::fs::write(&path, r#"{"models": [{"name": "x"}]}"#).unwrap();
        let err = DaemonConfig::load(&env, &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("EXAI_MODELS_FILE=") && err.contains("missing field `provider`"),
            "{err}"
        );
    }
}
