//! Where conversations live (memory or Redis) and whether turns are persisted to Supabase.

use super::{at_least, flag, Flags};
use crate::providers::Secret;
pub use crate::redact::redact_url;
use exai_process::settings::{EnvSource, SettingError, Settings};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// `REDIS_URL`; `None` keeps threads in memory. A secret: it may carry a password.
    pub redis_url: Option<Secret>,
    /// Longest one storage read or write may take before the chat goes on without it,
    /// and the Redis connect and response timeout.
    pub timeout: Duration,
    /// Where turns Redis could not take wait for it (EXAI_STORAGE_JOURNAL_DIR); `None`
    /// means [`StorageConfig::journal_dir`]'s default, which needs the daemon's name.
    pub journal_dir: Option<PathBuf>,
    /// The state directory the default journal goes in, beside the spool's default.
    pub journal_home: PathBuf,
    /// Past this many bytes of kept turns a new one is refused (and counted).
    pub journal_max_bytes: u64,
}

impl StorageConfig {
    /// The journal's directory: EXAI_STORAGE_JOURNAL_DIR, or `journal/<daemon name>` in
    /// the state directory, so that daemons side by side each have their own.
    pub fn journal_dir(&self, daemon_name: &str) -> PathBuf {
        self.journal_dir
            .clone()
            .unwrap_or_else(|| self.journal_home.join("journal").join(daemon_name))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SupabaseConfig {
    /// The project URL, e.g. `https://xyz.supabase.co`; `/rest/v1/…` is appended.
    pub url: String,
    pub service_role_key: Secret,
    /// Durable spool of records waiting for upload.
    pub spool_dir: PathBuf,
    /// Past this many bytes on disk new records are refused (and counted) until the
    /// uploader catches up.
    pub spool_max_bytes: u64,
    /// Records sent in one upload (each record is a conversation row and two messages).
    pub batch_records: usize,
    /// How long one upload request may take.
    pub request_timeout: Duration,
    /// After Supabase rejects the key (401/403), how long uploads pause before one try.
    pub auth_retry: Duration,
    /// Longest a chat waits for its turn's spool write (EXAI_SPOOL_WRITE_TIMEOUT_MS);
    /// past it the chat answers and says the turn is queued, not yet on disk.
    pub write_timeout: Duration,
    /// Test hook (EXAI_SPOOL_TEST_HOLD_FILE, debug builds only): while this file exists
    /// the spool's writer holds, as a stalled disk would.
    pub test_hold_file: Option<PathBuf>,
}

/// The daemon's state directory, home of the spool and the journal by default: durable
/// across reboots, unlike `/tmp`.
fn state_dir(env: &dyn EnvSource) -> PathBuf {
    match env.get("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(state) => PathBuf::from(state).join("exai"),
        None => match env.get("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/state/exai"),
            None => PathBuf::from("/var/tmp/exai"),
        },
    }
}

pub(super) fn storage(
    env: &dyn EnvSource,
    s: &Settings,
    flags: &Flags,
) -> Result<StorageConfig, SettingError> {
    let url: String = s
        .get_checked(
            "REDIS_URL",
            flag("--redis-url", &flags.redis_url),
            String::new(),
            |u| {
                let u = u.trim();
                if u.is_empty()
                    || u.starts_with("redis://")
                    || u.starts_with("unix://")
                    || u.starts_with("redis+unix://")
                {
                    Ok(())
                } else if u.starts_with("rediss://") {
                    Err("TLS (rediss://) is not built in; use redis:// or unix://".into())
                } else {
                    Err("expected a redis://host:port[/db] or unix:///path URL".into())
                }
            },
        )
        // The URL may hold a password: an error shows its scheme only.
        .map_err(|mut e| {
            e.value = redact_url(&e.value);
            e
        })?;
    let timeout_ms = s.get_checked("EXAI_STORAGE_TIMEOUT_MS", None, 500u64, |ms| match ms {
        10..=60_000 => Ok(()),
        _ => Err("expected 10 to 60000 ms".into()),
    })?;
    let journal_dir: String = s.get("EXAI_STORAGE_JOURNAL_DIR", None, String::new())?;
    Ok(StorageConfig {
        redis_url: Some(url.trim().to_string())
            .filter(|u| !u.is_empty())
            .map(Secret::new),
        timeout: Duration::from_millis(timeout_ms),
        journal_dir: Some(journal_dir.trim())
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        journal_home: state_dir(env),
        journal_max_bytes: s.get_checked(
            "EXAI_STORAGE_JOURNAL_MAX_BYTES",
            None,
            64u64 << 20,
            |n| match n {
                65_536.. => Ok(()),
                _ => Err("must be at least 65536 bytes".into()),
            },
        )?,
    })
}

pub(super) fn supabase(
    env: &dyn EnvSource,
    s: &Settings,
    flags: &Flags,
) -> Result<Option<SupabaseConfig>, SettingError> {
    let url: String = s
        .get_checked("SUPABASE_URL", None, String::new(), |u| {
            if u.is_empty() || u.starts_with("http://") || u.starts_with("https://") {
                Ok(())
            } else {
                Err("expected an http:// or https:// URL".into())
            }
        })
        .map_err(|mut e| {
            e.value = redact_url(&e.value);
            e
        })?;
    let key = env
        .get("SUPABASE_SERVICE_ROLE_KEY")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    let (url, key) = match (url.trim(), key) {
        ("", None) => return Ok(None),
        ("", Some(_)) => return Err(SettingError {
            key: "SUPABASE_URL",
            flag: None,
            value: String::new(),
            why:
                "must be set when SUPABASE_SERVICE_ROLE_KEY is (or unset both to turn Supabase off)"
                    .into(),
        }),
        (_, None) => {
            return Err(SettingError {
                key: "SUPABASE_SERVICE_ROLE_KEY",
                flag: None,
                value: String::new(),
                why: "must be set when SUPABASE_URL is (or unset both to turn Supabase off)".into(),
            })
        }
        (url, Some(key)) => (url.trim_end_matches('/').to_string(), key),
    };
    Ok(Some(SupabaseConfig {
        url,
        service_role_key: Secret::new(key),
        spool_dir: s.get(
            "EXAI_SPOOL_DIR",
            flag("--spool-dir", &flags.spool_dir),
            state_dir(env).join("spool"),
        )?,
        spool_max_bytes: s.get_checked(
            "EXAI_SPOOL_MAX_BYTES",
            None,
            256u64 << 20,
            |n| match n {
                65_536.. => Ok(()),
                _ => Err("must be at least 65536 bytes".into()),
            },
        )?,
        batch_records: s.get_checked("EXAI_SUPABASE_BATCH", None, 200usize, |n| match n {
            1..=5_000 => Ok(()),
            _ => Err("expected 1 to 5000 records".into()),
        })?,
        request_timeout: Duration::from_secs(s.get_checked(
            "EXAI_SUPABASE_TIMEOUT_SECS",
            None,
            10usize,
            at_least(1),
        )? as u64),
        auth_retry: Duration::from_secs(s.get_checked(
            "EXAI_SUPABASE_AUTH_RETRY_SECS",
            None,
            60usize,
            at_least(1),
        )? as u64),
        write_timeout: Duration::from_millis(s.get_checked(
            "EXAI_SPOOL_WRITE_TIMEOUT_MS",
            None,
            1000u64,
            |ms| match ms {
                1..=60_000 => Ok(()),
                _ => Err("expected 1 to 60000 ms".into()),
            },
        )?),
        test_hold_file: test_hold_file(s)?,
    }))
}

/// The spool's test hook, read only by debug builds (the tests'): a release build has
/// no such hook and ignores the variable.
#[cfg(debug_assertions)]
fn test_hold_file(s: &Settings) -> Result<Option<PathBuf>, SettingError> {
    Ok(
        Some(s.get("EXAI_SPOOL_TEST_HOLD_FILE", None, String::new())?)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    )
}

#[cfg(not(debug_assertions))]
fn test_hold_file(_: &Settings) -> Result<Option<PathBuf>, SettingError> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::{DaemonConfig, Flags};
    use super::*;

