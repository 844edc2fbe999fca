//! The live model catalogue: the built-in table, a models file's entries, and what each
//! provider's `GET /models` listed. A chat reads it once (an `Arc` clone under a read
//! lock); a refresh replaces it whole. It only grows: a model a provider stops listing
//! stays, marked as not listed, and `auto` and the default stop choosing it.

use super::models::{ModelInfo, Thinking, AUTO_PICKS, MODELS, SERVED};
use exai_proto::{ModelEntry, Provider};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// Most models the catalogue holds: the daemon keeps a counter row for each, and the
/// agent labels up to EXAI_METRICS_MAX_MODELS of them.
pub const MAX_MODELS: usize = 256;

/// Longest model id accepted from a client, a models file or a provider's list.
pub const MAX_ID_LEN: usize = 128;

/// Where a catalogue entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    BuiltIn,
    File,
    /// Only the provider's `GET /models` named it.
    Provider,
}

impl Source {
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::BuiltIn => "built-in",
            Source::File => "file",
            Source::Provider => "provider",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The id the provider's API knows; sent as `model`.
    pub name: String,
    pub provider: Provider,
    pub aliases: Vec<String>,
    /// `None` when nobody said (a model only the provider listed).
    pub context_window: Option<u32>,
    pub thinking: Thinking,
    pub description: String,
    pub source: Source,
}

impl From<&ModelInfo> for Entry {
    fn from(m: &ModelInfo) -> Self {
        Self {
            name: m.name.to_string(),
            provider: m.provider,
            aliases: m.aliases.iter().map(|a| a.to_string()).collect(),
            context_window: Some(m.context_window),
            thinking: m.thinking,
            description: m.description.to_string(),
            source: Source::BuiltIn,
        }
    }
}

impl Entry {
    fn answers_to(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// What asking a provider for its models found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Requests made since start.
    pub attempts: u64,
    /// The ids of the last successful answer; `None` before one.
    pub ids: Option<HashSet<String>>,
    pub last_success_unix_ms: Option<u64>,
    /// Why the last attempt failed; `None` after a success.
    pub error: Option<String>,
    /// Models this provider's lists added to the catalogue.
    pub added: usize,
    /// Listed models left out because the catalogue was full.
    pub skipped: usize,
}

/// The models a client can name now.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    entries: Vec<Arc<Entry>>,
    listings: [Listing; SERVED.len()],
}

/// A model chosen for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Sent to the provider as `model`.
    pub name: String,
    pub provider: Provider,
    pub thinking: Thinking,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {0:?}; call listmodels for the models this server offers, or name any model of a provider as kimi:<id> or glm:<id>")]
    Unknown(String),
    #[error("model {model} needs provider {provider}, which is unavailable: {why}")]
    ProviderUnavailable {
        model: String,
        provider: Provider,
        why: String,
    },
    #[error("no provider is available: {0}")]
    NoProvider(String),
}

/// What a client's `model` asks for, before the catalogue is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted<'a> {
    Auto,
    /// A name or alias from the catalogue.
    Named(&'a str),
    /// `kimi:<id>` or `glm:<id>`: sent to that provider as `<id>`, whatever the catalogue says.
    Direct(Provider, &'a str),
}

/// Whether `id` can be sent as a model id: 1 to 128 bytes, no spaces or control characters.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("a model id is 1 to {MAX_ID_LEN} bytes"));
    }
    match id.chars().find(|c| c.is_whitespace() || c.is_control()) {
        Some(c) => Err(format!("{c:?} is not allowed in a model id")),
        None => Ok(()),
    }
}

