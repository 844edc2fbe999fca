//! The models the daemon serves, their aliases, and how `auto` and the default choose.

use exai_proto::Provider;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    /// The name the provider's API knows.
    pub name: &'static str,
    pub provider: Provider,
    /// Other names a client may use.
    pub aliases: &'static [&'static str],
    pub context_window: u32,
    pub description: &'static str,
}

pub const MODELS: &[ModelInfo] = &[
    ModelInfo {
        name: "kimi-k2-0905-preview",
        provider: Provider::Kimi,
        aliases: &["kimi-k2", "kimi"],
        context_window: 262_144,
        description: "Kimi K2 (0905): strong general and coding model",
    },
    ModelInfo {
        name: "kimi-k2-turbo-preview",
        provider: Provider::Kimi,
        aliases: &["kimi-k2-turbo", "kimi-turbo"],
        context_window: 262_144,
        description: "Kimi K2 turbo: faster output",
    },
    ModelInfo {
        name: "kimi-thinking-preview",
        provider: Provider::Kimi,
        aliases: &["kimi-thinking"],
        context_window: 131_072,
        description: "Kimi with extended reasoning",
    },
    ModelInfo {
        name: "moonshot-v1-8k",
        provider: Provider::Kimi,
        aliases: &[],
        context_window: 8_192,
        description: "Moonshot v1, 8k context",
    },
    ModelInfo {
        name: "moonshot-v1-32k",
        provider: Provider::Kimi,
        aliases: &[],
        context_window: 32_768,
        description: "Moonshot v1, 32k context",
    },
    ModelInfo {
        name: "moonshot-v1-128k",
        provider: Provider::Kimi,
        aliases: &[],
        context_window: 131_072,
        description: "Moonshot v1, 128k context",
    },
    ModelInfo {
        name: "glm-4.6",
        provider: Provider::Glm,
        aliases: &["glm"],
        context_window: 200_000,
        description: "GLM-4.6: Zhipu's flagship",
    },
    ModelInfo {
        name: "glm-4.5",
        provider: Provider::Glm,
        aliases: &[],
        context_window: 128_000,
        description: "GLM-4.5",
    },
    ModelInfo {
        name: "glm-4.5-air",
        provider: Provider::Glm,
        aliases: &["glm-air"],
        context_window: 128_000,
        description: "GLM-4.5 Air: lighter and cheaper",
    },
    ModelInfo {
        name: "glm-4.5-flash",
        provider: Provider::Glm,
        aliases: &["glm-flash", "flash"],
        context_window: 128_000,
        description: "GLM-4.5 Flash: fastest, free tier",
    },
];

/// The model used when a client asks for none, unless `DEFAULT_MODEL` says otherwise.
pub const DEFAULT_MODEL: &str = "glm-4.5-flash";

/// What `auto` prefers from each provider.
const AUTO_PICKS: &[&str] = &["glm-4.5-flash", "kimi-k2-turbo-preview"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {0:?}; call listmodels for the models this server offers")]
    Unknown(String),
    #[error("model {model} needs provider {provider}, which is unavailable: {why}")]
    ProviderUnavailable {
        model: &'static str,
        provider: Provider,
        why: String,
    },
    #[error("no provider is available: set KIMI_API_KEY or GLM_API_KEY")]
    NoProvider,
}

/// Finds a model by name or alias, case-insensitively.
pub fn lookup(name: &str) -> Option<&'static ModelInfo> {
    let name = name.trim();
    MODELS.iter().find(|m| {
        m.name.eq_ignore_ascii_case(name) || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// Resolves what a client asked for. Empty means the default model; `auto` means the
/// default if its provider is available, else the first available provider's pick.
/// `unavailable(p)` gives the reason a provider cannot be used, or `None` when it can.
pub fn resolve(
    requested: Option<&str>,
    default_model: &'static ModelInfo,
    unavailable: impl Fn(Provider) -> Option<String>,
) -> Result<&'static ModelInfo, ModelError> {
    let requested = requested.map(str::trim).filter(|s| !s.is_empty());
    let model = match requested {
        None => default_model,
        Some(r) if r.eq_ignore_ascii_case("auto") => {
            if unavailable(default_model.provider).is_none() {
                return Ok(default_model);
            }
            return AUTO_PICKS
                .iter()
                .filter_map(|name| lookup(name))
                .find(|m| unavailable(m.provider).is_none())
                .ok_or(ModelError::NoProvider);
        }
        Some(r) => lookup(r).ok_or_else(|| ModelError::Unknown(r.to_string()))?,
    };
    match unavailable(model.provider) {
        None => Ok(model),
        Some(why) => Err(ModelError::ProviderUnavailable {
            model: model.name,
            provider: model.provider,
            why,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_name_fits_the_wire() {
        for model in MODELS {
            assert_eq!(exai_proto::ModelName::new(model.name).as_str(), model.name);
        }
    }

    fn default() -> &'static ModelInfo {
        lookup(DEFAULT_MODEL).unwrap()
    }

    #[test]
    fn aliases_and_case_resolve_to_the_canonical_name() {
        assert_eq!(lookup("Kimi-K2").unwrap().name, "kimi-k2-0905-preview");
        assert_eq!(lookup("flash").unwrap().name, "glm-4.5-flash");
        assert!(lookup("gpt-4").is_none());
    }

    #[test]
    fn auto_falls_back_to_an_available_provider() {
        let only_kimi = |p| (p == Provider::Glm).then(|| "GLM_API_KEY is not set".to_string());
        assert_eq!(
            resolve(Some("auto"), default(), only_kimi).unwrap().name,
            "kimi-k2-turbo-preview"
        );
        assert_eq!(
            resolve(None, lookup("kimi").unwrap(), only_kimi)
                .unwrap()
                .name,
            "kimi-k2-0905-preview"
        );
        let err = resolve(Some("glm-4.6"), default(), only_kimi).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model glm-4.6 needs provider glm, which is unavailable: GLM_API_KEY is not set"
        );
        assert_eq!(
            resolve(Some("auto"), default(), |_| Some("x".into())).unwrap_err(),
            ModelError::NoProvider
        );
        assert!(matches!(
            resolve(Some("gpt-4"), default(), |_| None),
            Err(ModelError::Unknown(_))
        ));
    }
}
