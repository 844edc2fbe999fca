//! The tools' arguments, checked with reasons a caller can act on.

use super::InvalidParams;
use crate::chat::{ChatArgs, ThinkingChoice};
use crate::providers::catalogue;
use serde_json::{Map, Value};

pub(super) fn none(tool: &'static str, args: &Map<String, Value>) -> Result<(), InvalidParams> {
    match args.keys().next() {
        None => Ok(()),
        Some(k) => Err(InvalidParams::BadArguments {
            tool,
            why: format!("takes no arguments, got {k:?}"),
        }),
    }
}

pub(super) fn chat(args: &Map<String, Value>) -> Result<ChatArgs, InvalidParams> {
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
        continuation_id: check_continuation_id(string("continuation_id")?)?,
        stream: boolean("stream", true)?,
        thinking,
        include_reasoning: boolean("include_reasoning", false)?,
        max_tokens,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn chat_arguments_are_checked_with_reasons() {
        let ok = chat(&args(json!({"prompt": "hi", "temperature": 0.5, "stream": false,
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
            let err = chat(&args(input)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }
}
