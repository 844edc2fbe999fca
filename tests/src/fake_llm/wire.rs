//! The OpenAI chat-completions wire format, as Moonshot and Z.ai speak it.

use super::flavour::Flavour;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    /// `{"type": "enabled" | "disabled"}`, as both providers take it.
    #[serde(default)]
    pub thinking: Option<ThinkingParam>,
}

#[derive(Debug, Deserialize)]
pub struct ThinkingParam {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A plain string, or the array-of-parts form that vision-capable APIs accept.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(s) => Cow::Borrowed(s),
            Content::Parts(parts) => Cow::Owned(
                parts
                    .iter()
                    .filter_map(|p| p.text.as_deref())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }
}

impl ChatMessage {
    pub fn text(&self) -> Cow<'_, str> {
        self.content
            .as_ref()
            .map_or(Cow::Borrowed(""), Content::text)
    }
}

impl ChatRequest {
    /// What the real APIs reject even when the JSON parses.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.model.is_empty() {
            return Err(ApiError::invalid(
                "model must not be empty",
                "invalid_model",
            ));
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages must not be empty",
                "invalid_messages",
            ));
        }
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(ApiError::invalid(
                "temperature must be between 0 and 2",
                "invalid_temperature",
            ));
        }
        if let Some(t) = &self.thinking {
            if !matches!(t.kind.as_str(), "enabled" | "disabled") {
                return Err(ApiError::invalid(
                    "thinking.type must be enabled or disabled",
                    "invalid_thinking",
                ));
            }
        }
        Ok(())
    }

    /// Whether the request turned thinking off.
    pub fn thinking_disabled(&self) -> bool {
        self.thinking.as_ref().is_some_and(|t| t.kind == "disabled")
    }

    pub fn last_user_text(&self) -> Cow<'_, str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or(Cow::Borrowed(""), ChatMessage::text)
    }
}

/// Token counts of one reply; each provider writes them its own way (`Flavour::usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Reasoning included.
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub reasoning_tokens: u64,
    /// The words of every message before the last user message: what a provider's
    /// cache would have served again.
    pub cached_tokens: u64,
}

/// What every completion and chunk of one reply shares.
pub struct ReplyMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub flavour: Flavour,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: Value,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

pub fn completion(
    meta: &ReplyMeta,
    content: &str,
    reasoning: Option<&str>,
    usage: Usage,
) -> Vec<u8> {
    let body = Completion {
        id: &meta.id,
        object: "chat.completion",
        created: meta.created,
        model: &meta.model,
        choices: [CompletionChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                reasoning_content: reasoning,
            },
            finish_reason: "stop",
        }],
        usage: meta.flavour.usage(&usage),
    };
    serde_json::to_vec(&body).expect("a completion always serializes")
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

/// One streamed piece: `role` only on the first, nothing at all on the last.
#[derive(Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
}

/// A content chunk when `usage` is `None`; the closing chunk (`finish_reason: "stop"`)
/// when it is given, with usage where the provider puts it.
pub fn chunk(meta: &ReplyMeta, delta: Delta<'_>, usage: Option<Usage>) -> Vec<u8> {
    let usage = usage.map(|u| meta.flavour.usage(&u));
    let in_choice = meta.flavour.usage_in_choice();
    let body = Chunk {
        id: &meta.id,
        object: "chat.completion.chunk",
        created: meta.created,
        model: &meta.model,
        choices: [ChunkChoice {
            index: 0,
            delta,
            finish_reason: usage.as_ref().map(|_| "stop"),
            usage: usage.clone().filter(|_| in_choice),
        }],
        usage: usage.filter(|_| !in_choice),
    };
    serde_json::to_vec(&body).expect("a chunk always serializes")
}

/// An error response in the OpenAI shape: `{"error": {"message", "type", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    pub fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: ErrorDetail {
                message: &self.message,
                kind: self.kind,
                code: self.code,
            },
        };
        serde_json::to_vec(&body).expect("an error always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(flavour: Flavour) -> ReplyMeta {
        ReplyMeta {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m".into(),
            flavour,
        }
    }

    #[test]
    fn the_closing_chunk_carries_stop_and_usage_where_each_provider_puts_it() {
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            reasoning_tokens: 1,
            cached_tokens: 0,
        };
        let v: Value =
            serde_json::from_slice(&chunk(&meta(Flavour::Glm), Delta::default(), Some(usage)))
                .unwrap();
        assert_eq!(v["choices"][0]["delta"], json!({}));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 3);
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            1
        );
        let v: Value =
            serde_json::from_slice(&chunk(&meta(Flavour::Kimi), Delta::default(), Some(usage)))
                .unwrap();
        assert!(v.get("usage").is_none());
        assert_eq!(v["choices"][0]["usage"]["cached_tokens"], 0);

        let first = Delta {
            role: Some("assistant"),
            reasoning_content: Some("hmm"),
            ..Delta::default()
        };
        let v: Value = serde_json::from_slice(&chunk(&meta(Flavour::Glm), first, None)).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(
            v["choices"][0]["delta"],
            json!({"role": "assistant", "reasoning_content": "hmm"})
        );
        assert!(v.get("usage").is_none());
    }

    #[test]
    fn content_parts_join_their_text() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        }))
        .unwrap();
        assert_eq!(req.last_user_text(), "a b");
    }
}
