//! Tasks belong to the MCP session that started them, with the real daemon over raw
//! WebSocket JSON: a session at its quota does not stop another's task; results a
//! session never fetches do not hold the store; another session's `tasks/get`,
//! `tasks/result` and `tasks/cancel` on my id answer as for an unknown id, and `status`
//! shows each session only its own tasks; a session that ends takes its tasks (and
//! their model calls) with it; a Redis that is away refuses tasks, not calls.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{self, RawWs};
use exai_tests::metrics::http_get;
use exai_tests::{free_port, wait_for, Daemon, PATIENCE};
use serde_json::{json, Value};

fn daemon(dir: &tempfile::TempDir, llm: &FakeLlmProc, env: &[(&str, &str)]) -> Daemon {
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    Daemon::with_llm(&dir.path().join("events.sock"), llm.port, &env)
}

fn session(daemon: &Daemon) -> RawWs {
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    ws
}

/// Starts a chat as a task; the whole response.
fn start(ws: &mut RawWs, prompt: &str) -> Value {
    ws.request(
        "tools/call",
        json!({"name": "chat", "arguments": {"prompt": prompt, "model": "glm-5"}, "task": {"ttl": 3_600_000}}),
    )
}

/// Starts a chat as a task and returns its id.
fn started(ws: &mut RawWs, prompt: &str) -> String {
    let response = start(ws, prompt);
    response["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {response}"))
        .to_string()
}

fn task_request(ws: &mut RawWs, method: &str, id: &str) -> Value {
    ws.request(method, json!({"taskId": id}))
}

fn status_of(ws: &mut RawWs) -> Value {
    ws.call_tool("status", json!({}))["result"]["structuredContent"]["tasks"].clone()
}

/// Waits (polling `tasks/get`, which fetches nothing) until the task has ended.
fn wait_ended(ws: &mut RawWs, id: &str) {
    wait_for(&format!("task {id} to end"), PATIENCE, || {
        let got = task_request(ws, "tasks/get", id);
        (got["result"]["status"] != "working").then_some(())
    });
}

/// An error's code and message with the task id taken out.
fn as_unknown(response: &Value, id: &str) -> (Value, String) {
    let error = &response["error"];
    let message = error["message"].as_str().unwrap_or_default();
    (error["code"].clone(), message.replace(id, "<id>"))
}

#[test]
fn one_session_at_its_quota_does_not_stop_another_sessions_task() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(
        &dir,
        &llm,
        &[("EXAI_TASKS_MAX", "3"), ("EXAI_TASKS_MAX_PER_OWNER", "2")],
    );
    let mut alice = session(&daemon);
    let mine = [
        started(&mut alice, "slow [think:60000]"),
        started(&mut alice, "slow [think:60000]"),
    ];
    let third = start(&mut alice, "one more");
    assert_eq!(third["error"]["code"], -32000, "{third}");
    let refusal = third["error"]["message"].as_str().unwrap();
    assert!(
        refusal.starts_with("this session already holds 2 tasks (EXAI_TASKS_MAX_PER_OWNER)"),
        "{refusal}"
    );

    let mut bob = session(&daemon);
    let bobs = started(&mut bob, "slow [think:60000]");

    // Bob cannot tell alice's tasks from tasks that never were.
    let never = "00000000-0000-4000-8000-000000000000";
    for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
        let theirs = task_request(&mut bob, method, &mine[0]);
        let nobodys = task_request(&mut bob, method, never);
        assert_eq!(theirs["error"]["code"], -32602, "{method}: {theirs}");
        assert_eq!(
            as_unknown(&theirs, &mine[0]),
            as_unknown(&nobodys, never),
            "{method}"
        );
    }
    let still = task_request(&mut alice, "tasks/get", &mine[0]);
    assert_eq!(
        still["result"]["status"], "working",
        "bob's cancel did nothing: {still}"
    );
    let listed = bob.request("tasks/list", json!({}));
    assert_eq!(listed["result"]["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(listed["result"]["tasks"][0]["taskId"], bobs.as_str());

    // `status` shows each their own.
    let (bobs_status, alices_status) = (status_of(&mut bob), status_of(&mut alice));
    assert_eq!(
        (&bobs_status["working"], &bobs_status["held"]),
        (&json!(1), &json!(3))
    );
    assert_eq!(bobs_status["tasks"].as_array().unwrap().len(), 1);
    let shown = bobs_status["tasks"][0]["task"].as_str().unwrap();
    assert!(bobs.starts_with(shown.trim_end_matches('…')), "{shown}");
    assert_eq!(alices_status["working"], 2, "{alices_status}");

    // The store is full of working tasks: nobody's is dropped for a new one.
    let mut carol = session(&daemon);
    let refused = start(&mut carol, "no room");
    let refusal = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        refusal.starts_with("too many tasks (3, EXAI_TASKS_MAX)"),
        "{refused}"
    );
}