/// Reads a client's `model`: `auto`, `kimi:<id>`, `glm:<id>`, or a name.
pub fn parse(requested: &str) -> Result<Wanted<'_>, String> {
    let requested = requested.trim();
    if requested.eq_ignore_ascii_case("auto") {
        return Ok(Wanted::Auto);
    }
    if let Some((prefix, id)) = requested.split_once(':') {
        if let Some(provider) = SERVED
            .iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(prefix))
        {
            check_id(id)?;
            return Ok(Wanted::Direct(*provider, id));
        }
    }
    check_id(requested)?;
    Ok(Wanted::Named(requested))
}

fn served_slot(provider: Provider) -> Option<usize> {
    SERVED.iter().position(|p| *p == provider)
}

impl Catalogue {
    /// The built-in table.
    pub fn builtin() -> Vec<Entry> {
        MODELS.iter().map(Entry::from).collect()
    }

    pub fn new(entries: Vec<Entry>) -> Self {
        Self {
            entries: entries.into_iter().take(MAX_MODELS).map(Arc::new).collect(),
            listings: Default::default(),
        }
    }

    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    pub fn listing(&self, provider: Provider) -> Option<&Listing> {
        served_slot(provider).map(|i| &self.listings[i])
    }

    /// The entry `name` names (its id or an alias, any case).
    pub fn find(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.answers_to(name))
    }

    /// `id` sent to `provider` as it is; what thinking it does is known only when the
    /// catalogue has that very id.
    fn direct(&self, provider: Provider, id: &str) -> Chosen {
        let entry = self
            .entries
            .iter()
            .find(|e| e.provider == provider && e.name == id);
        Chosen {
            name: id.to_string(),
            provider,
            thinking: entry.map_or(Thinking::Unknown, |e| e.thinking),
        }
    }

    /// Whether the provider's last list of models left `id` out.
    pub fn known_missing(&self, provider: Provider, id: &str) -> bool {
        self.listing(provider)
            .and_then(|l| l.ids.as_ref())
            .is_some_and(|ids| !ids.contains(id))
    }

    /// The models to announce to the agent, in catalogue order.
    pub fn announced(&self) -> Vec<ModelEntry> {
        self.entries
            .iter()
            .map(|e| ModelEntry {
                provider: e.provider,
                name: e.name.as_str().into(),
            })
            .collect()
    }

    /// This catalogue after a `GET /models` of `provider` answered `outcome`: listed ids
    /// it did not know are added (up to [`MAX_MODELS`]); nothing is ever removed.
    pub fn with_listing(
        &self,
        provider: Provider,
        outcome: Result<Vec<String>, String>,
        now_unix_ms: u64,
    ) -> Catalogue {
        let mut next = self.clone();
        let Some(slot) = served_slot(provider) else {
            return next;
        };
        let listing = &mut next.listings[slot];
        listing.attempts += 1;
        let ids = match outcome {
            Err(why) => {
                listing.error = Some(why);
                return next;
            }
            Ok(ids) => ids,
        };
        listing.error = None;
        listing.last_success_unix_ms = Some(now_unix_ms);
        let mut added = 0;
        let mut skipped = 0;
        for id in ids.iter().filter(|id| check_id(id).is_ok()) {
            let known = next
                .entries
                .iter()
                .any(|e| e.provider == provider && (e.name == *id || e.answers_to(id)));
            if known {
                continue;
            }
            if next.entries.len() >= MAX_MODELS {
                skipped += 1;
                continue;
            }
            next.entries.push(Arc::new(Entry {
                name: id.clone(),
                provider,
                aliases: Vec::new(),
                context_window: None,
                thinking: Thinking::Unknown,
                description: format!("listed by {provider}"),
                source: Source::Provider,
            }));
            added += 1;
        }
        let listing = &mut next.listings[slot];
        listing.added += added;
        listing.skipped = skipped;
        listing.ids = Some(ids.into_iter().collect());
        next
    }

    /// The model to call for a client's `model` (`None`: the default). `default` is
    /// DEFAULT_MODEL; `unavailable(p)` says why a provider cannot be used, `None` when it
    /// can. A default whose provider is unavailable, or that its provider no longer lists,
    /// gives way to what `auto` picks.
    pub fn resolve(
        &self,
        requested: Option<&str>,
        default: &str,
        unavailable: impl Fn(Provider) -> Option<String>,
    ) -> Result<Chosen, ModelError> {
        let requested = requested.map(str::trim).filter(|s| !s.is_empty());
        let wanted = match requested {
            None => return self.pick(default, &unavailable),
            Some(r) => parse(r).map_err(|_| ModelError::Unknown(r.to_string()))?,
        };
        let chosen = match wanted {
            Wanted::Auto => return self.pick(default, &unavailable),
            Wanted::Named(name) => {
                let entry = self
                    .find(name)
                    .ok_or_else(|| ModelError::Unknown(name.to_string()))?;
                chosen(entry)
            }
            Wanted::Direct(provider, id) => self.direct(provider, id),
        };
        match unavailable(chosen.provider) {
            None => Ok(chosen),
            Some(why) => Err(ModelError::ProviderUnavailable {
                model: chosen.name,
                provider: chosen.provider,
                why,
            }),
        }
    }

    /// The default if it can be used now, else the first usable of the auto picks, else
    /// any usable model.
    fn pick(
        &self,
        default: &str,
        unavailable: &impl Fn(Provider) -> Option<String>,
    ) -> Result<Chosen, ModelError> {
        let usable = |c: &Chosen| {
            unavailable(c.provider).is_none() && !self.known_missing(c.provider, &c.name)
        };
        let default = match parse(default) {
            Ok(Wanted::Direct(provider, id)) => Some(self.direct(provider, id)),
            Ok(Wanted::Named(name)) => self.find(name).map(|e| chosen(e)),
            _ => None,
        };
        let picks = AUTO_PICKS
            .iter()
            .filter_map(|name| self.find(name))
            .map(|e| chosen(e));
        let rest = self.entries.iter().map(|e| chosen(e));
        if let Some(found) = default.into_iter().chain(picks).chain(rest).find(usable) {
            return Ok(found);
        }
        let why: Vec<String> = SERVED
            .iter()
            .map(|p| match unavailable(*p) {
                Some(why) => format!("{p} is unavailable: {why}"),
                None => format!("{p} lists none of the models this server knows"),
            })
            .collect();
        Err(ModelError::NoProvider(why.join("; ")))
    }
}

