//! What `tools/list` says of each tool: input and output schemas, title, annotations,
//! and whether it may run as a task.

use exai_proto::Tool;
use serde_json::{json, Value};

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
            "continuation_id": {"type": "string", "description": "The conversation's handle, minted by the server: pass it back as continuation_id to continue this conversation. It is all the state a conversation needs: no MCP session is required (MCP 2026-07-28 has none), and any server sharing the conversation store can continue it."},
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
            "truncated": {"type": "boolean"},
            "persisted": {"type": "string", "enum": ["written", "queued", "refused"], "description": "With Supabase on: the turn reached the spool's disk, is queued for it (the disk is slow), or will not reach Supabase."}
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
            "default_now": {"type": ["string", "null"], "description": "What a chat naming no model gets now."},
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
            "tasks": obj,
            "connections": {"type": ["object", "null"], "description": "WebSocket connections and Streamable HTTP sessions open, and the caps."}
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
            description: "Ask a Kimi or GLM model. The answer ends with a continuation_id line: that id is the conversation's handle; pass it as continuation_id to continue the conversation with its history, from any session or none (it needs no MCP session). Thinking models reason before answering; include_reasoning returns that reasoning.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "prompt": {"type": "string", "description": "What to ask.", "minLength": 1},
                    "model": {"type": "string", "description": "A model name or alias (see listmodels), \"auto\" for an available one, or any model of a provider as kimi:<id> or glm:<id>. Default: the server's DEFAULT_MODEL."},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "system_prompt": {"type": "string", "description": "Instructions placed before the conversation."},
                    "continuation_id": {"type": "string", "description": "Continue the conversation this handle names (the continuation_id of an earlier answer, from any session or none).", "pattern": "^[A-Za-z0-9._:-]{1,128}$", "maxLength": super::args::CONTINUATION_ID_MAX_BYTES},
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
pub const PROTOCOL_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

#[cfg(test)]
mod tests {
    use super::*;

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
