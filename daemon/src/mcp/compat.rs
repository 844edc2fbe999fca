//! What the transports do around rmcp so that 2025-era clients keep their task shapes on
//! rmcp 3.11, which implements 2026-07-28 and its tasks extension. A message is of the
//! 2026 era when its `_meta` names `io.modelcontextprotocol/protocolVersion`; such
//! messages, and their answers, pass untouched: rmcp serves that revision itself.
//! - tasks (2025-11-25): rmcp 3.11 implements the later tasks extension (SEP-2663), whose
//!   model drops a `tools/call`'s `task` field and routes `tasks/get` and `tasks/cancel`
//!   to handlers that demand that extension's capability. Task requests are renamed
//!   before rmcp parses them to methods it hands to `on_custom_request` (`mcp::tasks`),
//!   and the two answers that advertise tasks — `initialize`'s `capabilities.tasks` and
//!   `tools/list`'s `execution.taskSupport`, fields rmcp's types lack — get them after
//!   rmcp serialized them.
//!
//! Only messages a cheap byte search flags are parsed a second time.

use rmcp::model::{ServerJsonRpcMessage, ServerResult};
use serde_json::{json, Value};

/// The 2025-11-25 task methods and the names rmcp gets instead.
pub const TASK_METHODS: [(&str, &str); 4] = [
    ("tasks/get", "exai/tasks/get"),
    ("tasks/result", "exai/tasks/result"),
    ("tasks/list", "exai/tasks/list"),
    ("tasks/cancel", "exai/tasks/cancel"),
];

/// A task-augmented `tools/call`, renamed.
pub const CALL_AS_TASK: &str = "exai/tasks/call";

/// Where a renamed `tools/call` keeps its `task` (in `params`).
pub const TASK_PARAM: &str = "task";

static LOOK: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 2]> =
    std::sync::LazyLock::new(|| {
        [
            memchr::memmem::Finder::new("tasks/"),
            memchr::memmem::Finder::new("\"task\""),
        ]
    });

/// The `_meta` key that makes a request one of the 2026 era.
pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// Whether a request (as JSON) is of the 2026 era: it names its revision in `_meta`.
pub fn is_modern(message: &Value) -> bool {
    message
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .is_some_and(|meta| meta.contains_key(PROTOCOL_VERSION_KEY))
}

/// Whether an inbound message may need [`inbound`]: a prefilter, so that most messages
/// are parsed once.
pub fn needs_a_look(message: &[u8]) -> bool {
    LOOK.iter().any(|f| f.find(message).is_some())
}

/// What to do with an inbound message.
#[derive(Debug)]
pub enum Inbound {
    /// The message was rewritten in place; pass it on.
    Rewritten,
    /// Pass it on as it is.
    AsIs,
}

/// Renames a 2025-era task request; a 2026 one goes to rmcp as it is.
pub fn inbound(message: &mut Value) -> Inbound {
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Inbound::AsIs;
    };
    if is_modern(message) {
        return Inbound::AsIs;
    }
    if let Some((_, renamed)) = TASK_METHODS.iter().find(|(m, _)| *m == method) {
        message["method"] = (*renamed).into();
        return Inbound::Rewritten;
    }
    let is_task_call = method == "tools/call"
        && message
            .get("params")
            .and_then(|p| p.get(TASK_PARAM))
            .is_some_and(Value::is_object);
    if is_task_call {
        message["method"] = CALL_AS_TASK.into();
        return Inbound::Rewritten;
    }
    Inbound::AsIs
}

/// The server's `tasks` capability (2025-11-25): tool calls may run as tasks, which can
/// be listed and cancelled.
pub fn tasks_capability() -> Value {
    json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
}

/// Adds what rmcp's types cannot carry to a result that advertises tasks; returns whether
/// it changed anything.
pub fn patch_result(result: &mut Value) -> bool {
    // rmcp keeps `resultType` only in answers to 2026 requests, which need no patch.
    if result.get("resultType").is_some() {
        return false;
    }
    if let Some(capabilities) = result
        .get_mut("capabilities")
        .and_then(Value::as_object_mut)
    {
        // 2025 clients get their revision's tasks capability, not 2026's extension.
        capabilities.remove("extensions");
        capabilities.insert("tasks".into(), tasks_capability());
        return true;
    }
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return false;
    };
    let as_tasks: Vec<&str> = crate::tools::specs()
        .iter()
        .filter(|s| s.task_support)
        .map(|s| s.name)
        .collect();
    let mut changed = false;
    for tool in tools {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        if as_tasks.contains(&name) {
            tool["execution"] = json!({"taskSupport": "optional"});
            changed = true;
        }
    }
    changed
}

