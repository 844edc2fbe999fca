//! Settings for the fake, from `--flags` or `FAKE_LLM_*` variables (flags win).

use super::flavour::Flavour;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeLlmConfig {
    /// The bearer key to require; `None` accepts any key, but never a missing one.
    pub key: Option<String>,
    /// Delay before every response starts.
    pub latency: Duration,
    /// Streaming pace; 0 sends chunks as fast as the socket takes them.
    pub tokens_per_sec: f64,
    /// How long every request reasons before it answers (`[think:MS]` adds to it);
    /// a request with `"thinking": {"type": "disabled"}` does not.
    pub think: Duration,
    /// Models served besides the daemon's built-in ones.
    pub extra_models: Vec<(Flavour, String)>,
    /// Providers whose `GET …/models` is not there (404).
    pub no_model_list: Vec<Flavour>,
}

impl FakeLlmConfig {
    /// The pause between streamed chunks.
    pub fn pace(&self) -> Option<Duration> {
        (self.tokens_per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / self.tokens_per_sec))
    }

    /// The model ids `flavour` serves: the daemon's built-in table, then the extras.
    pub fn served(&self, flavour: Flavour) -> Vec<String> {
        exai_daemon::providers::MODELS
            .iter()
            .filter(|m| m.provider == flavour.provider())
            .map(|m| m.name.to_string())
            .chain(
                self.extra_models
                    .iter()
                    .filter(|(f, _)| *f == flavour)
                    .map(|(_, id)| id.clone()),
            )
            .collect()
    }
}

/// What the `fake-llm` binary was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub host: String,
    /// 0 picks any free port.
    pub port: u16,
    pub config: FakeLlmConfig,
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Options),
    Help,
}

pub const USAGE: &str = "\
usage: fake-llm [--host H] [--port P] [--key K] [--latency-ms MS] [--tokens-per-sec N]
                [--think-ms MS] [--extra-models P:ID,...] [--no-model-list P,...]

An OpenAI-compatible chat-completions server standing in for Kimi and GLM: paths under
/api/paas/ answer as Z.ai (GLM), others as Moonshot (Kimi).

  --host            FAKE_LLM_HOST            address to bind (default 127.0.0.1)
  --port            FAKE_LLM_PORT            port; 0 = any free port (default 8090)
  --key             FAKE_LLM_KEY             bearer key to require (default: any key)
  --latency-ms      FAKE_LLM_LATENCY_MS      delay before each response (default 0)
  --tokens-per-sec  FAKE_LLM_TOKENS_PER_SEC  streaming pace; 0 = unpaced (default 0)
  --think-ms        FAKE_LLM_THINK_MS        reasoning before every answer (default 0)
  --extra-models    FAKE_LLM_EXTRA_MODELS    models served besides exai's built-in ones,
                                             e.g. glm:glm-9,kimi:kimi-k3
  --no-model-list   FAKE_LLM_NO_MODEL_LIST   providers without GET .../models (404)

