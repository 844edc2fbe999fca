//! The four tools — `chat`, `listmodels`, `version`, `status` — as plain functions over
//! JSON, so the MCP transport only adapts types. Arguments are validated here: a bad one
//! is the caller's error (-32602), a failed model call is a result with `isError`. Each
//! result is text for the calling model plus `structuredContent` that matches the tool's
//! `outputSchema`.

use crate::chat::{ChatAnswer, ChatArgs, ChatError, ChatService, ThinkingChoice};
use crate::providers::catalogue::{self, Catalogue};
use crate::providers::limits::provider_setting;
use crate::providers::models::SERVED;
use crate::providers::CallProgress;
use crate::tasks::TaskStore;
use crate::EventEmitter;
use exai_proto::{CorrelationId, Tool};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a client may assume about a tool (MCP tool annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    /// It reaches beyond this server (a model provider).
    pub open_world: bool,
}

/// A tool as `tools/list` describes it.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    pub output_schema: Value,
    pub hints: Hints,
    /// Whether a client may run it as a task.
    pub task_support: bool,
}

/// What a tool call produced: text for the client, `isError`, `structuredContent` and
/// the little `_meta` a client (not the model) needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
    pub structured: Option<Value>,
    pub meta: Map<String, Value>,
}

impl ToolOutput {
    fn error(text: String) -> Self {
        Self {
            text,
            is_error: true,
            structured: None,
            meta: Map::new(),
        }
    }

    fn structured(text: String, structured: Value) -> Self {
        Self {
            text,
            is_error: false,
            structured: Some(structured),
            meta: Map::new(),
        }
    }
}

/// The caller's mistake, answered with JSON-RPC -32602.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParams {
    #[error("unknown tool {0:?}; tools/list names the tools this server has")]
    UnknownTool(String),
    #[error("invalid arguments for {tool}: {why}")]
    BadArguments { tool: &'static str, why: String },
}

/// A tool call whose arguments were checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Chat(ChatArgs),
    ListModels,
    Version,
    Status,
}

impl Call {
    pub fn tool(&self) -> &'static str {
        match self {
            Call::Chat(_) => "chat",
            Call::ListModels => "listmodels",
            Call::Version => "version",
            Call::Status => "status",
        }
    }
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn no_input() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

fn chat_output_schema() -> Value {
    let ms = json!({"type": "integer", "minimum": 0});
    let tokens = json!({"type": "integer", "minimum": 0});
    object(
        json!({
            "answer": {"type": "string", "description": "The model's answer."},
            "model": {"type": "string", "description": "The model id the provider was sent."},
            "provider": {"type": "string", "enum": ["kimi", "glm"]},
            "continuation_id": {"type": "string", "description": "Pass it back as continuation_id to continue this conversation."},
            "history_available": {"type": "boolean", "description": "False when earlier turns could not be read or this turn could not be saved."},
            "history_turns": {"type": "integer", "minimum": 0, "description": "Earlier turns sent to the model."},
            "history_notice": {"type": "string"},
            "thinking": {"type": "string", "enum": ["auto", "enabled", "disabled"]},
            "usage": object(json!({
                "input_tokens": tokens, "output_tokens": tokens,
                "reasoning_tokens": tokens, "cached_tokens": tokens
            }), &["input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens"]),
            "latency_ms": ms,
            "time_to_first_token_ms": {"type": "integer", "minimum": 0, "description": "To the first streamed token of any kind, reasoning included."},
            "time_to_first_answer_token_ms": {"type": "integer", "minimum": 0, "description": "To the first token of the answer itself."},
            "attempts": {"type": "integer", "minimum": 1},
            "reasoning": {"type": "string", "description": "The model's reasoning, with include_reasoning."},
            "truncated": {"type": "boolean"}
        }),
        &[
            "answer",
            "model",
            "provider",
            "continuation_id",
            "history_available",
            "history_turns",
            "thinking",
            "usage",
            "latency_ms",
            "attempts",
        ],
    )
}

