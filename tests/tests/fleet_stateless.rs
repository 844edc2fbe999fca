//! Two daemons sharing Redis behind a real balancer (HAProxy) that spreads requests in
//! turn with no affinity: a 2026-07-28 client needs none. Every call is answered, each
//! daemon answers half, and one conversation goes on across both.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::haproxy::Balancer;
use exai_tests::process::python_sdk2;
use exai_tests::redis::RedisServer;
use exai_tests::{Agent, Daemon};
use serde_json::json;

#[test]
fn a_stateless_client_is_served_by_both_daemons_of_a_fleet_and_keeps_its_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let llm = FakeLlmProc::start(&[]);
    let redis = RedisServer::start();
    let agent = Agent::start(&socket);
    let start = |name: &str| {
        Daemon::with_llm(
            &socket,
            llm.port,
            &[
                ("REDIS_URL", redis.url()),
                ("EXAI_DAEMON_NAME", name.to_string()),
                // Every turn kept, so the last answer shows the whole conversation.
                ("MAX_CONVERSATION_TURNS", "100".to_string()),
            ],
        )
    };
    let daemons = [start("fleet-a"), start("fleet-b")];
    let balancer = Balancer::round_robin(dir.path(), &[daemons[0].mcp_port, daemons[1].mcp_port]);

    let steps = python_sdk2(&["calls", &balancer.url(), "40"]);
    let calls = &steps["calls"];
    assert_eq!(calls["answered"], 40, "{calls}");
    assert_eq!(calls["failed"], json!([]));
    assert_eq!(
        calls["history_turns"], 39,
        "every turn before the last was in its history"
    );

    // Each daemon's exact count, from its heartbeat.
    let answered_by = |name: &str| {
        agent.wait_metric(
            "mcp_requests_total",
            &[
                ("daemon", name),
                ("method", "call_tool"),
                ("endpoint", "chat"),
            ],
            |v| v > 0.0,
        )
    };
    let (a, b) = (answered_by("fleet-a"), answered_by("fleet-b"));
    let total = agent.wait_metric(
        "mcp_requests_total",
        &[("method", "call_tool"), ("endpoint", "chat")],
        |v| v >= 40.0,
    );
    assert_eq!(total, 40.0);
    let (a, b) = (
        agent
            .scrape()
            .sum(
                "mcp_requests_total",
                &[
                    ("daemon", "fleet-a"),
                    ("method", "call_tool"),
                    ("endpoint", "chat"),
                ],
            )
            .max(a),
        agent
            .scrape()
            .sum(
                "mcp_requests_total",
                &[
                    ("daemon", "fleet-b"),
                    ("method", "call_tool"),
                    ("endpoint", "chat"),
                ],
            )
            .max(b),
    );
    assert_eq!(a + b, 40.0);
    // Half each, give or take the SDK's own `tools/list` (it fetches the output schemas
    // it validates results against), which takes a turn of the round robin too.
    assert_eq!(a + b, 40.0);
    assert!(
        (a - b).abs() <= 2.0,
        "round robin: half each, got {a} and {b}"
    );
}
