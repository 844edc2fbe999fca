//! Typed settings read from environment variables, with command-line flags overriding
//! them: both binaries read every setting the same way (a flag beats the variable, the
//! variable the default; empty means unset; a bad value names itself). The source is a
//! trait so parsing is tested with a map instead of the real process environment.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// Where settings come from.
pub trait EnvSource {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl<const N: usize> EnvSource for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }
}

/// A setting that could not be used, naming where the bad value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub key: &'static str,
    /// The command-line flag, when the value came from one.
    pub flag: Option<&'static str>,
    pub value: String,
    pub why: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flag {
            Some(flag) => write!(
                f,
                "{flag}={:?} (overriding {}): {}",
                self.value, self.key, self.why
            ),
            None => write!(f, "{}={:?}: {}", self.key, self.value, self.why),
        }
    }
}

impl std::error::Error for SettingError {}

/// A type a setting can hold.
pub trait SettingValue: Sized {
    fn parse_setting(raw: &str) -> Result<Self, String>;
}

impl SettingValue for bool {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        }
    }
}

macro_rules! integer_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn parse_setting(raw: &str) -> Result<Self, String> {
                raw.trim().parse().map_err(|_| {
                    format!("expected a whole number from {} to {}", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )*};
}
integer_setting!(u16, u32, u64, usize);

impl SettingValue for String {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
}

impl SettingValue for PathBuf {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("expected a path".into());
        }
        Ok(PathBuf::from(raw))
    }
}

impl SettingValue for IpAddr {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let raw = if raw == "localhost" { "127.0.0.1" } else { raw };
        raw.parse()
            .map_err(|_| "expected an IP address such as 127.0.0.1 or 0.0.0.0".into())
    }
}

/// Reads settings: a flag's value wins over the variable, the variable over the default.
pub struct Settings<'a> {
    env: &'a dyn EnvSource,
}

impl<'a> Settings<'a> {
    pub fn new(env: &'a dyn EnvSource) -> Self {
        Self { env }
    }

    /// The value of `key`, or of its flag when one was given on the command line.
    pub fn get<T: SettingValue>(
        &self,
        key: &'static str,
        flag: Option<(&'static str, &str)>,
        default: T,
    ) -> Result<T, SettingError> {
        let (raw, flag) = match flag {
            Some((name, value)) => (value.to_string(), Some(name)),
            None => match self.env.get(key) {
                Some(value) if !value.is_empty() => (value, None),
                _ => return Ok(default),
            },
        };
        T::parse_setting(&raw).map_err(|why| SettingError {
            key,
            flag,
            value: raw,
            why,
        })
    }

    /// Like [`get`](Self::get), then checks the value with `valid`.
    pub fn get_checked<T: SettingValue>(
        &self,
        key: &'static str,
        flag: Option<(&'static str, &str)>,
        default: T,
        valid: impl FnOnce(&T) -> Result<(), String>,
    ) -> Result<T, SettingError> {
        let value = self.get(key, flag, default)?;
        match valid(&value) {
            Ok(()) => Ok(value),
            Err(why) => {
                let raw = flag
                    .map(|(_, v)| v.to_string())
                    .or_else(|| self.env.get(key))
                    .unwrap_or_default();
                Err(SettingError {
                    key,
                    flag: flag.map(|(name, _)| name),
                    value: raw,
                    why,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_variable_beats_default() {
        let env = [("METRICS_PORT", "9100")];
        let s = Settings::new(&env);
        assert_eq!(s.get("METRICS_PORT", None, 8000u16).unwrap(), 9100);
        assert_eq!(
            s.get("METRICS_PORT", Some(("--metrics-port", "9200")), 8000u16)
                .unwrap(),
            9200
        );
        assert_eq!(s.get("HEALTH_CHECK_PORT", None, 8081u16).unwrap(), 8081);
    }

    #[test]
    fn a_bad_value_names_its_variable_and_value() {
        let env = [("METRICS_PORT", "eighty")];
        let err = Settings::new(&env)
            .get("METRICS_PORT", None, 8000u16)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "METRICS_PORT=\"eighty\": expected a whole number from 0 to 65535"
        );
        let err = Settings::new(&env)
            .get("METRICS_PORT", Some(("--metrics-port", "x")), 1u16)
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("--metrics-port=\"x\" (overriding METRICS_PORT)"));
    }

    #[test]
    fn checked_values_report_the_rule_they_broke() {
        let env = [("EXAI_EVENT_QUEUE_CAPACITY", "0")];
        let err = Settings::new(&env)
            .get_checked("EXAI_EVENT_QUEUE_CAPACITY", None, 1usize, |v| {
                if *v == 0 {
                    Err("must be at least 1".into())
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "EXAI_EVENT_QUEUE_CAPACITY=\"0\": must be at least 1"
        );
    }

    #[test]
    fn booleans_and_hosts_parse_the_usual_spellings() {
        assert!(bool::parse_setting("On").unwrap());
        assert!(!bool::parse_setting("0").unwrap());
        assert!(bool::parse_setting("maybe").is_err());
        assert_eq!(
            IpAddr::parse_setting("localhost").unwrap().to_string(),
            "127.0.0.1"
        );
    }
}