fn chosen(entry: &Entry) -> Chosen {
    Chosen {
        name: entry.name.clone(),
        provider: entry.provider,
        thinking: entry.thinking,
    }
}

/// The catalogue in use, replaced whole by a refresh.
#[derive(Debug)]
pub struct CatalogueHandle {
    current: RwLock<Arc<Catalogue>>,
}

impl CatalogueHandle {
    pub fn new(catalogue: Catalogue) -> Self {
        Self {
            current: RwLock::new(Arc::new(catalogue)),
        }
    }

    pub fn snapshot(&self) -> Arc<Catalogue> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the catalogue with `change(current)`; returns the new one.
    pub fn update(&self, change: impl FnOnce(&Catalogue) -> Catalogue) -> Arc<Catalogue> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let next = Arc::new(change(&current));
        *current = next.clone();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        Catalogue::new(Catalogue::builtin())
    }

    fn all_available(_: Provider) -> Option<String> {
        None
    }

    #[test]
    fn names_aliases_and_retired_ids_resolve_to_what_is_sent() {
        let c = catalogue();
        let sent = |m| {
            c.resolve(Some(m), "glm-4.5-flash", all_available)
                .unwrap()
                .name
        };
        assert_eq!(sent("Kimi-K2"), "kimi-k2.6");
        assert_eq!(sent("kimi-k2-0905-preview"), "kimi-k2.6");
        assert_eq!(sent("flash"), "glm-4.5-flash");
        assert_eq!(sent("kimi:kimi-k2-0905-preview"), "kimi-k2-0905-preview");
        assert_eq!(sent("glm:glm-9-preview"), "glm-9-preview");
        let direct = c
            .resolve(Some("GLM:glm-9"), "flash", all_available)
            .unwrap();
        assert_eq!(
            (direct.provider, direct.thinking),
            (Provider::Glm, Thinking::Unknown)
        );
        assert!(matches!(
            c.resolve(Some("gpt-4"), "flash", all_available),
            Err(ModelError::Unknown(_))
        ));
        assert!(parse("kimi:").is_err());
        assert!(parse("kimi:a b").is_err());
        assert!(parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn the_default_and_auto_pick_from_what_is_available_now() {
        let c = catalogue();
        let only_kimi = |p| (p == Provider::Glm).then(|| "GLM_API_KEY is not set".to_string());
        assert_eq!(
            c.resolve(None, "glm-4.5-flash", only_kimi).unwrap().name,
            "kimi-k2.6"
        );
        assert_eq!(
            c.resolve(Some("auto"), "glm-4.5-flash", only_kimi)
                .unwrap()
                .name,
            "kimi-k2.6"
        );
        let err = c.resolve(Some("glm-4.6"), "flash", only_kimi).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model glm-4.6 needs provider glm, which is unavailable: GLM_API_KEY is not set"
        );
        let none = c
            .resolve(None, "flash", |_| Some("no key".into()))
            .unwrap_err();
        assert_eq!(
            none.to_string(),
            "no provider is available: kimi is unavailable: no key; glm is unavailable: no key"
        );

        // GLM stopped listing the default: the default gives way, an explicit name does not.
        let listed = c.with_listing(Provider::Glm, Ok(vec!["glm-5".into()]), 1);
        assert_eq!(
            listed
                .resolve(None, "glm-4.5-flash", all_available)
                .unwrap()
                .name,
            "kimi-k2.6"
        );
        assert_eq!(
            listed
                .resolve(Some("glm-4.5-flash"), "glm-4.5-flash", all_available)
                .unwrap()
                .name,
            "glm-4.5-flash"
        );
    }

    #[test]
    fn a_listing_adds_what_it_names_and_never_removes() {
        let c = catalogue();
        let before = c.entries().len();
        let c = c.with_listing(
            Provider::Glm,
            Ok(vec![
                "glm-5".into(),
                "glm-9-preview".into(),
                "bad id".into(),
            ]),
            7,
        );
        assert_eq!(c.entries().len(), before + 1);
        let added = c.find("glm-9-preview").unwrap();
        assert_eq!(
            (added.source, added.thinking),
            (Source::Provider, Thinking::Unknown)
        );
        let listing = c.listing(Provider::Glm).unwrap();
        assert_eq!(
            (
                listing.attempts,
                listing.added,
                listing.last_success_unix_ms
            ),
            (1, 1, Some(7))
        );
        let c = c.with_listing(Provider::Glm, Err("HTTP 404".into()), 8);
        assert!(c.find("glm-9-preview").is_some());
        let listing = c.listing(Provider::Glm).unwrap();
        assert_eq!(
            (listing.attempts, listing.error.as_deref()),
            (2, Some("HTTP 404"))
        );
        assert!(!c.known_missing(Provider::Glm, "glm-9-preview"));
        assert!(c.known_missing(Provider::Glm, "glm-4.6"));
    }

    #[test]
    fn the_catalogue_stops_growing_at_its_cap() {
        let ids: Vec<String> = (0..MAX_MODELS + 10).map(|i| format!("m-{i}")).collect();
        let c = catalogue().with_listing(Provider::Kimi, Ok(ids), 1);
        assert_eq!(c.entries().len(), MAX_MODELS);
        let listing = c.listing(Provider::Kimi).unwrap();
        assert_eq!(listing.added + MODELS.len(), MAX_MODELS);
        assert_eq!(listing.skipped, 10 + MODELS.len());
    }
}
