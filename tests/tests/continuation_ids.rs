//! A `continuation_id` becomes a Redis key, a map key and a Supabase primary key: one
//! that is long or holds a byte outside `[A-Za-z0-9._:-]` is refused with -32602 naming
//! the rule, over WebSocket and Streamable HTTP, and nothing reaches the model.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::http_mcp::HttpSession;
use exai_tests::mcp::{self, result_text};
use exai_tests::Daemon;
use serde_json::{json, Value};

const RULE: &str = "[A-Za-z0-9._:-]{1,128}";

fn assert_refused(response: &Value, what: &str) {
    assert_eq!(response["error"]["code"], -32602, "{what}: {response}");
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("continuation_id"), "{what}: {message}");
    assert!(message.contains(RULE), "{what}: {message}");
}

#[test]
fn a_nul_or_a_10_kb_continuation_id_is_refused_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(&dir.path().join("events.sock"), llm.port, &[]);
    let bad = [
        ("a NUL", "thread\u{0}one".to_string()),
        ("10 KB", "x".repeat(10 << 10)),
        ("a space", "two words".to_string()),
        ("a slash", "../etc".to_string()),
        ("129 bytes", "y".repeat(129)),
    ];

    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    for (what, id) in &bad {
        let response = ws.call_tool("chat", json!({"prompt": "hi", "continuation_id": id}));
        assert_refused(&response, what);
    }
    let mut http = HttpSession::open(daemon.mcp_port).expect("an HTTP session");
    for (what, id) in &bad {
        let answer = http
            .call_tool("chat", json!({"prompt": "hi", "continuation_id": id}))
            .expect("an answer");
        assert_refused(&answer.message().expect("a JSON-RPC message"), what);
    }
    let llm_stats: Value = serde_json::from_str(
        &exai_tests::fake_postgrest::request(llm.port, "GET", "/_stats", &[], "")
            .expect("fake-llm answers /_stats")
            .1,
    )
    .unwrap();
    assert_eq!(
        llm_stats["requests"], 0,
        "no refused chat reached the model: {llm_stats}"
    );

    // The longest plain id is a conversation like any other, and the session goes on.
    let longest = "a.b_c:d-".repeat(16);
    assert_eq!(longest.len(), 128);
    let first = ws.call_tool("chat", json!({"prompt": "one", "continuation_id": longest}));
    assert_eq!(first["result"]["isError"], false, "{first}");
    assert_eq!(
        first["result"]["_meta"]["continuation_id"],
        longest.as_str()
    );
    let second = ws.call_tool("chat", json!({"prompt": "two", "continuation_id": longest}));
    assert_eq!(
        second["result"]["structuredContent"]["history_turns"], 1,
        "{second}"
    );
    assert!(result_text(&ws.call_tool("version", json!({}))).starts_with("exai "));
}