/// A message as JSON text, with tasks advertised where they belong. Only the
/// `initialize` and `tools/list` results take the slower path.
pub fn to_json(message: &ServerJsonRpcMessage) -> serde_json::Result<String> {
    let advertises = matches!(
        message,
        ServerJsonRpcMessage::Response(r)
            if matches!(&r.result, ServerResult::InitializeResult(_))
                || matches!(&r.result, ServerResult::ListToolsResult(list) if list.result_type.is_none())
    );
    if !advertises {
        return serde_json::to_string(message);
    }
    let mut value = serde_json::to_value(message)?;
    if let Some(result) = value.get_mut("result") {
        patch_result(result);
    }
    serde_json::to_string(&value)
}

/// Whether an inbound HTTP body is a request whose answer advertises tasks.
pub fn answer_advertises(body: &[u8]) -> bool {
    static FIND: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 2]> =
        std::sync::LazyLock::new(|| {
            [
                memchr::memmem::Finder::new("\"initialize\""),
                memchr::memmem::Finder::new("\"tools/list\""),
            ]
        });
    FIND.iter().any(|f| f.find(body).is_some())
}

/// One chunk of an HTTP answer (a JSON body, or server-sent events each whole in its
/// chunk, as rmcp writes them) with tasks advertised.
pub fn patch_chunk(chunk: bytes::Bytes) -> bytes::Bytes {
    let Ok(text) = std::str::from_utf8(&chunk) else {
        return chunk;
    };
    let patch = |json: &str| -> Option<String> {
        let mut value: Value = serde_json::from_str(json).ok()?;
        let result = value.get_mut("result")?;
        patch_result(result).then(|| value.to_string())
    };
    if text.trim_start().starts_with('{') {
        return patch(text).map_or(chunk, bytes::Bytes::from);
    }
    let mut changed = false;
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| match line.strip_prefix("data:") {
            Some(json) => match patch(json.trim_start()) {
                Some(patched) => {
                    changed = true;
                    format!("data: {patched}")
                }
                None => line.to_string(),
            },
            None => line.to_string(),
        })
        .collect();
    if changed {
        bytes::Bytes::from(lines.join("\n"))
    } else {
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_requests_are_renamed_and_others_left_alone() {
        let mut get =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"taskId": "t"}});
        assert!(needs_a_look(get.to_string().as_bytes()));
        assert!(matches!(inbound(&mut get), Inbound::Rewritten));
        assert_eq!(get["method"], "exai/tasks/get");

        let mut call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                              "params": {"name": "chat", "arguments": {"prompt": "a \"task\""}, "task": {"ttl": 1000}}});
        assert!(matches!(inbound(&mut call), Inbound::Rewritten));
        assert_eq!(call["method"], CALL_AS_TASK);

        let mut plain = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                               "params": {"name": "chat", "arguments": {"task": "x"}}});
        assert!(
            needs_a_look(plain.to_string().as_bytes()),
            "a false positive costs a parse"
        );
        assert!(matches!(inbound(&mut plain), Inbound::AsIs));
        assert!(!needs_a_look(
            br#"{"method":"tools/call","params":{"name":"version"}}"#
        ));

        let mut modern = json!({"jsonrpc": "2.0", "id": 4, "method": "tasks/get",
            "params": {"taskId": "t", "_meta": {PROTOCOL_VERSION_KEY: "2026-07-28"}}});
        assert!(matches!(inbound(&mut modern), Inbound::AsIs));
        assert_eq!(
            modern["method"], "tasks/get",
            "a 2026 request keeps its name"
        );
    }

    #[test]
    fn the_answers_that_advertise_tasks_get_them() {
        let sse = bytes::Bytes::from(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"tools\":{}}}}\n\n",
        );
        let patched = patch_chunk(sse);
        let text = std::str::from_utf8(&patched).unwrap();
        assert!(text.starts_with("event: message\ndata: {"), "{text}");
        assert!(text.ends_with("\n\n"), "{text:?}");
        let json: Value =
            serde_json::from_str(text.lines().nth(1).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(json["result"]["capabilities"]["tasks"], tasks_capability());

        let tools = bytes::Bytes::from(
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"chat"},{"name":"version"}]}}"#,
        );
        let json: Value = serde_json::from_slice(&patch_chunk(tools)).unwrap();
        assert_eq!(
            json["result"]["tools"][0]["execution"]["taskSupport"],
            "optional"
        );
        assert!(json["result"]["tools"][1].get("execution").is_none());

        let other =
            bytes::Bytes::from_static(b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n");
        assert_eq!(patch_chunk(other.clone()), other);
    }
}
