//! The in-memory conversation store keeps to `EXAI_MEMORY_STORE_MAX_BYTES`: forty chats
//! with 3 MB prompts leave it within its budget, whole threads go oldest first, the
//! newest continue, and the daemon's memory stays far below what forty threads hold.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp;
use exai_tests::procfs::{rss_bytes, MIB};
use exai_tests::Daemon;
use serde_json::json;

const BUDGET: u64 = 16 * MIB;
const CHATS: usize = 40;
const PROMPT_BYTES: usize = 3 << 20;

#[test]
fn the_byte_budget_holds_and_the_oldest_threads_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[("EXAI_MEMORY_STORE_MAX_BYTES", BUDGET.to_string())],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");

    let mut threads = Vec::new();
    for n in 0..CHATS {
        // One word: the fake answers it as one token.
        let prompt = format!("{n:02}{}", "x".repeat(PROMPT_BYTES));
        let answer = ws.call_tool(
            "chat",
            json!({"prompt": prompt, "stream": false, "continuation_id": format!("thread-{n}")}),
        );
        assert_eq!(answer["result"]["isError"], false, "chat {n}");
        threads.push(format!("thread-{n}"));
    }
    let rss = rss_bytes(daemon.proc.pid());
    // Forty threads of 6 MB each held 309 MiB when nothing was evicted (77 MiB now).
    assert!(
        rss < 160 * MIB,
        "the daemon holds {} MiB after forty 6 MB threads with a 16 MiB budget",
        rss / MIB
    );
    let storage =
        ws.call_tool("status", json!({}))["result"]["structuredContent"]["storage"].clone();
    assert_eq!(storage["backend"], "memory", "{storage}");
    assert_eq!(storage["max_bytes"], BUDGET, "{storage}");
    let bytes = storage["bytes"].as_u64().unwrap();
    let kept = storage["threads"].as_u64().unwrap();
    assert!(bytes <= BUDGET, "{bytes} bytes kept: {storage}");
    // Each thread holds a 3 MB prompt and its 3 MB echo: two fit in 16 MiB.
    assert_eq!(kept, 2, "{storage}");

    // The oldest went whole; the newest continue with their turn.
    let continued = |ws: &mut mcp::RawWs, id: &str| {
        ws.call_tool("chat", json!({"prompt": "again", "continuation_id": id}))["result"]
            ["structuredContent"]["history_turns"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(continued(&mut ws, &threads[CHATS - 1]), 1);
    assert_eq!(continued(&mut ws, &threads[0]), 0, "the oldest thread went");
}