    #[test]
    fn memory_and_no_supabase_by_default() {
        let config = DaemonConfig::load(&[("HOME", "/home/u")], &Flags::default()).unwrap();
        assert_eq!(config.storage.redis_url, None);
        assert_eq!(config.storage.timeout, Duration::from_millis(500));
        assert_eq!(config.supabase, None);
    }

    #[test]
    fn the_journal_sits_beside_the_spool_one_per_daemon_unless_told() {
        let config = DaemonConfig::load(&[("HOME", "/home/u")], &Flags::default()).unwrap();
        assert_eq!(
            config.storage.journal_dir("host:8079"),
            PathBuf::from("/home/u/.local/state/exai/journal/host:8079")
        );
        assert_eq!(config.storage.journal_max_bytes, 64 << 20);
        let env = [
            ("XDG_STATE_HOME", "/state"),
            ("EXAI_STORAGE_JOURNAL_MAX_BYTES", "1048576"),
        ];
        let config = DaemonConfig::load(&env, &Flags::default()).unwrap();
        assert_eq!(
            config.storage.journal_dir("d1"),
            PathBuf::from("/state/exai/journal/d1")
        );
        assert_eq!(config.storage.journal_max_bytes, 1 << 20);
        let env = [("EXAI_STORAGE_JOURNAL_DIR", "/data/journal")];
        let config = DaemonConfig::load(&env, &Flags::default()).unwrap();
        assert_eq!(
            config.storage.journal_dir("d1"),
            PathBuf::from("/data/journal")
        );
        let env = [("EXAI_STORAGE_JOURNAL_MAX_BYTES", "100")];
        let err = DaemonConfig::load(&env, &Flags::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EXAI_STORAGE_JOURNAL_MAX_BYTES=\"100\": must be at least"),
            "{err}"
        );
    }

    #[test]
    fn redis_url_from_variable_or_flag_and_never_shown_with_its_password() {
        let env = [("REDIS_URL", "redis://127.0.0.1:6379/2")];
        let config = DaemonConfig::load(&env, &Flags::default()).unwrap();
        assert_eq!(
            config.storage.redis_url.as_ref().map(Secret::expose),
            Some("redis://127.0.0.1:6379/2")
        );
        let flags = Flags {
            redis_url: Some("unix:///run/redis.sock".into()),
            ..Flags::default()
        };
        let config = DaemonConfig::load(&env, &flags).unwrap();
        assert_eq!(
            config.storage.redis_url.as_ref().map(Secret::expose),
            Some("unix:///run/redis.sock")
        );
        let env = [("REDIS_URL", "http://:hunter2-pass@h:1")];
        let err = DaemonConfig::load(&env, &Flags::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("REDIS_URL=\"http://[redacted]@h:1\": expected a redis://"),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
        let env = [("REDIS_URL", "rediss://h:1")];
        let err = DaemonConfig::load(&env, &Flags::default()).unwrap_err();
        assert!(
            err.to_string().contains("TLS (rediss://) is not built in"),
            "{err}"
        );
        let env = [("EXAI_STORAGE_TIMEOUT_MS", "5")];
        let err = DaemonConfig::load(&env, &Flags::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("EXAI_STORAGE_TIMEOUT_MS=\"5\""),
            "{err}"
        );
    }

    #[test]
    fn supabase_needs_both_url_and_key_and_keeps_the_key_secret() {
        let env = [
            ("SUPABASE_URL", "https://abc.supabase.co/"),
            ("SUPABASE_SERVICE_ROLE_KEY", "service-key-123"),
            ("HOME", "/home/u"),
        ];
        let config = DaemonConfig::load(&env, &Flags::default()).unwrap();
        let supabase = config.supabase.unwrap();
        assert_eq!(supabase.url, "https://abc.supabase.co");
        assert_eq!(supabase.service_role_key.expose(), "service-key-123");
        assert_eq!(
            supabase.spool_dir,
            PathBuf::from("/home/u/.local/state/exai/spool")
        );
        assert_eq!(supabase.spool_max_bytes, 256 << 20);
        assert_eq!(supabase.auth_retry, Duration::from_secs(60));
        assert!(!format!("{supabase:?}").contains("service-key-123"));

        let flags = Flags {
            spool_dir: Some("/data/spool".into()),
            ..Flags::default()
        };
        let config = DaemonConfig::load(&env, &flags).unwrap();
        assert_eq!(
            config.supabase.unwrap().spool_dir,
            PathBuf::from("/data/spool")
        );
        let without_home = [env[0], env[1]];
        let config = DaemonConfig::load(&without_home, &Flags::default()).unwrap();
        assert_eq!(
            config.supabase.unwrap().spool_dir,
            PathBuf::from("/var/tmp/exai/spool")
        );

        let err = DaemonConfig::load(
            &[("SUPABASE_URL", "https://abc.supabase.co")],
            &Flags::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SUPABASE_SERVICE_ROLE_KEY=\"\": must be set when SUPABASE_URL is"),
            "{err}"
        );
        let err = DaemonConfig::load(&[("SUPABASE_SERVICE_ROLE_KEY", "k")], &Flags::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SUPABASE_URL=\"\": must be set"),
            "{err}"
        );
        let err = DaemonConfig::load(
            &[
                ("SUPABASE_URL", "https://abc.supabase.co"),
                ("SUPABASE_SERVICE_ROLE_KEY", "k"),
                ("EXAI_SPOOL_MAX_BYTES", "100"),
            ],
            &Flags::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EXAI_SPOOL_MAX_BYTES=\"100\": must be at least"),
            "{err}"
        );
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("redis://:pw@h:6379/0"),
            "redis://[redacted]@h:6379/0"
        );
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            redact_url("unix:///run/redis.sock?pass=pw"),
            "unix:///run/redis.sock?pass=[redacted]"
        );
    }
}
