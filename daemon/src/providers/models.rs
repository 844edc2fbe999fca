//! The models built into the daemon: today's ids at Moonshot and Z.ai, and the ids those
//! providers retired, each kept as an alias of its successor so that old configurations
//! keep working. Sources: platform.kimi.ai/docs (models, "Using thinking models") and
//! docs.z.ai/guides/llm (GLM-4.5, GLM-4.6, GLM-4.7, GLM-5). The live catalogue adds what a
//! models file and each provider's `GET /models` list (see `catalogue`).

use exai_proto::Provider;

/// Whether a model reasons before it answers, and whether a request can change that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Thinking {
    /// It answers at once; `thinking` is not sent.
    Never,
    /// It thinks by default; `"thinking": {"type": "disabled"}` turns it off.
    Optional,
    /// It always thinks; a request to disable thinking is refused here.
    Always,
    /// Not known (a model only the provider's list named): the request's choice is sent.
    Unknown,
}

impl Thinking {
    pub const fn as_str(self) -> &'static str {
        match self {
            Thinking::Never => "none",
            Thinking::Optional => "optional",
            Thinking::Always => "always",
            Thinking::Unknown => "unknown",
        }
    }

    /// The spelling of a models file (`none`, `optional`, `always`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Thinking::Never),
            "optional" => Some(Thinking::Optional),
            "always" => Some(Thinking::Always),
            _ => None,
        }
    }
}

/// A built-in model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    /// The id the provider's API knows.
    pub name: &'static str,
    pub provider: Provider,
    /// Other names a client may use: short names, and ids the provider retired.
    pub aliases: &'static [&'static str],
    pub context_window: u32,
    pub thinking: Thinking,
    pub description: &'static str,
}

/// Moonshot retired the K2 previews, the K2 thinking models and `kimi-latest` on
/// 2026-05-25 in favour of `kimi-k2.6`.
const KIMI_RETIRED: &[&str] = &[
    "kimi",
    "kimi-k2",
    "kimi-latest",
    "kimi-k2-0711-preview",
    "kimi-k2-0905-preview",
    "kimi-k2-turbo-preview",
    "kimi-k2-turbo",
    "kimi-turbo",
    "kimi-k2-thinking",
    "kimi-k2-thinking-turbo",
    "kimi-thinking-preview",
    "kimi-thinking",
];

pub const MODELS: &[ModelInfo] = &[
    ModelInfo {
        name: "kimi-k2.6",
        provider: Provider::Kimi,
        aliases: KIMI_RETIRED,
        context_window: 262_144,
        thinking: Thinking::Optional,
        description: "Kimi K2.6: Moonshot's flagship, thinks before it answers unless told not to",
    },
    ModelInfo {
        name: "kimi-k2.5",
        provider: Provider::Kimi,
        aliases: &[],
        context_window: 262_144,
        thinking: Thinking::Optional,
        description: "Kimi K2.5: the previous flagship, thinking by default",
    },
    ModelInfo {
        name: "moonshot-v1-8k",
        provider: Provider::Kimi,
        aliases: &[],
        context_window: 8_192,
        thinking: Thinking::Never,
        description: "Moonshot v1, 8k context, answers at once",
    },
    ModelInfo {
        name: "moonshot-v1-32k",
        provider: Provider::Kimi,
        aliases: &[],
        context_window: 32_768,
        thinking: Thinking::Never,
        description: "Moonshot v1, 32k context, answers at once",
    },
    ModelInfo {
        name: "moonshot-v1-128k",
        provider: Provider::Kimi,
        aliases: &[],
        context_window: 131_072,
        thinking: Thinking::Never,
        description: "Moonshot v1, 128k context, answers at once",
    },
    ModelInfo {
        name: "glm-5",
        provider: Provider::Glm,
        aliases: &["glm"],
        context_window: 200_000,
        thinking: Thinking::Optional,
        description: "GLM-5: Z.ai's flagship for long agentic work, thinking by default",
    },
    ModelInfo {
        name: "glm-4.7",
        provider: Provider::Glm,
        aliases: &[],
        context_window: 200_000,
        thinking: Thinking::Optional,
        description: "GLM-4.7: strong coding model, thinking by default",
    },
    ModelInfo {
        name: "glm-4.6",
        provider: Provider::Glm,
        aliases: &[],
        context_window: 200_000,
        thinking: Thinking::Optional,
        description: "GLM-4.6",
    },
    ModelInfo {
        name: "glm-4.5",
        provider: Provider::Glm,
        aliases: &[],
        context_window: 128_000,
        thinking: Thinking::Optional,
        description: "GLM-4.5",
    },
    ModelInfo {
        name: "glm-4.5-air",
        provider: Provider::Glm,
        aliases: &["glm-air"],
        context_window: 128_000,
        thinking: Thinking::Optional,
        description: "GLM-4.5 Air: lighter and cheaper",
    },
    ModelInfo {
        name: "glm-4.5-flash",
        provider: Provider::Glm,
        aliases: &["glm-flash", "flash"],
        context_window: 128_000,
        thinking: Thinking::Optional,
        description: "GLM-4.5 Flash: fastest, free tier",
    },
];

/// The model used when a client asks for none, unless `DEFAULT_MODEL` says otherwise.
pub const DEFAULT_MODEL: &str = "glm-4.5-flash";

/// What `auto` (and a default whose provider is unavailable) tries, in order, before any
/// other model a provider offers.
pub const AUTO_PICKS: &[&str] = &["glm-4.5-flash", "kimi-k2.6", "glm-4.7", "kimi-k2.5"];

/// The providers the daemon talks to (`Provider::Other` is only a label value).
pub const SERVED: [Provider; 2] = [Provider::Kimi, Provider::Glm];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_name_and_alias_is_distinct_and_fits_the_wire() {
        let mut seen = HashSet::new();
        for model in MODELS {
            assert_eq!(exai_proto::ModelName::new(model.name).as_str(), model.name);
            for name in std::iter::once(&model.name).chain(model.aliases) {
                assert!(seen.insert(name.to_ascii_lowercase()), "{name} twice");
            }
        }
        for pick in AUTO_PICKS.iter().chain([&DEFAULT_MODEL]) {
            assert!(MODELS.iter().any(|m| m.name == *pick), "{pick}");
        }
    }

    #[test]
    fn retired_kimi_ids_lead_to_their_successor() {
        let k26 = MODELS.iter().find(|m| m.name == "kimi-k2.6").unwrap();
        for retired in [
            "kimi-k2-0711-preview",
            "kimi-k2-0905-preview",
            "kimi-k2-turbo-preview",
            "kimi-k2-thinking",
            "kimi-k2-thinking-turbo",
            "kimi-latest",
        ] {
            assert!(k26.aliases.contains(&retired), "{retired}");
        }
    }
}