#[test]
fn results_a_session_never_fetches_do_not_hold_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(
        &dir,
        &llm,
        &[("EXAI_TASKS_MAX", "3"), ("EXAI_TASKS_MAX_PER_OWNER", "2")],
    );
    // Alice starts one-hour tasks that end at once and never fetches a result.
    let mut alice = session(&daemon);
    let mut hers = Vec::new();
    for _ in 0..4 {
        let id = started(&mut alice, "quick");
        wait_ended(&mut alice, &id);
        hers.push(id);
    }
    // Her quota made room among her own, oldest first.
    for (id, kept) in hers.iter().zip([false, false, true, true]) {
        let got = task_request(&mut alice, "tasks/get", id);
        assert_eq!(got.get("result").is_some(), kept, "{id}: {got}");
    }
    // Bob's tasks take the places of her results too, once the store is full.
    let mut bob = session(&daemon);
    let bobs = [started(&mut bob, "quick"), started(&mut bob, "quick")];
    assert_eq!(status_of(&mut bob)["held"], 3);
    let oldest = task_request(&mut alice, "tasks/get", &hers[2]);
    assert_eq!(oldest["error"]["code"], -32602, "{oldest}");
    for id in &bobs {
        wait_ended(&mut bob, id);
        let result = task_request(&mut bob, "tasks/result", id);
        assert_eq!(result["result"]["isError"], false, "{result}");
    }
}

#[test]
fn a_session_that_ends_takes_its_tasks_and_their_model_calls_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm, &[]);
    let mut alice = session(&daemon);
    let id = started(&mut alice, "an endless question [think:60000]");
    wait_for("the model to be thinking", PATIENCE, || {
        let got = task_request(&mut alice, "tasks/get", &id);
        got["result"]["statusMessage"]
            .as_str()
            .is_some_and(|m| m.starts_with("thinking"))
            .then_some(())
    });
    drop(alice);

    let mut bob = session(&daemon);
    wait_for("alice's task to be dropped", PATIENCE, || {
        (status_of(&mut bob)["held"] == 0).then_some(())
    });
    wait_for("the provider to see the stream dropped", PATIENCE, || {
        let stats: Value = serde_json::from_str(&http_get(llm.port, "/_stats")?.1).ok()?;
        (stats["abandoned"] == 1).then_some(())
    });
}

#[test]
fn a_redis_that_is_away_refuses_a_task_but_not_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let url = format!("redis://127.0.0.1:{}", free_port());
    let daemon = daemon(&dir, &llm, &[("REDIS_URL", &url)]);
    let mut ws = session(&daemon);
    let refused = start(&mut ws, "as a task");
    assert_eq!(refused["error"]["code"], -32603, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("task storage unavailable: Redis at {url}")),
        "{message}"
    );
    assert!(
        message.ends_with("call the tool without \"task\" to have its answer directly"),
        "{message}"
    );
    let direct = ws.call_tool("chat", json!({"prompt": "directly", "model": "glm-5"}));
    assert_eq!(direct["result"]["isError"], false, "{direct}");
    let status = status_of(&mut ws);
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("task storage unavailable"), "{status}");
}
