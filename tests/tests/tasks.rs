//! Long calls as MCP tasks (2025-11-25), driven by the Python SDK 1.30's task API over
//! both transports, their state in memory or in Redis: a thinking chat started as a
//! task, polled to completion and its result fetched; another cancelled mid-thinking,
//! its upstream call aborted and its place returned; `status` showing a session its own
//! tasks and no one else's; a session's tasks dropped when it ends; tasks bounded in
//! number.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp;
use exai_tests::metrics::http_get;
use exai_tests::process::python_sdk;
use exai_tests::redis::RedisServer;
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::{json, Value};

fn daemon(dir: &tempfile::TempDir, llm: &FakeLlmProc, redis: Option<&RedisServer>) -> Daemon {
    let mut env = vec![
        // One GLM call at a time: a permit the cancelled task kept would block the
        // next chat, which would then fail as busy after a short wait.
        ("EXAI_WS_GLM_MAX_INFLIGHT", "1".into()),
        ("EXAI_INFLIGHT_WAIT_MS", "1000".into()),
        ("EXAI_PROGRESS_INTERVAL_MS", "100".into()),
    ];
    if let Some(redis) = redis {
        env.push(("REDIS_URL", redis.url()));
    }
    Daemon::with_llm(&dir.path().join("events.sock"), llm.port, &env)
}

fn stats(llm: &FakeLlmProc) -> Value {
    serde_json::from_str(&http_get(llm.port, "/_stats").unwrap().1).unwrap()
}

fn a_task_completes_and_another_is_cancelled(
    url: impl Fn(&Daemon) -> String,
    redis: Option<&RedisServer>,
) {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm, redis);
    let steps = python_sdk(&["tasks", &url(&daemon)]);

    let created = &steps["created"]["task"];
    assert_eq!(created["status"], "working");
    assert_eq!(created["ttl"], 60000, "the TTL the client asked for");
    assert_eq!(created["pollInterval"], 100);
    let done = &steps["completed"];
    let polls = done["polls"].as_array().unwrap();
    assert_eq!(polls.last().unwrap()["status"], "completed", "{polls:?}");
    assert!(
        polls.iter().any(|p| p["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("thinking"))),
        "a poll saw the model thinking: {polls:?}"
    );
    assert_eq!(done["is_error"], false);
    assert_eq!(
        done["validated"], true,
        "the task's result matches chat's outputSchema"
    );
    assert_eq!(done["structured"]["answer"], "echo: a long question");
    assert_eq!(done["structured"]["usage"]["reasoning_tokens"], 30);
    assert_eq!(
        done["meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        steps["listed"]["first"]
    );

    assert!(steps["mid_thinking"]["message"]
        .as_str()
        .unwrap()
        .starts_with("thinking: "));
    assert_eq!(steps["cancelled"]["status"], "cancelled");
    assert_eq!(steps["cancelled"]["message"], "cancelled by the client");
    let no_result = steps["cancelled_result"]["error"].as_str().unwrap();
    assert!(
        no_result.contains("was cancelled; it has no result"),
        "{no_result}"
    );
    let first = steps["listed"]["first"].as_str().unwrap();
    let second = steps["listed"]["second"].as_str().unwrap();
    assert_eq!(
        steps["listed"]["tasks"],
        json!({first: "completed", second: "cancelled"})
    );
    let again = steps["cancel_finished"]["error"].as_str().unwrap();
    assert!(again.contains("is already completed"), "{again}");

    // The upstream call was aborted: the provider saw its stream dropped.
    wait_for("the provider to see the stream dropped", PATIENCE, || {
        (stats(&llm)["abandoned"] == 1).then_some(())
    });
    // `status` showed the session its own two tasks.
    let own = &steps["status"]["tasks"];
    assert_eq!(
        (&own["completed"], &own["cancelled"], &own["working"]),
        (&json!(1), &json!(1), &json!(0)),
        "{own}"
    );
    assert_eq!(own["tasks"][1]["status"], "cancelled", "{own}");
    assert_eq!(
        own["backend"],
        if redis.is_some() { "redis" } else { "memory" }
    );

    // And its place returned: GLM allows one call at a time, and the next one runs.
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let status = ws.call_tool("status", json!({}))["result"]["structuredContent"].clone();
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(
        status["tasks"]["tasks"],
        json!([]),
        "another session's tasks are not shown"
    );
    // The SDK's session has ended: its tasks went with it.
    wait_for("the ended session's tasks to be dropped", PATIENCE, || {
        let status = &ws.call_tool("status", json!({}))["result"]["structuredContent"];
        (status["tasks"]["held"] == 0).then_some(())
    });
    let next = ws.call_tool("chat", json!({"prompt": "next", "model": "glm-5"}))["result"].clone();
    assert_eq!(next["isError"], false, "{next}");
}

#[test]
fn a_task_over_websocket_completes_and_another_is_cancelled() {
    a_task_completes_and_another_is_cancelled(Daemon::ws_url, None);
}

#[test]
fn a_task_over_streamable_http_completes_and_another_is_cancelled() {
    a_task_completes_and_another_is_cancelled(Daemon::http_url, None);
}

#[test]
fn a_task_kept_in_redis_completes_and_another_is_cancelled() {
    let redis = RedisServer::start();
    a_task_completes_and_another_is_cancelled(Daemon::http_url, Some(&redis));
    assert_eq!(
        redis.command(&["KEYS", "exai:task*"]),
        exai_tests::redis::Reply::Array(vec![]),
        "the ended session's tasks left nothing in Redis"
    );
}

#[test]
fn tasks_are_bounded_and_only_chat_runs_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[("EXAI_TASKS_MAX", "1".into())],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let as_task = |args: Value| json!({"name": "chat", "arguments": args, "task": {"ttl": 60000}});
    let first = ws.request(
        "tools/call",
        as_task(json!({"prompt": "slow [think:60000]"})),
    );
    let id = first["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    let second = ws.request("tools/call", as_task(json!({"prompt": "another"})));
    assert_eq!(second["error"]["code"], -32000, "{second}");
    assert!(second["error"]["message"].as_str().unwrap().starts_with(
        "too many tasks (1, EXAI_TASKS_MAX) working or holding results not yet fetched"
    ));
    let bad = ws.request("tools/call", as_task(json!({"prompt": ""})));
    assert_eq!(
        bad["error"]["code"], -32602,
        "arguments are checked before a task is made: {bad}"
    );
    let version = ws.request(
        "tools/call",
        json!({"name": "version", "arguments": {}, "task": {}}),
    );
    assert_eq!(version["error"]["code"], -32601, "{version}");
    let unknown = ws.request("tasks/get", json!({"taskId": "no-such-task"}));
    assert_eq!(unknown["error"]["code"], -32602);
    let got = ws.request("tasks/get", json!({"taskId": id}));
    assert_eq!(got["result"]["status"], "working", "{got}");
    let cancelled = ws.request("tasks/cancel", json!({"taskId": id}));
    assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    // A cancelled task holds nothing anyone wants: it makes room for the next.
    let next = ws.request("tools/call", as_task(json!({"prompt": "another"})));
    assert_eq!(next["result"]["task"]["status"], "working", "{next}");
    let gone = ws.request("tasks/get", json!({"taskId": id}));
    assert_eq!(gone["error"]["code"], -32602);
}
