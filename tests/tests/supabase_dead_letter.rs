//! A record Supabase refuses for its data (a NUL Postgres cannot store, spooled by an
//! earlier build that let such a `continuation_id` through) is set aside in the
//! dead-letter file with a log line and a count, and every record after it still
//! arrives; new chats go on flowing.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::fake_postgrest::FakePostgrest;
use exai_tests::mcp;
use exai_tests::spool::{record, segment};
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::{json, Value};
use std::path::Path;

fn seed_spool(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = Vec::new();
    bytes.extend(record("before", "first", 1_000));
    bytes.extend(record("bad\u{0}id", "poisoned", 2_000));
    bytes.extend(record("after", "third", 3_000));
    bytes.extend(record("after", "fourth", 4_000));
    std::fs::write(segment(dir, 1), bytes).unwrap();
}

#[test]
fn a_refused_record_is_set_aside_and_the_records_after_it_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    seed_spool(&spool);
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    let agent = Agent::start(&dir.path().join("events.sock"));
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[
            ("SUPABASE_URL", fake.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", fake.key().to_string()),
            ("EXAI_SPOOL_DIR", spool.display().to_string()),
            ("EXAI_SUPABASE_AUTH_RETRY_SECS", "600".to_string()),
        ],
    );

    let prompts = |fake: &FakePostgrest| -> Vec<String> {
        let mut p: Vec<String> = fake
            .rows("messages", &[("role", "user")])
            .iter()
            .map(|r| r["content"].as_str().unwrap().to_string())
            .collect();
        p.sort();
        p
    };
    wait_for("the intact records to arrive", PATIENCE, || {
        (prompts(&fake) == ["first", "fourth", "third"]).then_some(())
    });
    let line = daemon
        .proc
        .wait_for_log("Supabase refused a record; set aside in the dead-letter file");
    assert!(line.contains("HTTP 400"), "{line}");
    assert!(line.contains("22P05"), "{line}");
    assert!(line.contains("dead-letter.jsonl"), "{line}");

    let dead = std::fs::read_to_string(spool.join("dead-letter.jsonl")).unwrap();
    let lines: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{dead}");
    let kept = lines[0]["record"].as_str().unwrap();
    assert!(kept.contains("poisoned"), "{kept}");
    assert!(
        kept.contains("bad\\u0000id"),
        "the record as it was: {kept}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(spool.join("dead-letter.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let status =
        ws.call_tool("status", json!({}))["result"]["structuredContent"]["supabase"].clone();
    assert_eq!(status["dead_lettered"], 1, "{status}");
    // And the agent has it from the heartbeat, with no Supabase key of its own.
    agent.wait_metric(
        "mcp_supabase_dead_letters_total",
        &[("daemon", &daemon.name)],
        |v| v == 1.0,
    );
    // New turns flow on: no pause after a refused record.
    let answer = ws.call_tool("chat", json!({"prompt": "fifth"}));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    wait_for("a new turn to arrive", PATIENCE, || {
        prompts(&fake).contains(&"fifth".to_string()).then_some(())
    });
    wait_for("an empty spool", PATIENCE, || {
        let s =
            ws.call_tool("status", json!({}))["result"]["structuredContent"]["supabase"].clone();
        (s["spool_records"] == 0).then_some(())
    });
}
