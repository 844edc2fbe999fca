//! A spool disk that stalls (held by the test hook `EXAI_SPOOL_TEST_HOLD_FILE`) costs a
//! chat at most `EXAI_SPOOL_WRITE_TIMEOUT_MS`: it answers, saying its turn is queued but
//! not yet on disk, and is counted. Meanwhile `version`, `listmodels`, `status` and every
//! other session answer, over WebSocket and HTTP, and chats keep coming back; once the
//! disk recovers the queued turns are written and reach Supabase.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::fake_postgrest::FakePostgrest;
use exai_tests::http_mcp::HttpSession;
use exai_tests::mcp::{self, result_text};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::{json, Value};

/// More chats at once than the daemon has worker threads.
const STALLED_CHATS: usize = 8;

#[test]
fn a_stalled_spool_disk_holds_no_worker_and_costs_a_chat_at_most_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold-the-spool");
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[
            ("SUPABASE_URL", fake.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", fake.key().to_string()),
            (
                "EXAI_SPOOL_DIR",
                dir.path().join("spool").display().to_string(),
            ),
            ("EXAI_SPOOL_TEST_HOLD_FILE", hold.display().to_string()),
            ("EXAI_SPOOL_WRITE_TIMEOUT_MS", "300".to_string()),
        ],
    );
    let mut watcher = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    watcher.initialize("2025-11-25");
    let first = watcher.call_tool("chat", json!({"prompt": "before the stall"}));
    assert_eq!(
        first["result"]["structuredContent"]["persisted"], "written",
        "{first}"
    );

    std::fs::write(&hold, "").unwrap();
    let url = daemon.ws_url();
    let chats: Vec<_> = (0..STALLED_CHATS)
        .map(|n| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut ws = mcp::connect(&url, &[]).unwrap();
                ws.initialize("2025-11-25");
                ws.call_tool("chat", json!({"prompt": format!("stalled-{n}")}))
            })
        })
        .collect();
    // While they wait on the disk, everything else answers.
    let mut http = HttpSession::open(daemon.mcp_port).expect("an HTTP session");
    for round in 0..3 {
        assert!(result_text(&watcher.call_tool("version", json!({}))).starts_with("exai "));
        assert!(result_text(&watcher.call_tool("listmodels", json!({}))).contains("glm-4.5-flash"));
        let status = watcher.call_tool("status", json!({}));
        assert_eq!(status["result"]["isError"], false, "round {round}");
        let over_http = http.call_tool("version", json!({})).expect("an answer");
        assert!(over_http.body.contains("exai "), "{}", over_http.body);
    }
    for (n, chat) in chats.into_iter().enumerate() {
        let answer = chat.join().unwrap();
        let result = &answer["result"];
        assert_eq!(result["isError"], false, "{answer}");
        assert_eq!(
            result["structuredContent"]["persisted"], "queued",
            "{answer}"
        );
        let text = result_text(&answer);
        assert!(text.starts_with(&format!("echo: stalled-{n}")), "{text}");
        assert!(
            text.contains("queued for Supabase but not yet on disk")
                && text.contains("300 ms (EXAI_SPOOL_WRITE_TIMEOUT_MS)"),
            "{text}"
        );
    }
    let supabase = |ws: &mut mcp::RawWs| -> Value {
        ws.call_tool("status", json!({}))["result"]["structuredContent"]["supabase"].clone()
    };
    let stalled = supabase(&mut watcher);
    assert_eq!(stalled["spool_write_timeouts"], STALLED_CHATS, "{stalled}");
    assert_eq!(stalled["spool_queued"], STALLED_CHATS, "{stalled}");
    daemon
        .proc
        .wait_for_log("did not take a chat turn within EXAI_SPOOL_WRITE_TIMEOUT_MS");

    // The disk recovers: the queued turns are written, then uploaded.
    std::fs::remove_file(&hold).unwrap();
    wait_for("the queued turns written", PATIENCE, || {
        (supabase(&mut watcher)["spool_queued"] == 0).then_some(())
    });
    wait_for("every turn uploaded", PATIENCE, || {
        let rows = fake.stats().tables.get("messages").map_or(0, |t| t.rows);
        (rows == 2 * (STALLED_CHATS as u64 + 1)).then_some(())
    });
    let after = watcher.call_tool("chat", json!({"prompt": "after the stall"}));
    assert_eq!(
        after["result"]["structuredContent"]["persisted"], "written",
        "{after}"
    );
}
