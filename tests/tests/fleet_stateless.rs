//! Two daemons sharing Redis behind a real balancer (HAProxy) that spreads requests in
//! turn with no affinity: a 2026-07-28 client needs none. Every call is answered, each
//! daemon answers half, and one conversation goes on across both. A task (the 2026
//! tasks extension) started on one daemon is polled, fetched and cancelled through the
//! other, and reads failed within its lease once the daemon running it is killed.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::haproxy::Balancer;
use exai_tests::process::python_sdk2;
use exai_tests::redis::RedisServer;
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::{json, Value};

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

/// A 2026 request through `port` with the tasks extension declared; its JSON-RPC answer.
fn with_tasks(port: u16, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let answer = exai_tests::http_mcp::stateless(port, 1, method, params).expect("an answer");
    answer
        .message()
        .unwrap_or_else(|| panic!("a JSON-RPC answer: {answer:?}"))
}

fn task_state(port: u16, id: &str) -> Value {
    let answer = with_tasks(port, "tasks/get", json!({"taskId": id}));
    assert!(answer.get("result").is_some(), "tasks/get {id}: {answer}");
    answer["result"].clone()
}

#[test]
fn a_task_started_on_one_daemon_is_followed_cancelled_and_failed_through_another() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let llm = FakeLlmProc::start(&[]);
    let redis = RedisServer::start();
    let start = || {
        Daemon::with_llm(
            &socket,
            llm.port,
            &[
                ("REDIS_URL", redis.url()),
                ("EXAI_TASK_LEASE_MS", "2000".into()),
                ("EXAI_TASK_RENEW_MS", "500".into()),
            ],
        )
    };
    let mut a = start();
    let b = start();
    let chat = |port: u16, prompt: &str| {
        let created = with_tasks(
            port,
            "tools/call",
            json!({"name": "chat", "arguments": {"prompt": prompt, "model": "glm-5"}}),
        );
        assert_eq!(created["result"]["resultType"], "task", "{created}");
        created["result"]["taskId"].as_str().unwrap().to_string()
    };

    // Started on A, polled through B until done, its result read through B.
    let done = chat(a.mcp_port, "a long question [think:1000]");
    let seen = wait_for(
        "the task to complete, seen through the other daemon",
        PATIENCE,
        || {
            let state = task_state(b.mcp_port, &done);
            (state["status"] != "working").then_some(state)
        },
    );
    assert_eq!(seen["status"], "completed", "{seen}");
    assert_eq!(seen["result"]["isError"], false, "{seen}");
    assert_eq!(
        seen["result"]["structuredContent"]["answer"],
        "echo: a long question"
    );

    // Started on A, cancelled through B: A stops its model call.
    let abandoned_before = llm.abandoned();
    let cancelled = chat(a.mcp_port, "an endless question [think:60000]");
    wait_for("the model to be thinking", PATIENCE, || {
        let state = task_state(a.mcp_port, &cancelled);
        state["statusMessage"]
            .as_str()
            .is_some_and(|m| m.starts_with("thinking"))
            .then_some(())
    });
    let ack = with_tasks(b.mcp_port, "tasks/cancel", json!({"taskId": cancelled}));
    assert!(ack.get("result").is_some(), "{ack}");
    assert_eq!(task_state(a.mcp_port, &cancelled)["status"], "cancelled");
    wait_for(
        "the daemon running it to abort the model call",
        PATIENCE,
        || (llm.abandoned() > abandoned_before).then_some(()),
    );

    // Started on A, A killed: B says failed within the lease.
    let orphan = chat(a.mcp_port, "an endless question [think:60000]");
    wait_for("the orphan to be working", PATIENCE, || {
        (task_state(b.mcp_port, &orphan)["status"] == "working").then_some(())
    });
    a.proc.kill_hard();
    let failed = wait_for("the orphan to read failed", PATIENCE, || {
        let state = task_state(b.mcp_port, &orphan);
        (state["status"] != "working").then_some(state)
    });
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["statusMessage"]
            .as_str()
            .is_some_and(|m| m.contains("EXAI_TASK_LEASE_MS")),
        "{failed}"
    );
    assert_eq!(failed["error"]["code"], -32603, "{failed}");

    // Another client's guess, or a conversation's id, is an unknown task.
    let unknown = with_tasks(b.mcp_port, "tasks/get", json!({"taskId": uuid_like()}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
}

/// An id of the shape task ids have, that no task has.
fn uuid_like() -> String {
    "9d5e0c8a-6a3c-4a51-9f0e-1f2d3c4b5a69".into()
}
