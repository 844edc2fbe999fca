//! Conversations in a real `redis-server`: history reaches the provider, survives a
//! daemon restart, expires and is capped; a Redis that dies, is down at start or stalls
//! costs the history (said so in the answer), never the answer, and comes back alone.

use exai_tests::conversation::{
    chat, continuation, key, sent_to_provider, status, stored_prompts, stored_turns,
};
use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{result_text, RawWs};
use exai_tests::redis::{RedisServer, Reply, SilentListener};
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A daemon keeping conversations in `redis_url`, its journal in `dir/journal`.
fn start_daemon(dir: &Path, llm: &FakeLlmProc, redis_url: &str, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![
        ("REDIS_URL", redis_url.to_string()),
        (
            "EXAI_STORAGE_JOURNAL_DIR",
            dir.join("journal").display().to_string(),
        ),
    ];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    Daemon::with_llm(&dir.join("events.sock"), llm.port, &all)
}

fn session(daemon: &Daemon) -> RawWs {
    exai_tests::conversation::session(&daemon.ws_url())
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
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

    // The documented layout, under the documented key, with the TTL set: a list, one
    // turn's JSON per element, oldest first.
    let key = key(&id);
    assert_eq!(
        redis.command(&["TYPE", &key]).text().as_deref(),
        Some("list")
    );
    let Reply::Array(items) = redis.command(&["LRANGE", &key, "0", "-1"]) else {
        panic!("LRANGE {key}")
    };
    assert_eq!(items.len(), 2);
    let second: Value = serde_json::from_str(&items[1].text().unwrap()).unwrap();
    assert_eq!(second["user"], "and why a checksum?");
    assert_eq!(second["assistant"], "echo: and why a checksum?");
    assert_eq!(second["model"], "glm-4.5-flash");
    assert!(second["at_unix_ms"].as_u64().unwrap() > 0);
    let ttl = redis.command(&["TTL", &key]).integer();
    assert!(ttl > 7000 && ttl <= 7200, "TTL {ttl} for 2 hours");

    drop(ws);
    daemon.proc.terminate();
    let daemon = start_daemon(dir.path(), &llm, &redis.url(), &env);
    let mut ws = session(&daemon);
    let third = chat(&mut ws, "still there?", Some(&id));
    assert_eq!(third["structuredContent"]["history_turns"], 2, "{third}");
    assert_eq!(sent_to_provider(&llm, "still there?").len(), 5);
    let storage = status(&mut ws)["storage"].clone();
    assert_eq!(
        (
            &storage["backend"],
            &storage["reachable"],
            &storage["error"]
        ),
        (&json!("redis"), &json!(true), &Value::Null),
        "{storage}"
    );
    assert_eq!(storage["journal"]["turns"], 0, "{storage}");
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
    assert_eq!(stored_prompts(&redis, &id), ["q3", "q4", "q5"]);
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
    // The turn answered meanwhile joins the conversation from the journal.
    wait_for("the journal to empty", PATIENCE, || {
        (status(&mut ws)["storage"]["journal"]["turns"] == 0).then_some(())
    });
    let back = chat(&mut ws, "and now?", Some(&id));
    assert_eq!(
        back["structuredContent"]["history_available"], true,
        "{back}"
    );
    // The turn saved before the kill is back (Redis kept it on disk), and the one
    // answered while it was down follows it.
    assert_eq!(back["structuredContent"]["history_turns"], 2);
    let sent = sent_to_provider(&llm, "and now?");
    assert_eq!(
        (&*sent[0].1, &*sent[2].1),
        ("remember me", "do you remember?")
    );
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
    assert!(result_text(&json!({"result": first})).contains("this turn was kept on disk"));

    redis.restart();
    wait_for("the daemon to find Redis", PATIENCE, || {
        (status(&mut ws)["storage"]["reachable"] == true).then_some(())
    });
    // The turn answered before Redis came is in its conversation once it did.
    let first_id = continuation(&first);
    wait_for("the kept turn in its conversation", PATIENCE, || {
        (stored_turns(&redis, &first_id).len() == 1).then_some(())
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
