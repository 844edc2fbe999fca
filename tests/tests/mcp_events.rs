//! MCP traffic reaches the agent as events: requests, WebSocket messages and connections
//! recorded by the daemon's request path arrive over the pipe.

use exai_tests::mcp::{self, result_text};
use exai_tests::{Agent, Daemon};
use serde_json::json;

#[test]
fn tool_calls_reach_the_agent_as_events() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    // Keep every event, so the count is exact: per call, a request event and two messages.
    let daemon = Daemon::start_with(
        &socket,
        &[
            ("EXAI_SAMPLE_REQUESTS", "1".into()),
            ("EXAI_SAMPLE_WS_MESSAGES", "1".into()),
        ],
    );
    let instance = daemon.name.clone();
    agent.wait_metric(
        "exai_pipe_daemon_connected",
        &[("daemon", &instance)],
        |v| v == 1.0,
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    for _ in 0..20 {
        assert!(result_text(&ws.call_tool("version", json!({}))).starts_with("exai "));
    }
    // Requests: initialize and 20 calls. Messages: 22 in (initialize, initialized, 20
    // calls) and 21 out. Connections: this one opened.
    let by_kind = |kind: &str| {
        agent.scrape().sum(
            "exai_pipe_events_received_total",
            &[("daemon", &instance), ("kind", kind)],
        )
    };
    for (kind, expected) in [
        ("mcp_request", 21.0),
        ("ws_message", 43.0),
        ("connection", 1.0),
    ] {
        agent.wait_metric(
            "exai_pipe_events_received_total",
            &[("daemon", &instance), ("kind", kind)],
            |v| v >= expected,
        );
        assert_eq!(by_kind(kind), expected, "{kind} events");
    }
    assert_eq!(
        agent
            .scrape()
            .sum("exai_pipe_events_lost_total", &[("daemon", &instance)]),
        0.0
    );
}
