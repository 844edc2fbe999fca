//! Every fault mode of the fake provider: bounded retries, the right error text, no hang,
//! and places given back (with one place per provider, a leaked permit would make the
//! next call fail as busy).

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{self, result_text, RawWs};
use exai_tests::Daemon;
use serde_json::{json, Value};

fn setup(dir: &tempfile::TempDir, llm: &FakeLlmProc) -> (Daemon, RawWs) {
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[
            ("EXAI_WS_GLM_MAX_INFLIGHT", "1".into()),
            ("EXAI_INFLIGHT_WAIT_MS", "200".into()),
            ("EXAI_PROVIDER_TIMEOUT_SECS", "3".into()),
            ("EXAI_PROVIDER_MAX_ATTEMPTS", "3".into()),
        ],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    (daemon, ws)
}

fn chat(ws: &mut RawWs, prompt: &str) -> Value {
    ws.call_tool("chat", json!({"prompt": prompt}))["result"].clone()
}

/// A failed call, then proof the provider's only place was given back.
fn assert_fails_then_recovers(ws: &mut RawWs, prompt: &str, expected: &[&str]) {
    let result = chat(ws, prompt);
    assert_eq!(result["isError"], true, "{prompt}: {result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    for part in expected {
        assert!(text.contains(part), "{prompt}: {text:?} lacks {part:?}");
    }
    let ok = chat(ws, "all good now");
    assert_eq!(ok["isError"], false, "after {prompt}: {ok}");
    assert_eq!(ok["structuredContent"]["answer"], "echo: all good now");
}

#[test]
fn transient_faults_are_retried_until_they_pass() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let (_daemon, mut ws) = setup(&dir, &llm);
    let ok = chat(&mut ws, "busy twice [fault:429x2 retry-after=1]");
    assert_eq!(ok["isError"], false, "{ok}");
    assert_eq!(
        ok["structuredContent"]["attempts"], 3,
        "two 429s, then success: {ok}"
    );
    let ok = chat(&mut ws, "one hiccup [fault:500x1]");
    assert_eq!(ok["isError"], false, "{ok}");
    assert_eq!(ok["structuredContent"]["attempts"], 2);
    let ok = chat(&mut ws, "connection reset once [fault:503x1]");
    assert_eq!(ok["structuredContent"]["attempts"], 2, "{ok}");
}

#[test]
fn persistent_rate_limits_and_server_errors_stop_after_three_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let (_daemon, mut ws) = setup(&dir, &llm);
    assert_fails_then_recovers(
        &mut ws,
        "always busy [fault:429 retry-after=1]",
        &["glm: rate limited (HTTP 429)", "after 3 attempts"],
    );
    assert_fails_then_recovers(
        &mut ws,
        "always broken [fault:500]",
        &["glm: server error (HTTP 500)", "after 3 attempts"],
    );
    // A Retry-After beyond what the daemon waits for fails at once.
    assert_fails_then_recovers(
        &mut ws,
        "come back tomorrow [fault:429 retry-after=86400]",
        &["rate limited", "after 1 attempt"],
    );
}

#[test]
fn stalls_broken_streams_and_garbage_fail_without_retrying_or_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let (daemon, mut ws) = setup(&dir, &llm);
    assert_fails_then_recovers(
        &mut ws,
        "silence [fault:stall]",
        &["glm: no answer within 3s", "after 1 attempt"],
    );
    assert_fails_then_recovers(
        &mut ws,
        "half a stream [fault:stall-stream]",
        &["glm: no answer within 3s"],
    );
    assert_fails_then_recovers(
        &mut ws,
        "cut off [fault:cut]",
        &["glm: stream broke off", "after 1 attempt"],
    );
    assert_fails_then_recovers(
        &mut ws,
        "gibberish [fault:malformed]",
        &["glm: malformed response", "after 1 attempt"],
    );
    let log = daemon.proc.log();
    assert!(
        log.iter()
            .all(|l| !l.contains("test-glm-key") && !l.contains("test-kimi-key")),
        "a key reached the log"
    );
}