fn listmodels_output_schema() -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    object(
        json!({
            "default_model": {"type": "string"},
            "providers": {"type": "array", "items": object(json!({
                "provider": {"type": "string"},
                "available": {"type": "boolean"},
                "reason": nullable_string,
                "model_list": {"type": "string", "enum": ["listed", "failed", "pending", "off", "unavailable"]},
                "model_list_error": nullable_string
            }), &["provider", "available", "model_list"])},
            "models": {"type": "array", "items": object(json!({
                "name": {"type": "string"},
                "provider": {"type": "string"},
                "aliases": {"type": "array", "items": {"type": "string"}},
                "context_window": {"type": ["integer", "null"]},
                "thinking": {"type": "string", "enum": ["none", "optional", "always", "unknown"]},
                "description": {"type": "string"},
                "source": {"type": "string", "enum": ["built-in", "file", "provider"]},
                "available": {"type": "boolean"},
                "listed_by_provider": {"type": ["boolean", "null"]}
            }), &["name", "provider", "aliases", "thinking", "source", "available"])}
        }),
        &["default_model", "providers", "models"],
    )
}

fn status_output_schema() -> Value {
    let obj = json!({"type": "object"});
    object(
        json!({
            "version": {"type": "string"},
            "uptime_s": {"type": "integer", "minimum": 0},
            "providers": {"type": "array", "items": obj},
            "models": {"type": "integer", "minimum": 0},
            "default_model": {"type": "string"},
            "catalogue": obj,
            "storage": obj,
            "supabase": obj,
            "agent": obj,
            "in_flight": {"type": "integer", "minimum": 0},
            "tasks": obj
        }),
        &[
            "version",
            "uptime_s",
            "providers",
            "models",
            "default_model",
            "catalogue",
            "storage",
            "supabase",
            "agent",
            "in_flight",
            "tasks",
        ],
    )
}

pub fn specs() -> Vec<ToolSpec> {
    let local = Hints {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };
    vec![
        ToolSpec {
            name: "chat",
            title: "Chat with a Kimi or GLM model",
            description: "Ask a Kimi or GLM model. The answer ends with a continuation_id line: pass that id as continuation_id to continue the conversation with its history. Thinking models reason before answering; include_reasoning returns that reasoning.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "prompt": {"type": "string", "description": "What to ask.", "minLength": 1},
                    "model": {"type": "string", "description": "A model name or alias (see listmodels), \"auto\" for an available one, or any model of a provider as kimi:<id> or glm:<id>. Default: the server's DEFAULT_MODEL."},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "system_prompt": {"type": "string", "description": "Instructions placed before the conversation."},
                    "continuation_id": {"type": "string", "description": "Continue the conversation this id names."},
                    "stream": {"type": "boolean", "description": "Stream from the provider (measures time to first token). Default true."},
                    "thinking": {"type": "string", "enum": ["auto", "enabled", "disabled"], "description": "Whether a thinking model reasons first. auto (default) leaves the model's own default."},
                    "include_reasoning": {"type": "boolean", "description": "Return the model's reasoning in structuredContent. Default false."},
                    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "description": "Bound on output tokens, reasoning included."}
                },
                "required": ["prompt"],
                "additionalProperties": false
            }),
            output_schema: chat_output_schema(),
            hints: Hints {
                read_only: false,
                destructive: false,
                idempotent: false,
                open_world: true,
            },
            task_support: true,
        },
        ToolSpec {
            name: "listmodels",
            title: "List models",
            description: "The models this server offers now: names, aliases, context windows, whether they think, and whether their provider is available.",
            input_schema: no_input(),
            output_schema: listmodels_output_schema(),
            hints: local,
            task_support: false,
        },
        ToolSpec {
            name: "version",
            title: "Server version",
            description: "The server's name, version and the MCP protocol versions it speaks.",
            input_schema: no_input(),
            output_schema: object(
                json!({
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "protocol_versions": {"type": "array", "items": {"type": "string"}}
                }),
                &["name", "version", "protocol_versions"],
            ),
            hints: local,
            task_support: false,
        },
        ToolSpec {
            name: "status",
            title: "Server status",
            description: "Providers and why one is unavailable, the model catalogue and its refresh, conversation storage and whether it answers, Supabase spool and uploads, observability agent link, calls in flight, tasks.",
            input_schema: no_input(),
            output_schema: status_output_schema(),
            hints: Hints {
                idempotent: false,
                ..local
            },
            task_support: false,
        },
    ]
}

