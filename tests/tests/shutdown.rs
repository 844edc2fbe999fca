//! SIGTERM during a 60 s model call: the daemon stops accepting, lets the calls run for
//! `EXAI_SHUTDOWN_GRACE_S`, then cancels them and answers each with an error — over
//! WebSocket, then a 1001 close; over HTTP, in the request's stream — and exits, well
//! before the model would have answered. The final heartbeat goes out after the
//! sessions are gone, so the agent counts every request.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::http_mcp::HttpSession;
use exai_tests::mcp::{self, result_text, Ended};
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::json;

#[test]
fn sigterm_during_a_long_call_answers_it_with_an_error_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let llm = FakeLlmProc::start(&[]);
    let mut daemon = Daemon::with_llm(
        &socket,
        llm.port,
        &[
            ("EXAI_SHUTDOWN_GRACE_S", "2".to_string()),
            ("EXAI_PROVIDER_TIMEOUT_SECS", "120".to_string()),
        ],
    );
    agent.wait_metric("exai_pipe_daemon_connected", &[], |v| v == 1.0);

    // A WebSocket call and an HTTP call, each to a model that takes a minute.
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    ws.send_text(
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "chat", "arguments": {"prompt": "slow [latency:60000]"}}})
        .to_string(),
    );
    let mut http = HttpSession::open(daemon.mcp_port).expect("an HTTP session");
    let over_http = std::thread::spawn(move || {
        http.call_tool("chat", json!({"prompt": "slow too [latency:60000]"}))
    });
    let mut watcher = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    watcher.initialize("2025-11-25");
    wait_for("both calls in flight", PATIENCE, || {
        let status = watcher.call_tool("status", json!({}));
        (status["result"]["structuredContent"]["in_flight"] == 2).then_some(())
    });
    drop(watcher);

    let answered_ws = std::thread::spawn(move || {
        let answer = ws.recv().expect("an answer before the close");
        let ended = ws.recv();
        (answer, ended)
    });
    let status = daemon.proc.terminate();
    assert!(status.success(), "a clean exit: {status:?}");

    let (answer, ended) = answered_ws.join().unwrap();
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = result_text(&answer);
    assert!(
        text.contains("the server is shutting down") && text.contains("EXAI_SHUTDOWN_GRACE_S"),
        "{text}"
    );
    match ended {
        Err(Ended::Close(Some((code, _)))) => assert_eq!(code, 1001),
        other => panic!("expected a 1001 close after the answer, got {other:?}"),
    }
    let over_http = over_http
        .join()
        .unwrap()
        .expect("an HTTP answer before the exit");
    let message = over_http.message().expect("a JSON-RPC answer");
    assert_eq!(message["result"]["isError"], true, "{message}");
    assert!(
        result_text(&message).contains("the server is shutting down"),
        "{message}"
    );

    // Both calls counted (as tool errors), by the heartbeat sent after the sessions.
    agent.wait_metric(
        "mcp_requests_total",
        &[("method", "call_tool"), ("endpoint", "chat")],
        |v| v == 2.0,
    );
    let scrape = agent.scrape();
    assert_eq!(
        scrape.sum(
            "mcp_requests_total",
            &[("endpoint", "chat"), ("status", "tool_error")]
        ),
        2.0
    );
    daemon.proc.wait_for_log("exai-daemon stopped");
}