POST */chat/completions echoes the last user message; a model the provider does not
serve gets its real refusal (Moonshot 404, Z.ai 400 code 1211). Directives in that
message: [fault:429 retry-after=N] [fault:500] [fault:503] [fault:stall]
[fault:stall-stream] [fault:cut] [fault:malformed] [fault:endless-event], a count suffix
such as [fault:500x2], [latency:MS], and [think:MS] (reasoning deltas for MS before the
answer; none when the request says \"thinking\": {\"type\": \"disabled\"}).
GET */models lists the served models. POST /_control {\"fault\":\"500\",\"count\":3}
arms a fault for any request; {\"fault\":null} resets. GET /_requests,
DELETE /_requests, GET /_stats (requests, faults, streams the client abandoned).
";

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("{setting}={value:?} is not valid: expected {expected}")]
    Invalid {
        setting: String,
        value: String,
        expected: &'static str,
    },
}

/// One setting's flag and variable.
struct Setting {
    flag: &'static str,
    env: &'static str,
}

const HOST: Setting = Setting {
    flag: "--host",
    env: "FAKE_LLM_HOST",
};
const PORT: Setting = Setting {
    flag: "--port",
    env: "FAKE_LLM_PORT",
};
const KEY: Setting = Setting {
    flag: "--key",
    env: "FAKE_LLM_KEY",
};
const LATENCY: Setting = Setting {
    flag: "--latency-ms",
    env: "FAKE_LLM_LATENCY_MS",
};
const PACE: Setting = Setting {
    flag: "--tokens-per-sec",
    env: "FAKE_LLM_TOKENS_PER_SEC",
};
const THINK: Setting = Setting {
    flag: "--think-ms",
    env: "FAKE_LLM_THINK_MS",
};
const EXTRA_MODELS: Setting = Setting {
    flag: "--extra-models",
    env: "FAKE_LLM_EXTRA_MODELS",
};
const NO_MODEL_LIST: Setting = Setting {
    flag: "--no-model-list",
    env: "FAKE_LLM_NO_MODEL_LIST",
};
const ALL: [&Setting; 8] = [
    &HOST,
    &PORT,
    &KEY,
    &LATENCY,
    &PACE,
    &THINK,
    &EXTRA_MODELS,
    &NO_MODEL_LIST,
];

/// `env` is the process environment in the binary and a map in unit tests.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, OptionsError> {
    let mut flags: Vec<(&'static str, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Parsed::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let setting = ALL
            .into_iter()
            .find(|s| s.flag == name)
            .ok_or_else(|| OptionsError::Unknown(arg.clone()))?;
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or(OptionsError::MissingValue(name))?,
        };
        flags.push((setting.flag, value));
    }
    // The last flag wins, then the variable.
    let lookup = |s: &Setting| -> Option<(String, String)> {
        match flags.iter().rev().find(|(flag, _)| *flag == s.flag) {
            Some((flag, value)) => Some((flag.to_string(), value.clone())),
            None => env(s.env).map(|value| (s.env.to_owned(), value)),
        }
    };
    let number = |s: &Setting, expected: &'static str| -> Result<Option<f64>, OptionsError> {
        let Some((setting, value)) = lookup(s) else {
            return Ok(None);
        };
        let parsed = value.trim().parse::<f64>().ok();
        match parsed.filter(|n| n.is_finite() && *n >= 0.0) {
            Some(n) => Ok(Some(n)),
            None => Err(OptionsError::Invalid {
                setting,
                value,
                expected,
            }),
        }
    };

    let port = match lookup(&PORT) {
        None => 8090,
        Some((setting, value)) => value.trim().parse().map_err(|_| OptionsError::Invalid {
            setting,
            value,
            expected: "a port number 0-65535",
        })?,
    };
    let latency_ms = number(&LATENCY, "milliseconds, 0 or more")?.unwrap_or(0.0);
    let tokens_per_sec = number(&PACE, "tokens per second, 0 or more")?.unwrap_or(0.0);
    let think_ms = number(&THINK, "milliseconds, 0 or more")?.unwrap_or(0.0);
    let list = |s: &Setting| -> Vec<(String, String, String)> {
        lookup(s).map_or_else(Vec::new, |(setting, value)| {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| (setting.clone(), value.clone(), v.to_owned()))
                .collect()
        })
    };
    let flavour = |setting: String, value: String, name: &str| {
        Flavour::parse(name).ok_or(OptionsError::Invalid {
            setting,
            value,
            expected: "kimi or glm",
        })
    };
    let mut extra_models = Vec::new();
    for (setting, value, item) in list(&EXTRA_MODELS) {
        let Some((provider, id)) = item.split_once(':').filter(|(_, id)| !id.is_empty()) else {
            return Err(OptionsError::Invalid {
                setting,
                value,
                expected: "provider:id pairs, e.g. glm:glm-9,kimi:kimi-k3",
            });
        };
        extra_models.push((flavour(setting, value, provider)?, id.to_owned()));
    }
    let mut no_model_list = Vec::new();
    for (setting, value, item) in list(&NO_MODEL_LIST) {
        no_model_list.push(flavour(setting, value, &item)?);
    }
    Ok(Parsed::Run(Options {
        host: lookup(&HOST).map_or_else(|| "127.0.0.1".to_owned(), |(_, v)| v),
        port,
        config: FakeLlmConfig {
            key: lookup(&KEY).map(|(_, v)| v).filter(|k| !k.is_empty()),
            latency: Duration::from_secs_f64(latency_ms / 1000.0),
            tokens_per_sec,
            think: Duration::from_secs_f64(think_ms / 1000.0),
            extra_models,
            no_model_list,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Options, OptionsError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = args.iter().map(|a| a.to_string());
        match parse(args, |k| env.get(k).cloned())? {
            Parsed::Run(options) => Ok(options),
            Parsed::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[], &[]).unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 8090));
        assert_eq!(o.config, FakeLlmConfig::default());
        assert_eq!(o.config.pace(), None);
    }

    #[test]
    fn flags_override_variables() {
        let o = run(
            &["--port", "0", "--key=sk-flag", "--tokens-per-sec", "50"],
            &[
                ("FAKE_LLM_PORT", "9000"),
                ("FAKE_LLM_KEY", "sk-env"),
                ("FAKE_LLM_LATENCY_MS", "250"),
            ],
        )
        .unwrap();
        assert_eq!(o.port, 0);
        assert_eq!(o.config.key.as_deref(), Some("sk-flag"));
        assert_eq!(o.config.latency, Duration::from_millis(250));
        assert_eq!(o.config.pace(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn errors_name_the_setting_and_value() {
        let e = run(&["--port", "70000"], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--port=\"70000\" is not valid: expected a port number 0-65535"
        );
        let e = run(&[], &[("FAKE_LLM_LATENCY_MS", "-5")]).unwrap_err();
        assert!(
            e.to_string().starts_with("FAKE_LLM_LATENCY_MS=\"-5\""),
            "{e}"
        );
        assert_eq!(
            run(&["--verbose"], &[]),
            Err(OptionsError::Unknown("--verbose".into()))
        );
        assert_eq!(
            run(&["--key"], &[]),
            Err(OptionsError::MissingValue("--key".into()))
        );
    }

    #[test]
    fn thinking_and_model_lists_are_configured() {
        let o = run(
            &[
                "--think-ms",
                "1500",
                "--extra-models",
                "glm:glm-9, kimi:kimi-k3",
            ],
            &[("FAKE_LLM_NO_MODEL_LIST", "glm")],
        )
        .unwrap();
        assert_eq!(o.config.think, Duration::from_millis(1500));
        assert_eq!(
            o.config.extra_models,
            [
                (Flavour::Glm, "glm-9".into()),
                (Flavour::Kimi, "kimi-k3".into())
            ]
        );
        assert_eq!(o.config.no_model_list, [Flavour::Glm]);
        let glm = o.config.served(Flavour::Glm);
        assert!(
            glm.contains(&"glm-4.5-flash".to_string()) && glm.ends_with(&["glm-9".to_string()])
        );
        let e = run(&["--extra-models", "glm"], &[]).unwrap_err();
        assert!(e.to_string().contains("provider:id pairs"), "{e}");
        let e = run(&["--no-model-list", "openai"], &[]).unwrap_err();
        assert!(e.to_string().contains("kimi or glm"), "{e}");
    }

    #[test]
    fn help_is_recognised() {
        let parsed = parse(["--help".to_string()], |_| None).unwrap();
        assert_eq!(parsed, Parsed::Help);
    }
}