/// The label for a tool name, bounded for metrics.
pub fn tool_label(name: &str) -> Tool {
    match name {
        "chat" => Tool::Chat,
        "listmodels" => Tool::ListModels,
        "version" => Tool::Version,
        "status" => Tool::Status,
        _ => Tool::Unknown,
    }
}

/// The MCP protocol versions the daemon answers `initialize` for.
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

pub struct Tools {
    chat: Arc<ChatService>,
    emitter: EventEmitter,
    tasks: Arc<TaskStore>,
    started: Instant,
    max_result_bytes: usize,
    /// EXAI_MODELS_REFRESH_S; `None` when off.
    models_refresh: Option<Duration>,
}

impl Tools {
    pub fn new(
        chat: Arc<ChatService>,
        emitter: EventEmitter,
        tasks: Arc<TaskStore>,
        max_result_bytes: usize,
        models_refresh: Option<Duration>,
    ) -> Self {
        Self {
            chat,
            emitter,
            tasks,
            started: Instant::now(),
            max_result_bytes,
            models_refresh,
        }
    }

    pub fn tasks(&self) -> &Arc<TaskStore> {
        &self.tasks
    }

    /// Checks a call's arguments. Unknown tools and bad arguments are the caller's error.
    pub fn parse(
        &self,
        name: &str,
        arguments: Option<&Map<String, Value>>,
    ) -> Result<Call, InvalidParams> {
        let empty = Map::new();
        let args = arguments.unwrap_or(&empty);
        match name {
            "chat" => parse_chat(args).map(Call::Chat),
            "listmodels" => no_arguments("listmodels", args).map(|()| Call::ListModels),
            "version" => no_arguments("version", args).map(|()| Call::Version),
            "status" => no_arguments("status", args).map(|()| Call::Status),
            other => Err(InvalidParams::UnknownTool(other.to_string())),
        }
    }

    /// Runs a checked call.
    pub async fn run(
        &self,
        call: Call,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
        progress: Option<&CallProgress>,
    ) -> ToolOutput {
        let output = match call {
            Call::Chat(args) => {
                return self.chat(args, correlation, cancel, progress).await;
            }
            Call::ListModels => self.listmodels(),
            Call::Version => version(),
            Call::Status => self.status(),
        };
        truncate(output, self.max_result_bytes)
    }

