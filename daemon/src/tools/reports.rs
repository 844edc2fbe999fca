//! `listmodels`, `status` and `version`: what the server offers and how it is doing.

use super::{ToolOutput, Tools};
use crate::chat::ChatService;
use crate::providers::catalogue::{self, Catalogue};
use crate::providers::limits::provider_setting;
use crate::providers::models::SERVED;
use serde_json::{json, Value};

impl Tools {
    pub(super) fn listmodels(&self) -> ToolOutput {
        let catalogue = self.chat.catalogue().snapshot();
        let default = self.chat.default_model();
        // What a chat that names no model gets now, when that is not the default itself.
        let default_now = catalogue
            .resolve(None, default, |p| self.chat.unavailable(p))
            .map(|c| c.name);
        let named = catalogue
            .resolve(Some(default), default, |_| None)
            .map(|c| c.name);
        let fallback = match &default_now {
            Ok(now) if named.as_ref() == Ok(now) => String::new(),
            Ok(now) => format!(" (unusable now: a chat without a model goes to {now})"),
            Err(_) => " (no provider is available)".to_string(),
        };
        let mut lines = vec![format!(
            "Default model: {default}{fallback}. Name a model below (or an alias), \"auto\", or any model of a provider as kimi:<id> or glm:<id>."
        )];
        let mut providers = Vec::new();
        for provider in SERVED {
            let why = self.chat.unavailable(provider);
            let (list_state, list_error) =
                self.model_list_state(&catalogue, provider, why.is_some());
            let state = match &why {
                None => format!("available; model list: {}", list_state.1),
                Some(why) => format!("unavailable: {why}"),
            };
            lines.push(format!("\n{provider} ({state})"));
            providers.push(
                json!({"provider": provider.as_str(), "available": why.is_none(), "reason": why,
                                  "model_list": list_state.0, "model_list_error": list_error}),
            );
            for m in catalogue
                .entries()
                .iter()
                .filter(|m| m.provider == provider)
            {
                let mut line = format!("- {}", m.name);
                if !m.aliases.is_empty() {
                    line.push_str(&format!(" (aliases: {})", m.aliases.join(", ")));
                }
                line.push_str(": ");
                if !m.description.is_empty() {
                    line.push_str(&m.description);
                    line.push_str("; ");
                }
                match m.context_window {
                    Some(n) => line.push_str(&format!("context {n} tokens")),
                    None => line.push_str("context unknown"),
                }
                line.push_str(&format!("; thinking {}", m.thinking.as_str()));
                if catalogue.known_missing(provider, &m.name) {
                    line.push_str(&format!("; not in {provider}'s model list"));
                }
                lines.push(line);
            }
        }
        let models: Vec<Value> = catalogue
            .entries()
            .iter()
            .map(|m| {
                let listed = catalogue
                    .listing(m.provider)
                    .and_then(|l| l.ids.as_ref())
                    .map(|ids| ids.contains(&m.name));
                json!({"name": m.name, "provider": m.provider.as_str(), "aliases": m.aliases,
                       "context_window": m.context_window, "thinking": m.thinking.as_str(),
                       "description": m.description, "source": m.source.as_str(),
                       "available": self.chat.unavailable(m.provider).is_none(),
                       "listed_by_provider": listed})
            })
            .collect();
        ToolOutput::structured(
            lines.join("\n"),
            json!({"default_model": default, "default_now": default_now.ok(),
                   "providers": providers, "models": models}),
        )
    }