#[test]
fn an_unreachable_provider_is_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: every attempt is refused at connect.
    let closed = exai_tests::free_port();
    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[
            ("GLM_API_KEY", "test-glm-key".into()),
            (
                "GLM_API_URL",
                format!("http://127.0.0.1:{closed}/api/paas/v4"),
            ),
        ],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let result = chat(&mut ws, "anyone there?");
    assert_eq!(result["isError"], true);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("glm: cannot connect"), "{text}");
    assert!(
        text.ends_with("(after 3 attempts)"),
        "connect errors are retried: {text}"
    );
}

#[test]
fn a_failed_call_is_logged_with_its_correlation_id() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let (daemon, mut ws) = setup(&dir, &llm);
    let call = json!({"name": "chat", "arguments": {"prompt": "boom [fault:500]"},
        "_meta": {"correlation_id": "incident-4711"}});
    let response = ws.request("tools/call", call);
    assert_eq!(response["result"]["isError"], true);
    assert_eq!(
        response["result"]["_meta"]["correlation_id"],
        "incident-4711"
    );
    let line = daemon.proc.wait_for_log("model call failed");
    assert!(line.contains("correlation_id=incident-4711"), "{line}");
    assert!(line.contains("glm: server error (HTTP 500)"), "{line}");
    assert!(line.contains("WARN"), "{line}");
}

#[test]
fn a_key_quoted_back_by_the_provider_is_redacted_in_results_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let (daemon, mut ws) = setup(&dir, &llm);
    let result = chat(&mut ws, "who am I [fault:echo-key]");
    assert_eq!(result["isError"], true);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Incorrect API key provided: Bearer [redacted]"),
        "{text}"
    );
    assert!(!text.contains("test-glm-key"), "{text}");
    let line = daemon.proc.wait_for_log("model call failed");
    assert!(line.contains("[redacted]"), "{line}");
    assert!(
        daemon
            .proc
            .log()
            .iter()
            .all(|l| !l.contains("test-glm-key")),
        "the key reached the log"
    );
}

#[test]
fn a_wrong_key_is_reported_clearly_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&["--key", "the-right-key"]);
    let (_daemon, mut ws) = setup(&dir, &llm);
    let result = chat(&mut ws, "let me in");
    assert_eq!(result["isError"], true);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("glm: request rejected (HTTP 401)"),
        "{text}"
    );
    assert!(text.ends_with("(after 1 attempt)"), "{text}");
    assert!(!text.contains("test-glm-key"), "{text}");
}

#[test]
fn a_provider_without_a_key_is_listed_as_unavailable_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("events.sock"));
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let status = ws.call_tool("status", json!({}))["result"]["structuredContent"].clone();
    for p in status["providers"].as_array().unwrap() {
        assert_eq!(p["available"], false);
        assert!(
            p["reason"]
                .as_str()
                .unwrap()
                .starts_with("no API key: set "),
            "{p}"
        );
    }
    let result = ws.call_tool("chat", json!({"prompt": "hi"}))["result"].clone();
    assert_eq!(result["isError"], true);
    assert!(
        result_text(&json!({"result": result}))
            .contains("unavailable: no API key: set GLM_API_KEY"),
        "{result}"
    );
    let models = ws.call_tool("listmodels", json!({}));
    assert!(result_text(&models)
        .contains("glm (unavailable: no API key: set GLM_API_KEY (or ZHIPUAI_API_KEY))"));
    let glm = &models["result"]["structuredContent"]["providers"][1];
    assert_eq!(
        (
            glm["provider"].as_str(),
            glm["available"].as_bool(),
            glm["model_list"].as_str()
        ),
        (Some("glm"), Some(false), Some("unavailable"))
    );
}