    /// [`parse`](Self::parse), then [`run`](Self::run).
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<&Map<String, Value>>,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
        progress: Option<&CallProgress>,
    ) -> Result<ToolOutput, InvalidParams> {
        let call = self.parse(name, arguments)?;
        Ok(self.run(call, correlation, cancel, progress).await)
    }

    async fn chat(
        &self,
        args: ChatArgs,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
        progress: Option<&CallProgress>,
    ) -> ToolOutput {
        match self.chat.chat(args, correlation, cancel, progress).await {
            Ok(answer) => chat_output(answer, self.max_result_bytes),
            Err(e) => ToolOutput::error(chat_error_text(&e)),
        }
    }

    fn listmodels(&self) -> ToolOutput {
        let catalogue = self.chat.catalogue().snapshot();
        let default = self.chat.default_model();
        let mut lines = vec![format!(
            "Default model: {default}. Name a model below (or an alias), \"auto\", or any model of a provider as kimi:<id> or glm:<id>."
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
            json!({"default_model": default, "providers": providers, "models": models}),
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

    fn status(&self) -> ToolOutput {
        let pipe = self.emitter.stats();
        let limits = self.chat.limits();
        let catalogue = self.chat.catalogue().snapshot();
        let providers: Vec<Value> = SERVED
            .iter()
            .map(|p| {
                let why = self.chat.unavailable(*p);
                json!({"provider": p.as_str(), "available": why.is_none(), "reason": why,
                       "in_flight": limits.provider_in_flight(*p), "limit_setting": provider_setting(*p),
                       "base_url": self.chat.provider(*p).map(|c| c.base_url().to_string())})
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
            "tasks": self.tasks.summary(),
        });
        let text = serde_json::to_string_pretty(&status).unwrap_or_default();
        ToolOutput::structured(text, status)
    }
}

fn chat_output(mut answer: ChatAnswer, max_bytes: usize) -> ToolOutput {
    // The answer travels twice (text and structuredContent) and the reasoning once: the
    // reasoning gets a quarter of the budget, the answer half of what is left.
    let mut truncated = false;
    let mut notices = Vec::new();
    if let Some(reasoning) = answer.reasoning.as_mut() {
        if let Some(original) = cut(reasoning, max_bytes / 4) {
            truncated = true;
            notices.push(format!(
                "[truncated: the reasoning was {original} bytes; EXAI_MAX_RESULT_BYTES leaves it {} here]",
                max_bytes / 4
            ));
        }
    }
    let reasoning_bytes = answer.reasoning.as_deref().map_or(0, escaped_str_len);
    let answer_budget = max_bytes.saturating_sub(reasoning_bytes + 1024) / 2;
    if let Some(original) = cut(&mut answer.content, answer_budget) {
        truncated = true;
        notices.insert(
            0,
            format!(
                "[truncated: the answer was {original} bytes; this server returns at most {max_bytes} (EXAI_MAX_RESULT_BYTES)]"
            ),
        );
    }
    let mut text = answer.content.clone();
    for notice in &notices {
        text.push_str("\n\n");
        text.push_str(notice);
    }
    if let Some(notice) = &answer.history_notice {
        text.push_str(&format!("\n\n[conversation history unavailable: {notice}]"));
    }
    text.push_str(&format!(
        "\n\ncontinuation_id: {} (pass it to chat as continuation_id to continue this conversation)",
        answer.continuation_id
    ));
    let ms = |d: Duration| d.as_millis() as u64;
    let continuation_id = answer.continuation_id.clone();
    let mut structured = json!({
        "answer": answer.content,
        "model": answer.model,
        "provider": answer.provider.as_str(),
        "continuation_id": answer.continuation_id,
        "history_available": answer.history_notice.is_none(),
        "history_turns": answer.history_turns,
        "thinking": answer.thinking.as_str(),
        "usage": {"input_tokens": answer.usage.prompt_tokens, "output_tokens": answer.usage.completion_tokens,
                  "reasoning_tokens": answer.usage.reasoning_tokens, "cached_tokens": answer.usage.cached_tokens},
        "latency_ms": ms(answer.latency),
        "attempts": answer.attempts,
    });
    let fields = structured.as_object_mut().expect("an object");
    if let Some(notice) = answer.history_notice {
        fields.insert("history_notice".into(), notice.into());
    }
    if let Some(ttft) = answer.ttft {
        fields.insert("time_to_first_token_ms".into(), ms(ttft).into());
    }
    if let Some(ttfa) = answer.ttfa {
        fields.insert("time_to_first_answer_token_ms".into(), ms(ttfa).into());
    }
    if let Some(reasoning) = answer.reasoning {
        fields.insert("reasoning".into(), reasoning.into());
    }
    if truncated {
        fields.insert("truncated".into(), true.into());
    }
    let mut output = ToolOutput::structured(text, structured);
    output
        .meta
        .insert("continuation_id".into(), continuation_id.into());
    output
}

fn storage_status(chat: &ChatService) -> Value {
    let health = chat.storage_health();
    json!({"backend": chat.storage_backend().as_str(), "reachable": health.reachable, "error": health.error})
}

fn supabase_status(chat: &ChatService) -> Value {
    match chat.persistence() {
        None => json!({"enabled": false}),
        Some(p) => {
            let s = p.status();
            json!({"enabled": true, "spool_records": s.spool.depth, "spool_bytes": s.spool.bytes,
                   "spool_max_bytes": s.spool.max_bytes, "spool_refused": s.spool.refused,
                   "uploaded": s.uploaded, "failing": s.failing})
        }
    }
}

fn version() -> ToolOutput {
    let info =
        json!({"name": "exai", "version": crate::VERSION, "protocol_versions": PROTOCOL_VERSIONS});
    let text = format!(
        "exai {} (MCP protocol versions {})",
        crate::VERSION,
        PROTOCOL_VERSIONS.join(", ")
    );
    ToolOutput::structured(text, info)
}

fn chat_error_text(e: &ChatError) -> String {
    match e {
        ChatError::Cancelled => "cancelled by the client".into(),
        other => other.to_string(),
    }
}

fn no_arguments(tool: &'static str, args: &Map<String, Value>) -> Result<(), InvalidParams> {
    match args.keys().next() {
        None => Ok(()),
        Some(k) => Err(InvalidParams::BadArguments {
            tool,
            why: format!("takes no arguments, got {k:?}"),
        }),
    }
}

fn parse_chat(args: &Map<String, Value>) -> Result<ChatArgs, InvalidParams> {
    let bad = |why: String| InvalidParams::BadArguments { tool: "chat", why };
    for key in args.keys() {
        if !matches!(
            key.as_str(),
            "prompt"
                | "model"
                | "temperature"
                | "system_prompt"
                | "continuation_id"
                | "stream"
                | "thinking"
                | "include_reasoning"
                | "max_tokens"
        ) {
            return Err(bad(format!("unknown argument {key:?}")));
        }
    }
    let string = |key: &str| -> Result<Option<String>, InvalidParams> {
        match args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(format!(
                "{key} must be a string, got {}",
                type_name(other)
            ))),
        }
    };
    let boolean = |key: &str, default: bool| -> Result<bool, InvalidParams> {
        match args.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(bad(format!(
                "{key} must be true or false, got {}",
                type_name(other)
            ))),
        }
    };
    let prompt = string("prompt")?
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| bad("prompt is required and must not be empty".into()))?;
    let temperature = match args.get("temperature") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Some(t as f32),
            _ => return Err(bad(format!("temperature must be between 0 and 2, got {n}"))),
        },
        Some(other) => {
            return Err(bad(format!(
                "temperature must be a number, got {}",
                type_name(other)
            )))
        }
    };
    let max_tokens = match args.get("max_tokens") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(t @ 1..=1_000_000) => Some(t as u32),
            _ => {
                return Err(bad(format!(
                    "max_tokens must be a whole number from 1 to 1000000, got {n}"
                )))
            }
        },
        Some(other) => {
            return Err(bad(format!(
                "max_tokens must be a number, got {}",
                type_name(other)
            )))
        }
    };
    let thinking = match string("thinking")? {
        None => ThinkingChoice::Auto,
        Some(t) => ThinkingChoice::parse(&t).ok_or_else(|| {
            bad(format!(
                "thinking must be \"auto\", \"enabled\" or \"disabled\", got {t:?}"
            ))
        })?,
    };
    let model = string("model")?;
    if let Some(model) = model.as_deref().filter(|m| !m.trim().is_empty()) {
        catalogue::parse(model).map_err(|why| bad(format!("model {model:?}: {why}")))?;
    }
    Ok(ChatArgs {
        prompt,
        model,
        temperature,
        system_prompt: string("system_prompt")?,
        continuation_id: string("continuation_id")?,
        stream: boolean("stream", true)?,
        thinking,
        include_reasoning: boolean("include_reasoning", false)?,
        max_tokens,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Bytes `c` takes inside a JSON string.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_str_len(s: &str) -> usize {
    s.chars().map(escaped_len).sum()
}

/// Cuts `text` where its JSON-escaped size passes `max` bytes, at a character boundary;
/// returns its original length when it cut. It is the escaped text (quotes, backslashes
/// and newlines doubled) that travels, and the Python SDK's WebSocket client drops frames
/// over 1 MiB.
fn cut(text: &mut String, max: usize) -> Option<usize> {
    let mut escaped = 0;
    let end = text.char_indices().find_map(|(at, c)| {
        escaped += escaped_len(c);
        (escaped > max).then_some(at)
    })?;
    let original = text.len();
    text.truncate(end);
    Some(original)
}

/// Cuts a result's text above `max` bytes, with a notice.
fn truncate(mut output: ToolOutput, max: usize) -> ToolOutput {
    let Some(original) = cut(&mut output.text, max) else {
        return output;
    };
    output.text.push_str(&format!(
        "\n\n[truncated: the result was {original} bytes; this server returns at most {max} (EXAI_MAX_RESULT_BYTES)]"
    ));
    output.meta.insert("truncated".into(), true.into());
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::wire::Usage;
    use exai_proto::Provider;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn chat_arguments_are_checked_with_reasons() {
        let ok = parse_chat(&args(json!({"prompt": "hi", "temperature": 0.5, "stream": false,
                                         "thinking": "disabled", "include_reasoning": true, "max_tokens": 100})))
        .unwrap();
        assert_eq!(
            (
                ok.prompt.as_str(),
                ok.temperature,
                ok.stream,
                ok.thinking,
                ok.include_reasoning,
                ok.max_tokens
            ),
            (
                "hi",
                Some(0.5),
                false,
                ThinkingChoice::Disabled,
                true,
                Some(100)
            )
        );
        let cases = [
            (json!({}), "prompt is required"),
            (
                json!({"prompt": 3}),
                "prompt must be a string, got a number",
            ),
            (
                json!({"prompt": "x", "temperature": 9}),
                "temperature must be between 0 and 2",
            ),
            (
                json!({"prompt": "x", "stream": "yes"}),
                "stream must be true or false",
            ),
            (
                json!({"prompt": "x", "nope": 1}),
                "unknown argument \"nope\"",
            ),
            (
                json!({"prompt": "x", "thinking": "maybe"}),
                "thinking must be \"auto\", \"enabled\" or \"disabled\"",
            ),
            (
                json!({"prompt": "x", "max_tokens": 0}),
                "max_tokens must be a whole number from 1 to 1000000",
            ),
            (
                json!({"prompt": "x", "model": "kimi:"}),
                "model \"kimi:\": a model id is 1 to 128 bytes",
            ),
            (
                json!({"prompt": "x", "include_reasoning": 1}),
                "include_reasoning must be true or false",
            ),
        ];
        for (input, expected) in cases {
            let err = parse_chat(&args(input)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    fn answer(content: &str) -> ChatAnswer {
        ChatAnswer {
            content: content.into(),
            reasoning: None,
            model: "glm-5".into(),
            provider: Provider::Glm,
            continuation_id: "c-1".into(),
            history_turns: 0,
            history_notice: None,
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
                reasoning_tokens: 2,
                cached_tokens: 1,
            },
            ttft: Some(Duration::from_millis(10)),
            ttfa: Some(Duration::from_millis(20)),
            latency: Duration::from_millis(30),
            attempts: 1,
            thinking: ThinkingChoice::Auto,
        }
    }

    #[test]
    fn a_chat_answer_ends_with_how_to_continue_and_is_structured() {
        let out = chat_output(answer("hello"), 10_000);
        assert_eq!(
            out.text,
            "hello\n\ncontinuation_id: c-1 (pass it to chat as continuation_id to continue this conversation)"
        );
        let s = out.structured.unwrap();
        assert_eq!(s["continuation_id"], "c-1");
        assert_eq!(s["usage"]["reasoning_tokens"], 2);
        assert_eq!(s["time_to_first_answer_token_ms"], 20);
        assert_eq!(out.meta.keys().collect::<Vec<_>>(), ["continuation_id"]);
    }

    #[test]
    fn long_answers_are_cut_with_a_notice() {
        let out = chat_output(answer(&"é".repeat(10_000)), 8_000);
        let s = out.structured.unwrap();
        assert_eq!(s["truncated"], true);
        let kept = s["answer"].as_str().unwrap();
        assert!(kept.len() <= (8_000 - 1024) / 2 && !kept.is_empty());
        assert!(out.text.contains("[truncated: the answer was 20000 bytes"));
        assert!(out.text.ends_with("to continue this conversation)"));

        // Escaping counts: 600 newlines are 1,200 bytes on the wire.
        let mut text = "\n".repeat(600);
        assert_eq!(cut(&mut text, 1000), Some(600));
        assert_eq!(text.len(), 500);
        let short = ToolOutput::structured("ok".into(), json!({}));
        assert_eq!(truncate(short.clone(), 1000), short);
    }

    #[test]
    fn every_tool_has_object_schemas_and_hints() {
        for spec in specs() {
            assert_eq!(spec.input_schema["type"], "object", "{}", spec.name);
            assert_eq!(spec.output_schema["type"], "object", "{}", spec.name);
            assert_ne!(tool_label(spec.name), Tool::Unknown);
            assert!(!spec.title.is_empty());
        }
    }
}
