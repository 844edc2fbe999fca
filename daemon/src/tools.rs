//! The four tools — `chat`, `listmodels`, `version`, `status` — as plain functions over
//! JSON, so the MCP transport only adapts types. Arguments are validated here: a bad one
//! is the caller's error (-32602), a failed model call is a result with `isError`.

use crate::chat::{ChatArgs, ChatError, ChatService};
use crate::providers::limits::provider_setting;
use crate::providers::models::MODELS;
use crate::supabase::Persisted;
use crate::EventEmitter;
use exai_proto::{CorrelationId, Provider, Tool};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// A tool as `tools/list` describes it.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
}

/// What a tool call produced: text for the client, `isError`, and `_meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
    pub meta: Map<String, Value>,
}

/// The caller's mistake, answered with JSON-RPC -32602.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParams {
    #[error("unknown tool {0:?}; tools/list names the tools this server has")]
    UnknownTool(String),
    #[error("invalid arguments for {tool}: {why}")]
    BadArguments { tool: &'static str, why: String },
}

pub fn specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "chat",
            description: "Ask a Kimi or GLM model. Pass continuation_id from an earlier answer to continue that conversation.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "prompt": {"type": "string", "description": "What to ask.", "minLength": 1},
                    "model": {"type": "string", "description": "Model name or alias (see listmodels); \"auto\" picks an available one. Default: the server's DEFAULT_MODEL."},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "system_prompt": {"type": "string", "description": "Instructions placed before the conversation."},
                    "continuation_id": {"type": "string", "description": "Continue the conversation this id names (from an earlier answer's _meta).", "pattern": "^[A-Za-z0-9._:-]{1,128}$", "maxLength": CONTINUATION_ID_MAX_BYTES},
                    "stream": {"type": "boolean", "description": "Stream from the provider (measures time to first token). Default true."}
                },
                "required": ["prompt"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "listmodels",
            description: "List the models this server offers, their aliases, and whether their provider is available.",
            input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        },
        ToolSpec {
            name: "version",
            description: "The server's name, version and the MCP protocol versions it speaks.",
            input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        },
        ToolSpec {
            name: "status",
            description: "Providers and why one is unavailable, models, conversation storage and whether it answers, Supabase spool and uploads, observability agent link, calls in flight.",
            input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
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
    started: Instant,
    max_result_bytes: usize,
    /// The server's connection and session counts, for `status`; set once it exists.
    connections: std::sync::OnceLock<ConnectionReport>,
}

/// Reads the server's connection and session counts as JSON.
pub type ConnectionReport = Box<dyn Fn() -> Value + Send + Sync>;

impl Tools {
    pub fn new(chat: Arc<ChatService>, emitter: EventEmitter, max_result_bytes: usize) -> Self {
        Self {
            chat,
            emitter,
            started: Instant::now(),
            max_result_bytes,
            connections: std::sync::OnceLock::new(),
        }
    }

    /// Lets `status` show the server's connections and sessions.
    pub fn report_connections(&self, report: ConnectionReport) {
        let _ = self.connections.set(report);
    }

