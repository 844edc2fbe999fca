//! The two providers the fake stands in for, told apart by the path: `…/api/paas/…` is
//! Z.ai (GLM), anything else Moonshot (Kimi). They differ in where usage goes, how an
//! unknown model is refused, and which models they serve.

use super::body::Body;
use super::routes::{error, json};
use super::wire::ApiError;
use exai_proto::Provider;
use hyper::{Response, StatusCode};
use serde_json::{json as value, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Kimi,
    Glm,
}

impl Flavour {
    pub fn of_path(path: &str) -> Self {
        if path.contains("/api/paas/") {
            Flavour::Glm
        } else {
            Flavour::Kimi
        }
    }

    pub fn provider(self) -> Provider {
        match self {
            Flavour::Kimi => Provider::Kimi,
            Flavour::Glm => Provider::Glm,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "kimi" => Some(Flavour::Kimi),
            "glm" => Some(Flavour::Glm),
            _ => None,
        }
    }

    /// Usage as this provider writes it: Z.ai in OpenAI's shape, Moonshot with
    /// `cached_tokens` directly in `usage`.
    pub fn usage(self, u: &super::wire::Usage) -> Value {
        match self {
            Flavour::Glm => value!({
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            }),
            Flavour::Kimi => value!({
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
                "cached_tokens": u.cached_tokens,
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            }),
        }
    }

    /// Moonshot puts a stream's usage inside the closing choice; Z.ai at the top.
    pub fn usage_in_choice(self) -> bool {
        self == Flavour::Kimi
    }

    /// The answer to a model the provider does not serve, in its own shape: Moonshot 404
    /// `resource_not_found_error`, Z.ai 400 with code `"1211"`.
    pub fn model_not_found(self, model: &str) -> Response<Body> {
        match self {
            Flavour::Kimi => json(
                StatusCode::NOT_FOUND,
                &value!({"error": {
                    "message": format!("Not found the model {model} or Permission denied"),
                    "type": "resource_not_found_error"}}),
            ),
            Flavour::Glm => json(
                StatusCode::BAD_REQUEST,
                &value!({"error": {"code": "1211", "message": "Unknown Model, please check the model code."},
                         "request_id": "fake-llm"}),
            ),
        }
    }

    /// `GET …/models`, as OpenAI lists models.
    pub fn model_list(self, ids: &[String]) -> Response<Body> {
        let owner = match self {
            Flavour::Kimi => "moonshot",
            Flavour::Glm => "z-ai",
        };
        let data: Vec<Value> = ids
            .iter()
            .map(|id| value!({"id": id, "object": "model", "created": 1_760_000_000u64, "owned_by": owner}))
            .collect();
        json(StatusCode::OK, &value!({"object": "list", "data": data}))
    }

    /// A provider that has no model list answers as for any unknown route.
    pub fn no_model_list(path: &str) -> Response<Body> {
        error(&ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            format!("no route for GET {path}"),
        ))
    }
}
