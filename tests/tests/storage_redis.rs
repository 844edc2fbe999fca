//! Conversations in a real `redis-server`: history reaches the provider, survives a
//! daemon restart, expires and is capped; a Redis that dies, is down at start or stalls
//! costs the history (said so in the answer), never the answer, and comes back alone.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{self, result_text, RawWs};
use exai_tests::metrics::http_get;
use exai_tests::redis::{RedisServer, SilentListener};
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn start_daemon(dir: &Path, llm: &FakeLlmProc, redis_url: &str, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![("REDIS_URL", redis_url.to_string())];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    Daemon::with_llm(&dir.join("events.sock"), llm.port, &all)
}

fn session(daemon: &Daemon) -> RawWs {
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    ws
}

/// A chat that must succeed; returns the tool result.
fn chat(ws: &mut RawWs, prompt: &str, continuation: Option<&str>) -> Value {
    let mut args = json!({"prompt": prompt});
    if let Some(id) = continuation {
        args["continuation_id"] = id.into();
    }
    let response = ws.call_tool("chat", args);
    let result = response["result"].clone();
    assert_eq!(result["isError"], false, "{response}");
    result
}

fn continuation(result: &Value) -> String {
    result["_meta"]["continuation_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The messages of the provider request whose last message is `prompt`.
fn sent_to_provider(llm: &FakeLlmProc, prompt: &str) -> Vec<(String, String)> {
    let (_, body) = http_get(llm.port, "/_requests").expect("fake-llm answers /_requests");
    let requests: Vec<Value> = serde_json::from_str(&body).unwrap();
    let request = requests
        .iter()
        .rev()
        .find(|r| {
            r["body"]["messages"]
                .as_array()
                .and_then(|m| m.last())
                .map(|m| &m["content"])
                == Some(&json!(prompt))
        })
        .unwrap_or_else(|| panic!("no provider request ending with {prompt:?}"));
    request["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn status(ws: &mut RawWs) -> Value {
    ws.call_tool("status", json!({}))["result"]["structuredContent"].clone()
}

#[test]
fn history_reaches_the_provider_survives_a_daemon_restart_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let redis = RedisServer::start();
    let env = [("CONVERSATION_TIMEOUT_HOURS", "2")];
    let mut daemon = start_daemon(dir.path(), &llm, &redis.url(), &env);
    daemon.proc.wait_for_log("Redis reachable");
    let mut ws = session(&daemon);
    let first = chat(&mut ws, "what is a spool?", None);
    let id = continuation(&first);
    assert_eq!(first["structuredContent"]["history_turns"], 0);
    let second = chat(&mut ws, "and why a checksum?", Some(&id));
    assert_eq!(second["structuredContent"]["history_turns"], 1);
    assert_eq!(second["structuredContent"]["history_available"], true);
    assert_eq!(
        sent_to_provider(&llm, "and why a checksum?"),
        pairs(&[
            ("user", "what is a spool?"),
            ("assistant", "echo: what is a spool?"),
            ("user", "and why a checksum?"),
        ])
    );

    // The documented value format, under the documented key, with the TTL set.
    let key = format!("exai:thread:{id}");
    let stored: Value =
        serde_json::from_str(&redis.command(&["GET", &key]).text().unwrap()).unwrap();
    assert_eq!(stored["turns"].as_array().unwrap().len(), 2);
    assert_eq!(stored["turns"][1]["user"], "and why a checksum?");
    assert_eq!(stored["turns"][1]["assistant"], "echo: and why a checksum?");
    assert!(stored["turns"][1]["at_unix_ms"].as_u64().unwrap() > 0);
    let ttl = redis.command(&["TTL", &key]).integer();
    assert!(ttl > 7000 && ttl <= 7200, "TTL {ttl} for 2 hours");

    drop(ws);
    daemon.proc.terminate();
    let daemon = start_daemon(dir.path(), &llm, &redis.url(), &env);
    let mut ws = session(&daemon);
    let third = chat(&mut ws, "still there?", Some(&id));
    assert_eq!(third["structuredContent"]["history_turns"], 2, "{third}");
    assert_eq!(sent_to_provider(&llm, "still there?").len(), 5);
    let status = status(&mut ws);
    assert_eq!(
        status["storage"],
        json!({"backend": "redis", "reachable": true, "error": null})
    );
}

#[test]
fn only_the_newest_turns_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let redis = RedisServer::start();
    let daemon = start_daemon(
        dir.path(),
        &llm,
        &redis.url(),
        &[("MAX_CONVERSATION_TURNS", "3")],
    );
    let mut ws = session(&daemon);
    let id = continuation(&chat(&mut ws, "q0", None));
    for i in 1..6 {
        let result = chat(&mut ws, &format!("q{i}"), Some(&id));
        assert_eq!(
            result["structuredContent"]["history_turns"],
            i.min(3),
            "{result}"
        );
    }
    let stored: Value = serde_json::from_str(
        &redis
            .command(&["GET", &format!("exai:thread:{id}")])
            .text()
            .unwrap(),
    )
    .unwrap();
    let users: Vec<&str> = stored["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["q3", "q4", "q5"]);
    let sent = sent_to_provider(&llm, "q5");
    assert_eq!(
        sent.first().unwrap().1,
        "q2",
        "the provider saw the three turns before q5: {sent:?}"
    );
    assert_eq!(sent.len(), 7);
}

#[test]
fn a_redis_killed_mid_run_costs_history_not_answers_and_comes_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let llm = FakeLlmProc::start(&[]);
    let mut redis = RedisServer::start();
    let daemon = start_daemon(dir.path(), &llm, &redis.url(), &[]);
    let mut ws = session(&daemon);
    let id = continuation(&chat(&mut ws, "remember me", None));

    redis.kill();
    let blind = chat(&mut ws, "do you remember?", Some(&id));
    assert_eq!(
        blind["structuredContent"]["history_available"], false,
        "{blind}"
    );
    assert_eq!(blind["structuredContent"]["history_turns"], 0);
    let text = blind["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("echo: do you remember?"), "{text}");
    assert!(
        text.contains("[conversation history unavailable: redis storage unavailable"),
        "{text}"
    );
    assert_eq!(
        sent_to_provider(&llm, "do you remember?").len(),
        1,
        "no history was sent"
    );
    daemon.proc.wait_for_log("Redis unreachable");
    assert_eq!(status(&mut ws)["storage"]["reachable"], false);
    // Counted, not hidden: the agent sees the failed operations.
    agent.wait_metric(
        "mcp_storage_operations_total",
        &[("backend", "redis"), ("result", "error")],
        |v| v >= 1.0,
    );

    redis.restart();
    wait_for("the daemon to find Redis again", PATIENCE, || {
        (status(&mut ws)["storage"]["reachable"] == true).then_some(())
    });
    daemon.proc.wait_for_log("Redis reachable again");
    let back = chat(&mut ws, "and now?", Some(&id));
    assert_eq!(
        back["structuredContent"]["history_available"], true,
        "{back}"
    );
    // The turn saved before the kill is back (Redis kept it on disk).
    assert_eq!(back["structuredContent"]["history_turns"], 1);
    assert_eq!(sent_to_provider(&llm, "and now?")[0].1, "remember me");
}

#[test]
fn a_redis_down_at_start_is_picked_up_when_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let mut redis = RedisServer::start();
    redis.kill();
    let daemon = start_daemon(dir.path(), &llm, &redis.url(), &[]);
    daemon.proc.wait_for_log("Redis unreachable at start");
    let mut ws = session(&daemon);
    let first = chat(&mut ws, "hello", None);
    assert_eq!(first["structuredContent"]["history_available"], false);
    assert!(result_text(&json!({"result": first})).contains("this turn was not saved"));

    redis.restart();
    wait_for("the daemon to find Redis", PATIENCE, || {
        (status(&mut ws)["storage"]["reachable"] == true).then_some(())
    });
    let id = continuation(&chat(&mut ws, "one", None));
    let two = chat(&mut ws, "two", Some(&id));
    assert_eq!(two["structuredContent"]["history_turns"], 1, "{two}");
}

#[test]
fn a_stalled_redis_does_not_hold_up_the_chat() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let stalled = SilentListener::start();
    let daemon = start_daemon(
        dir.path(),
        &llm,
        &stalled.url(),
        &[("EXAI_STORAGE_TIMEOUT_MS", "300")],
    );
    let mut ws = session(&daemon);
    for prompt in ["anyone home?", "still nobody?"] {
        let started = Instant::now();
        let result = chat(&mut ws, prompt, Some("stalled-thread"));
        // Not a measurement: without timeouts this call would never return.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("echo: {prompt}")), "{text}");
        assert_eq!(result["structuredContent"]["history_available"], false);
        assert!(
            text.contains("[conversation history unavailable: redis storage"),
            "{text}"
        );
    }
    stalled.wait_accepted(1);
    assert_eq!(status(&mut ws)["storage"]["reachable"], false);
}