    /// Runs tool `name`. Unknown tools and bad arguments are the caller's error.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<&Map<String, Value>>,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
    ) -> Result<ToolOutput, InvalidParams> {
        let empty = Map::new();
        let args = arguments.unwrap_or(&empty);
        let output = match name {
            "chat" => self.chat(parse_chat(args)?, correlation, cancel).await,
            "listmodels" => no_arguments("listmodels", args).map(|()| self.listmodels())?,
            "version" => no_arguments("version", args).map(|()| version())?,
            "status" => no_arguments("status", args).map(|()| self.status())?,
            other => return Err(InvalidParams::UnknownTool(other.to_string())),
        };
        Ok(truncate(output, self.max_result_bytes))
    }

    async fn chat(
        &self,
        args: ChatArgs,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        match self.chat.chat(args, correlation, cancel).await {
            Ok(answer) => {
                let mut text = answer.content;
                if let Some(notice) = &answer.history_notice {
                    text.push_str(&format!("\n\n[conversation history unavailable: {notice}]"));
                }
                let mut meta = Map::new();
                meta.insert("continuation_id".into(), answer.continuation_id.into());
                meta.insert("model".into(), answer.model.into());
                meta.insert("provider".into(), answer.provider.as_str().into());
                meta.insert("history_turns".into(), answer.history_turns.into());
                meta.insert(
                    "history_available".into(),
                    answer.history_notice.is_none().into(),
                );
                meta.insert(
                    "usage".into(),
                    json!({"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens}),
                );
                meta.insert(
                    "latency_ms".into(),
                    (answer.latency.as_millis() as u64).into(),
                );
                if let Some(ttft) = answer.ttft {
                    meta.insert("ttft_ms".into(), (ttft.as_millis() as u64).into());
                }
                meta.insert("attempts".into(), answer.attempts.into());
                if let Some(persisted) = &answer.persisted {
                    say_how_persisted(persisted, &mut text, &mut meta);
                }
                ToolOutput {
                    text,
                    is_error: false,
                    meta,
                }
            }
            Err(e) => ToolOutput {
                text: chat_error_text(&e),
                is_error: true,
                meta: Map::new(),
            },
        }
    }

    fn listmodels(&self) -> ToolOutput {
        let mut lines = vec![format!("Default model: {}", self.chat.default_model().name)];
        for provider in Provider::ALL {
            let state = match self.chat.unavailable(*provider) {
                None => "available".to_string(),
                Some(why) => format!("unavailable: {why}"),
            };
            lines.push(format!("\n{provider} ({state})"));
            for m in MODELS.iter().filter(|m| m.provider == *provider) {
                let aliases = if m.aliases.is_empty() {
                    String::new()
                } else {
                    format!(" (aliases: {})", m.aliases.join(", "))
                };
                lines.push(format!(
                    "- {}{aliases}: {}; context {} tokens",
                    m.name, m.description, m.context_window
                ));
            }
        }
        let models: Vec<Value> = MODELS
            .iter()
            .map(|m| {
                json!({"name": m.name, "provider": m.provider.as_str(), "aliases": m.aliases,
                       "available": self.chat.unavailable(m.provider).is_none(), "context_window": m.context_window})
            })
            .collect();
        let mut meta = Map::new();
        meta.insert("models".into(), models.into());
        ToolOutput {
            text: lines.join("\n"),
            is_error: false,
            meta,
        }
    }

    fn status(&self) -> ToolOutput {
        let pipe = self.emitter.stats();
        let limits = self.chat.limits();
        let providers: Vec<Value> = Provider::ALL
            .iter()
            .map(|p| {
                let why = self.chat.unavailable(*p);
                json!({"provider": p.as_str(), "available": why.is_none(), "reason": why,
                       "in_flight": limits.provider_in_flight(*p), "limit_setting": provider_setting(*p),
                       "base_url": self.chat.provider(*p).map(|c| crate::redact::redact_url(c.base_url()))})
            })
            .collect();
        let status = json!({
            "version": crate::VERSION,
            "uptime_s": self.started.elapsed().as_secs(),
            "providers": providers,
            "models": MODELS.len(),
            "default_model": self.chat.default_model().name,
            "storage": storage_status(&self.chat),
            "supabase": supabase_status(&self.chat),
            "agent": {"connected": pipe.connected, "events_dropped": pipe.dropped.total(), "queue_depth": pipe.queue_depth},
            "in_flight": limits.in_flight(),
            "connections": self.connections.get().map(|report| report()),
        });
        let text = serde_json::to_string_pretty(&status).unwrap_or_default();
        let Value::Object(meta) = status else {
            unreachable!("status is an object")
        };
        ToolOutput {
            text,
            is_error: false,
            meta,
        }
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

fn version() -> ToolOutput {
    let info =
        json!({"name": "exai", "version": crate::VERSION, "protocol_versions": PROTOCOL_VERSIONS});
    let text = format!(
        "exai {} (MCP protocol versions {})",
        crate::VERSION,
        PROTOCOL_VERSIONS.join(", ")
    );
    let Value::Object(meta) = info else {
        unreachable!("version info is an object")
    };
    ToolOutput {
        text,
        is_error: false,
        meta,
    }
}

/// Tells the client what became of its turn in the Supabase spool: `_meta.persisted`
/// (`written`, `queued` or `refused`), and a line in the text unless it was written.
fn say_how_persisted(persisted: &Persisted, text: &mut String, meta: &mut Map<String, Value>) {
    let state = match persisted {
        Persisted::Written => "written",
        Persisted::Queued { waited } => {
            text.push_str(&format!(
                "\n\n[this turn is queued for Supabase but not yet on disk: the spool's disk did not answer within {} ms (EXAI_SPOOL_WRITE_TIMEOUT_MS); it is written when the disk recovers]",
                waited.as_millis()
            ));
            "queued"
        }
        Persisted::Refused(why) => {
            text.push_str(&format!("\n\n[this turn will not reach Supabase: {why}]"));
            "refused"
        }
    };
    meta.insert("persisted".into(), state.into());
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

/// The `chat` tool's arguments, checked.
pub fn parse_chat(args: &Map<String, Value>) -> Result<ChatArgs, InvalidParams> {
    let bad = |why: String| InvalidParams::BadArguments { tool: "chat", why };
    for key in args.keys() {
        if !matches!(
            key.as_str(),
            "prompt" | "model" | "temperature" | "system_prompt" | "continuation_id" | "stream"
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
    let stream = match args.get("stream") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(bad(format!(
                "stream must be true or false, got {}",
                type_name(other)
            )))
        }
    };
    Ok(ChatArgs {
        prompt,
        model: string("model")?,
        temperature,
        system_prompt: string("system_prompt")?,
        continuation_id: check_continuation_id(string("continuation_id")?)?,
        stream,
    })
}

/// Longest `continuation_id` accepted, in bytes.
pub const CONTINUATION_ID_MAX_BYTES: usize = 128;

/// A `continuation_id` becomes a Redis key, a map key and a Supabase primary key, so it
/// is held to a small alphabet every one of them stores as it is: at most
/// [`CONTINUATION_ID_MAX_BYTES`] of `[A-Za-z0-9._:-]`. Surrounding whitespace is ignored
/// and an empty id starts a new conversation, as before. The refusal names the rule, not
/// the value, which may be huge or unprintable.
pub fn check_continuation_id(id: Option<String>) -> Result<Option<String>, InvalidParams> {
    let Some(id) = id else { return Ok(None) };
    let trimmed = id.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    const RULE: &str = "continuation_id must be at most 128 bytes of letters, digits, '.', '_', ':' and '-' ([A-Za-z0-9._:-]{1,128})";
    let why = if trimmed.len() > CONTINUATION_ID_MAX_BYTES {
        format!("{RULE}; got {} bytes", trimmed.len())
    } else if let Some(at) = trimmed
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')))
    {
        format!("{RULE}; byte {at} is outside that set")
    } else {
        return Ok(Some(trimmed.to_string()));
    };
    Err(InvalidParams::BadArguments { tool: "chat", why })
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

/// Cuts text whose JSON-escaped size is above `max` bytes, at a character boundary, and
/// says so: the Python SDK's WebSocket client drops frames over 1 MiB, and it is the
/// escaped text (quotes, backslashes and newlines doubled) that travels.
fn truncate(mut output: ToolOutput, max: usize) -> ToolOutput {
    let mut escaped = 0;
    let mut end = None;
    for (at, c) in output.text.char_indices() {
        escaped += escaped_len(c);
        if escaped > max {
            end = Some(at);
            break;
        }
    }
    let Some(end) = end else {
        return output;
    };
    let original = output.text.len();
    output.text.truncate(end);
    output.text.push_str(&format!(
        "\n\n[truncated: the result was {original} bytes; this server returns at most {max} (EXAI_MAX_RESULT_BYTES)]"
    ));
    output.meta.insert("truncated".into(), true.into());
    output.meta.insert("original_bytes".into(), original.into());
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn chat_arguments_are_checked_with_reasons() {
        let ok = parse_chat(&args(
            json!({"prompt": "hi", "temperature": 0.5, "stream": false}),
        ))
        .unwrap();
        assert_eq!(
            (ok.prompt.as_str(), ok.temperature, ok.stream),
            ("hi", Some(0.5), false)
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
        ];
        for (input, expected) in cases {
            let err = parse_chat(&args(input)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn continuation_ids_are_short_and_plain() {
        let ok = |id: &str| check_continuation_id(Some(id.into())).unwrap();
        assert_eq!(ok("  a-B_9.x:y  "), Some("a-B_9.x:y".into()));
        assert_eq!(ok(""), None);
        assert_eq!(ok("   "), None);
        assert_eq!(check_continuation_id(None).unwrap(), None);
        assert_eq!(ok(&"x".repeat(128)), Some("x".repeat(128)));
        let refused = |id: &str| {
            check_continuation_id(Some(id.into()))
                .unwrap_err()
                .to_string()
        };
        let long = refused(&"x".repeat(129));
        assert!(long.contains("at most 128 bytes"), "{long}");
        assert!(long.ends_with("got 129 bytes"), "{long}");
        for bad in ["a\0b", "a b", "é", "a/b", "a\nb", "{}"] {
            let why = refused(bad);
            assert!(why.contains("[A-Za-z0-9._:-]{1,128}"), "{bad:?}: {why}");
            assert!(why.contains("is outside that set"), "{bad:?}: {why}");
        }
        let args = args(json!({"prompt": "x", "continuation_id": "nul\u{0}"}));
        assert!(matches!(
            parse_chat(&args),
            Err(InvalidParams::BadArguments { tool: "chat", .. })
        ));
    }

    #[test]
    fn long_results_are_cut_with_a_notice() {
        let out = ToolOutput {
            text: "é".repeat(1000),
            is_error: false,
            meta: Map::new(),
        };
        let cut = truncate(out, 1001);
        assert!(cut.text.starts_with(&"é".repeat(500)));
        assert!(!cut.text.starts_with(&"é".repeat(501)));
        assert!(cut
            .text
            .contains("[truncated: the result was 2000 bytes; this server returns at most 1001"));
        assert_eq!(cut.meta["truncated"], json!(true));

        // Escaping counts: 600 newlines are 1,200 bytes on the wire.
        let out = ToolOutput {
            text: "\n".repeat(600),
            is_error: false,
            meta: Map::new(),
        };
        let cut = truncate(out, 1000);
        // 500 newlines fit (1,000 escaped bytes); the notice begins with two more.
        assert_eq!(cut.text.find('['), Some(502), "{:?}", &cut.text[..10]);
        let short = ToolOutput {
            text: "ok".into(),
            is_error: false,
            meta: Map::new(),
        };
        assert_eq!(truncate(short.clone(), 1000), short);
    }

    #[test]
    fn every_tool_has_an_object_schema() {
        for spec in specs() {
            assert_eq!(spec.input_schema["type"], "object", "{}", spec.name);
            assert_ne!(tool_label(spec.name), Tool::Unknown);
        }
    }
}