    /// `(state, words)` of a provider's model list, and its last error.
    fn model_list_state(
        &self,
        catalogue: &Catalogue,
        provider: exai_proto::Provider,
        unavailable: bool,
    ) -> ((&'static str, String), Option<String>) {
        let listing = catalogue.listing(provider);
        let error = listing.and_then(|l| l.error.clone());
        let state = match listing {
            _ if unavailable => ("unavailable", "not asked".to_string()),
            _ if self.models_refresh.is_none() => {
                ("off", "not asked (EXAI_MODELS_REFRESH_S=0)".to_string())
            }
            Some(l) if l.error.is_some() => (
                "failed",
                format!(
                    "cannot be fetched ({}); using the table",
                    l.error.as_deref().unwrap_or_default()
                ),
            ),
            Some(l) if l.ids.is_some() => (
                "listed",
                format!(
                    "{} models listed",
                    l.ids.as_ref().map_or(0, |ids| ids.len())
                ),
            ),
            _ => ("pending", "not fetched yet".to_string()),
        };
        (state, error)
    }

    /// How the server is doing, and `owner`'s tasks (no one else's).
    pub(super) async fn status(&self, owner: &str) -> ToolOutput {
        let pipe = self.emitter.stats();
        let limits = self.chat.limits();
        let catalogue = self.chat.catalogue().snapshot();
        let providers: Vec<Value> = SERVED
            .iter()
            .map(|p| {
                let why = self.chat.unavailable(*p);
                json!({"provider": p.as_str(), "available": why.is_none(), "reason": why,
                       "in_flight": limits.provider_in_flight(*p), "limit_setting": provider_setting(*p),
                       "base_url": self.chat.provider(*p).map(|c| crate::redact::redact_url(c.base_url()))})
            })
            .collect();
        let lists: Vec<Value> = SERVED
            .iter()
            .map(|p| {
                let l = catalogue.listing(*p).cloned().unwrap_or_default();
                let (state, _) = self.model_list_state(&catalogue, *p, self.chat.unavailable(*p).is_some());
                json!({"provider": p.as_str(), "state": state.0, "attempts": l.attempts,
                       "models_listed": l.ids.as_ref().map(|ids| ids.len()), "models_added": l.added,
                       "models_skipped": l.skipped, "last_success_unix_ms": l.last_success_unix_ms,
                       "error": l.error})
            })
            .collect();
        let status = json!({
            "version": crate::VERSION,
            "uptime_s": self.started.elapsed().as_secs(),
            "providers": providers,
            "models": catalogue.entries().len(),
            "default_model": self.chat.default_model(),
            "catalogue": {"models": catalogue.entries().len(), "max_models": catalogue::MAX_MODELS,
                          "refresh_s": self.models_refresh.map_or(0, |d| d.as_secs()), "model_lists": lists},
            "storage": storage_status(&self.chat),
            "supabase": supabase_status(&self.chat),
            "agent": {"connected": pipe.connected, "events_dropped": pipe.dropped.total(), "queue_depth": pipe.queue_depth},
            "in_flight": limits.in_flight(),
            "tasks": self.tasks.summary(owner).await,
            "connections": self.connections.get().map(|report| report()),
        });
        let text = serde_json::to_string_pretty(&status).unwrap_or_default();
        ToolOutput::structured(text, status)
    }
}

fn storage_status(chat: &ChatService) -> Value {
    let health = chat.storage_health();
    let mut status = json!({"backend": chat.storage_backend().as_str(), "reachable": health.reachable, "error": health.error});
    if let Some(usage) = chat.storage_usage() {
        status["threads"] = usage.threads.into();
        status["max_threads"] = usage.max_threads.into();
        status["bytes"] = usage.bytes.into();
        status["max_bytes"] = usage.max_bytes.into();
    }
    if let Some(j) = chat.storage_journal() {
        status["journal"] = json!({"turns": j.turns, "bytes": j.bytes, "max_bytes": j.max_bytes, "refused": j.refused,
                                   "damaged": j.damaged, "replayed": j.replayed, "discarded": j.discarded});
    }
    status
}

fn supabase_status(chat: &ChatService) -> Value {
    match chat.persistence() {
        None => json!({"enabled": false}),
        Some(p) => {
            let s = p.status();
            json!({"enabled": true, "spool_records": s.spool.depth, "spool_bytes": s.spool.bytes,
                   "spool_max_bytes": s.spool.max_bytes, "spool_refused": s.spool.refused,
                   "spool_damaged": s.spool.damaged, "spool_write_timeouts": s.write_timeouts,
                   "spool_queued": s.queued, "uploaded": s.uploaded, "failing": s.failing,
                   "dead_lettered": s.dead_lettered})
        }
    }
}

pub(super) fn version() -> ToolOutput {
    let info = json!({"name": "exai", "version": crate::VERSION, "protocol_versions": super::PROTOCOL_VERSIONS});
    let text = format!(
        "exai {} (MCP protocol versions {})",
        crate::VERSION,
        super::PROTOCOL_VERSIONS.join(", ")
    );
    ToolOutput::structured(text, info)
}
