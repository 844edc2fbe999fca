//! The daemon driven by the official MCP Python SDK: 1.30 (mcp[ws]==1.30.0) over
//! WebSocket, Streamable HTTP and stdio through `exai-daemon bridge`, and the newest 2.x
//! over Streamable HTTP (2.x has no WebSocket client). A model calling `chat` sees the
//! continuation_id in what clients hand it (the text and `structuredContent`), and every
//! result validates against its tool's `outputSchema` with each SDK.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp;
use exai_tests::metrics::http_get;
use exai_tests::process::{bin_path, python_sdk, python_sdk2};
use exai_tests::Daemon;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn daemon(dir: &tempfile::TempDir, llm: &FakeLlmProc) -> Daemon {
    // Frequent progress so that a 1.2 s model call reports several times.
    Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[("EXAI_PROGRESS_INTERVAL_MS", "200".into())],
    )
}

/// What the fake provider received, oldest first.
fn received(llm: &FakeLlmProc) -> Vec<Value> {
    let (status, body) = http_get(llm.port, "/_requests").expect("fake-llm answers");
    assert_eq!(status, 200);
    serde_json::from_str::<Value>(&body)
        .expect("JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// What both SDKs show of a conversation in the handshake era.
fn assert_conversation(steps: &BTreeMap<String, Value>, llm: &FakeLlmProc) {
    assert_eq!(steps["initialize"]["protocol"], "2025-11-25");
    assert_eq!(
        steps["initialize"]["tasks"],
        json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
        "the 2025-11-25 tasks capability"
    );
    assert_eq!(steps["ping"]["ok"], true);
    assert_exchange(steps, llm);
}

/// What the newest SDK shows of a conversation in the stateless era (2026-07-28).
fn assert_stateless_conversation(steps: &BTreeMap<String, Value>, llm: &FakeLlmProc) {
    assert_eq!(steps["initialize"]["protocol"], "2026-07-28");
    assert_eq!(
        steps["initialize"]["extensions"],
        json!({"io.modelcontextprotocol/tasks": {}}),
        "the tasks extension, as 2026-07-28 advertises it"
    );
    assert_eq!(steps["initialize"]["tasks"], Value::Null);
    assert!(!steps.contains_key("ping"), "2026-07-28 has no ping");
    assert_exchange(steps, llm);
    assert_eq!(
        steps["version"]["structured"]["protocol_versions"],
        json!([
            "2024-11-05",
            "2025-03-26",
            "2025-06-18",
            "2025-11-25",
            "2026-07-28"
        ])
    );
}

/// The tools, a chat with progress, its continuation and the other tools, in any era.
fn assert_exchange(steps: &BTreeMap<String, Value>, llm: &FakeLlmProc) {
    assert_eq!(steps["initialize"]["server"], "exai");
    assert_eq!(
        steps["tools"]["names"],
        json!(["chat", "listmodels", "status", "version"])
    );
    assert_eq!(steps["tools"]["output_schema_types"], json!(["object"]));
    assert_eq!(
        steps["tools"]["titles"]["chat"],
        "Chat with a Kimi or GLM model"
    );

    let chat = &steps["chat"];
    assert_eq!(chat["is_error"], false);
    assert_eq!(
        chat["validated"], true,
        "chat's result matches its outputSchema"
    );
    let structured = &chat["structured"];
    let id = structured["continuation_id"]
        .as_str()
        .expect("continuation_id in structuredContent");
    assert_eq!(structured["answer"], "echo: hello from the sdk");
    assert_eq!(structured["model"], "glm-4.5-flash");
    assert_eq!(structured["history_turns"], 0);
    let text = chat["text"].as_str().unwrap();
    assert!(text.starts_with("echo: hello from the sdk\n\n"), "{text}");
    let last_line = text.lines().last().unwrap();
    assert_eq!(
        last_line,
        format!("continuation_id: {id} (pass it to chat as continuation_id to continue this conversation)")
    );
    assert_eq!(
        chat["meta"]["correlation_id"], TRACE_ID,
        "the traceparent's trace id comes back in _meta"
    );
    assert_eq!(chat["meta"]["continuation_id"], id);
    assert!(
        chat["meta"].get("usage").is_none() && chat["meta"].get("model").is_none(),
        "_meta stays lean: {}",
        chat["meta"]
    );
    let progress: Vec<f64> = chat["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert!(
        progress.len() >= 2,
        "progress notifications while the model ran: {progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress increases: {progress:?}"
    );

    let next = &steps["continue"];
    assert_eq!(next["validated"], true);
    assert_eq!(next["structured"]["continuation_id"], id);
    assert_eq!(next["structured"]["history_turns"], 1);
    assert_eq!(next["structured"]["history_available"], true);
    for tool in ["listmodels", "status", "version"] {
        assert_eq!(steps[tool]["validated"], true, "{tool}: {}", steps[tool]);
    }
    assert_eq!(
        steps["listmodels"]["structured"]["default_model"],
        "glm-4.5-flash"
    );

    // The provider saw the correlation id, and the earlier turn on continuation.
    let requests = received(llm);
    let first = requests
        .iter()
        .find(|r| r["x_request_id"] == TRACE_ID || r["headers"]["x-request-id"] == TRACE_ID)
        .unwrap_or_else(|| {
            panic!("no provider request carried X-Request-ID {TRACE_ID}: {requests:?}")
        });
    assert_eq!(first["body"]["model"], "glm-4.5-flash");
    let last = requests.last().unwrap();
    let contents: Vec<&str> = last["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(
        contents,
        [
            "hello from the sdk [latency:1200]",
            "echo: hello from the sdk",
            "and again"
        ]
    );
}

#[test]
fn the_python_sdk_works_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let steps = python_sdk(&["ws", &daemon.ws_url()]);
    assert_conversation(&steps, &llm);
    assert_eq!(steps["set_level"]["ok"], true);
    let tools = &steps["tools"];
    assert_eq!(
        tools["execution"]["chat"], "optional",
        "chat may run as a task"
    );
    assert_eq!(tools["execution"]["version"], Value::Null);
    assert_eq!(
        tools["annotations"]["chat"],
        json!({"title": "Chat with a Kimi or GLM model", "readOnlyHint": false, "destructiveHint": false,
               "idempotentHint": false, "openWorldHint": true})
    );
    for tool in ["listmodels", "status", "version"] {
        assert_eq!(tools["annotations"][tool]["readOnlyHint"], true, "{tool}");
        assert_eq!(tools["annotations"][tool]["openWorldHint"], false, "{tool}");
    }
}

#[test]
fn the_python_sdk_works_over_streamable_http() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let steps = python_sdk(&["http", &daemon.http_url()]);
    assert_conversation(&steps, &llm);
    assert_eq!(steps["tools"]["execution"]["chat"], "optional");
}

