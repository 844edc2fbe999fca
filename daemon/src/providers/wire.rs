//! The OpenAI-compatible chat-completions wire format that Kimi and GLM both speak.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Serialize)]
pub struct CompletionRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// `{"type": "enabled" | "disabled"}`, which Moonshot and Z.ai both take; absent leaves
    /// the model's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingField>,
    /// Z.ai's bound on output tokens (reasoning included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Moonshot's: Kimi K2.x honours this one, not `max_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ThinkingField {
    #[serde(rename = "type")]
    pub kind: ThinkingType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingType {
    Enabled,
    Disabled,
}

/// Token counts of a call, whichever shape the provider used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "WireUsage")]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Reasoning included.
    pub completion_tokens: u64,
    /// Of `completion_tokens`, spent thinking.
    pub reasoning_tokens: u64,
    /// Of `prompt_tokens`, served from the provider's cache.
    pub cached_tokens: u64,
}

/// `usage` as sent: OpenAI's shape (`completion_tokens_details.reasoning_tokens`,
/// `prompt_tokens_details.cached_tokens`), which Z.ai uses, or Moonshot's `cached_tokens`
/// directly in `usage`.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionTokensDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Self {
        Usage {
            prompt_tokens: w.prompt_tokens,
            completion_tokens: w.completion_tokens,
            reasoning_tokens: w
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            cached_tokens: w
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .or(w.cached_tokens)
                .unwrap_or(0),
        }
    }
}

/// A whole completion, or one streamed chunk of one: both carry `choices`, and usage
/// either at the top level (OpenAI, GLM) or inside the choice (Moonshot).
#[derive(Debug, Deserialize)]
pub struct Completion {
    #[serde(default)]
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub struct Choice {
    pub message: Option<Content>,
    pub delta: Option<Content>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub struct Content {
    pub content: Option<String>,
    /// What a thinking model reasons before (or instead of) `content`.
    pub reasoning_content: Option<String>,
}

impl Completion {
    pub fn usage(&self) -> Option<Usage> {
        self.usage
            .or_else(|| self.choices.iter().find_map(|c| c.usage))
    }

    pub fn finish_reason(&self) -> Option<&str> {
        self.choices.iter().find_map(|c| c.finish_reason.as_deref())
    }
}

/// An error body: `{"error": {"message", "type", "code"}}`. Moonshot sends `type`
/// (`resource_not_found_error` for an unknown model, HTTP 404); Z.ai sends `code` as a
/// string (`"1211"` for an unknown model, HTTP 400).
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

impl ErrorDetail {
    /// Whether the provider says it does not know the model (or the key may not use it).
    pub fn is_model_not_found(&self, status: u16) -> bool {
        let code = match &self.code {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        (status == 404 && self.kind.as_deref() == Some("resource_not_found_error"))
            || code == "1211"
            || (status == 404 && code == "model_not_found")
    }
}

/// `GET {base}/models`: `{"data": [{"id": …}, …]}`.
#[derive(Debug, Deserialize)]
pub struct ModelList {
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Deserialize)]
pub struct ModelObject {
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_where_each_provider_puts_it() {
        let glm: Completion = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"completion_tokens_details":{"reasoning_tokens":4},"prompt_tokens_details":{"cached_tokens":2}}}"#,
        )
        .unwrap();
        assert_eq!(
            glm.usage(),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
                reasoning_tokens: 4,
                cached_tokens: 2,
            })
        );
        let kimi: Completion = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop","usage":{"prompt_tokens":2,"completion_tokens":4,"cached_tokens":1}}]}"#,
        )
        .unwrap();
        assert_eq!(
            kimi.usage(),
            Some(Usage {
                prompt_tokens: 2,
                completion_tokens: 4,
                reasoning_tokens: 0,
                cached_tokens: 1,
            })
        );
        assert_eq!(kimi.finish_reason(), Some("stop"));
    }

    #[test]
    fn each_provider_s_unknown_model_answer_is_recognised() {
        let kimi: ErrorBody = serde_json::from_str(
            r#"{"error":{"message":"Not found the model kimi-x or Permission denied","type":"resource_not_found_error"}}"#,
        )
        .unwrap();
        assert!(kimi.error.is_model_not_found(404));
        let glm: ErrorBody = serde_json::from_str(
            r#"{"error":{"code":"1211","message":"Unknown Model, please check the model code."},"request_id":"r"}"#,
        )
        .unwrap();
        assert!(glm.error.is_model_not_found(400));
        let other: ErrorBody =
            serde_json::from_str(r#"{"error":{"message":"bad temperature","code":"1210"}}"#)
                .unwrap();
        assert!(!other.error.is_model_not_found(400));
    }

    #[test]
    fn thinking_and_the_output_bound_are_sent_only_when_set() {
        let messages = [Message {
            role: Role::User,
            content: "hi".into(),
        }];
        let request = CompletionRequest {
            model: "glm-5",
            messages: &messages,
            temperature: None,
            stream: true,
            stream_options: None,
            thinking: Some(ThinkingField {
                kind: ThinkingType::Disabled,
            }),
            max_tokens: None,
            max_completion_tokens: Some(100),
        };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["thinking"], serde_json::json!({"type": "disabled"}));
        assert_eq!(json["max_completion_tokens"], 100);
        assert!(json.get("max_tokens").is_none() && json.get("temperature").is_none());
    }
}
