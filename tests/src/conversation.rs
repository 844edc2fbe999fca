//! Chats that continue conversations, and what became of those conversations: in the
//! provider's requests (`fake-llm`'s `/_requests`) and in Redis, read in either layout a
//! daemon has written.

use crate::fake_llm::FakeLlmProc;
use crate::mcp::{self, RawWs};
use crate::metrics::http_get;
use crate::redis::{RedisServer, Reply};
use serde_json::{json, Value};

/// An initialized MCP session over WebSocket.
pub fn session(ws_url: &str) -> RawWs {
    let mut ws = mcp::connect(ws_url, &[]).unwrap();
    ws.initialize("2025-11-25");
    ws
}

/// A chat that must be answered; returns the tool result.
pub fn chat(ws: &mut RawWs, prompt: &str, continuation: Option<&str>) -> Value {
    let mut args = json!({"prompt": prompt});
    if let Some(id) = continuation {
        args["continuation_id"] = id.into();
    }
    let response = ws.call_tool("chat", args);
    let result = response["result"].clone();
    assert_eq!(result["isError"], false, "{response}");
    result
}

/// The `continuation_id` a chat result carries.
pub fn continuation(result: &Value) -> String {
    result["_meta"]["continuation_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The text of a chat result.
pub fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap()
}

/// The `status` tool's report.
pub fn status(ws: &mut RawWs) -> Value {
    ws.call_tool("status", json!({}))["result"]["structuredContent"].clone()
}

/// The messages (role, content) of the provider request whose last message is `prompt`.
pub fn sent_to_provider(llm: &FakeLlmProc, prompt: &str) -> Vec<(String, String)> {
    let (_, body) = http_get(llm.port, "/_requests").expect("fake-llm answers /_requests");
    let requests: Vec<Value> = serde_json::from_str(&body).unwrap();
    let request = requests
        .iter()
        .rev()
        .find(|r| {
            r["body"]["messages"]
                .as_array()
                .and_then(|m| m.last())
                .map(|m| &m["content"])
                == Some(&json!(prompt))
        })
        .unwrap_or_else(|| panic!("no provider request ending with {prompt:?}"));
    request["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The Redis key of conversation `id`.
pub fn key(id: &str) -> String {
    format!("exai:thread:{id}")
}

/// The turns Redis holds for conversation `id`, oldest first, whichever layout holds
/// them: a list of turns (one JSON each), or the older string `{"turns":[…]}`.
pub fn stored_turns(redis: &RedisServer, id: &str) -> Vec<Value> {
    let key = key(id);
    match redis.command(&["TYPE", &key]).text().as_deref() {
        Some("none") => Vec::new(),
        Some("list") => match redis.command(&["LRANGE", &key, "0", "-1"]) {
            Reply::Array(items) => items
                .iter()
                .map(|item| serde_json::from_str(&item.text().expect("a turn")).unwrap())
                .collect(),
            other => panic!("LRANGE {key}: {other:?}"),
        },
        Some("string") => {
            let value: Value =
                serde_json::from_str(&redis.command(&["GET", &key]).text().unwrap()).unwrap();
            value["turns"].as_array().cloned().unwrap_or_default()
        }
        other => panic!("{key} holds {other:?}"),
    }
}

/// The prompts of the turns Redis holds for conversation `id`, oldest first.
pub fn stored_prompts(redis: &RedisServer, id: &str) -> Vec<String> {
    stored_turns(redis, id)
        .iter()
        .map(|t| t["user"].as_str().unwrap().to_string())
        .collect()
}