#[test]
fn the_newest_python_sdk_works_over_streamable_http() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    // The SDK's default: it probes server/discover and speaks 2026-07-28.
    let steps = python_sdk2(&["http", &daemon.http_url(), "auto"]);
    assert_stateless_conversation(&steps, &llm);
    assert_eq!(steps["tools"]["read_only"]["status"], true);
}

#[test]
fn the_newest_python_sdk_pinned_to_2026_07_28_needs_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let steps = python_sdk2(&["http", &daemon.http_url(), "2026-07-28"]);
    assert_stateless_conversation(&steps, &llm);
    assert_eq!(
        daemon_http_sessions(&steps),
        0,
        "stateless requests open no session"
    );
}

#[test]
fn the_newest_python_sdk_in_legacy_mode_keeps_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let steps = python_sdk2(&["http", &daemon.http_url(), "legacy"]);
    assert_conversation(&steps, &llm);
    assert_eq!(daemon_http_sessions(&steps), 1, "its own session");
}

/// The Streamable HTTP sessions open when the client asked for `status`.
fn daemon_http_sessions(steps: &BTreeMap<String, Value>) -> u64 {
    let report = &steps["status"]["structured"];
    report["connections"]["http_sessions"]
        .as_u64()
        .unwrap_or_else(|| panic!("status reports HTTP sessions: {report}"))
}

#[test]
fn the_python_sdk_works_through_the_stdio_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let exe = bin_path("exai-daemon");
    let steps = python_sdk(&["bridge", &daemon.ws_url(), exe.to_str().unwrap()]);
    assert_conversation(&steps, &llm);
}

#[test]
fn cancellation_aborts_the_model_call_and_sends_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    // The model would take 30 s; the client cancels after the first progress note and
    // waits 3 s for an answer that must not come.
    let steps = python_sdk(&["cancel", &daemon.ws_url()]);
    assert_eq!(steps["cancel"]["answered"], false, "{:?}", steps["cancel"]);
    // Were the upstream call still running, it would hold its place for 30 s.
    assert_eq!(steps["status"]["structured"]["in_flight"], 0);
}

#[test]
fn the_mcp_subprotocol_is_echoed_in_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("events.sock"));
    for path in ["/", "/mcp"] {
        let url = format!("ws://127.0.0.1:{}{path}", daemon.mcp_port);
        let mut ws = mcp::connect(&url, &[]).expect("upgrade accepted");
        assert_eq!(
            ws.handshake
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("mcp")
        );
        let init = ws.initialize("2025-06-18");
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    }
}

#[test]
fn the_newest_python_sdk_runs_chat_as_a_2026_task_and_cancels_another() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[("EXAI_PROGRESS_INTERVAL_MS", "100".into())],
    );
    let steps = python_sdk2(&["tasks", &daemon.http_url()]);

    let created = &steps["created"]["result"];
    assert_eq!(
        created["resultType"], "task",
        "the server made the call a task"
    );
    assert_eq!(created["status"], "working");
    assert_eq!(created["pollIntervalMs"], 100);
    let polls = steps["completed"]["polls"].as_array().unwrap();
    assert!(
        polls.iter().any(|p| p["status"] == "working"
            && p["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("thinking"))),
        "a poll saw the model thinking: {polls:?}"
    );
    let task = &steps["completed"]["task"];
    assert_eq!(task["status"], "completed");
    assert_eq!(task["resultType"], "complete");
    assert_eq!(steps["completed"]["is_error"], false);
    assert_eq!(
        steps["completed"]["structured"]["answer"],
        "echo: a long question"
    );

    assert_eq!(steps["cancelled"]["status"], "cancelled");
    exai_tests::wait_for(
        "the cancelled task's model call to be aborted",
        exai_tests::PATIENCE,
        || (llm.abandoned() >= 1).then_some(()),
    );
    assert_eq!(steps["unknown"]["error"], -32602, "{:?}", steps["unknown"]);
}
