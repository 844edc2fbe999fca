//! Every upstream body is read within a byte limit, streaming or not: a provider's event
//! that never ends is cut at 1 MiB with an error naming the limit (not left to grow for
//! the whole call timeout), a JSON body that never ends at 16 MiB, and a Supabase error
//! body that never ends is read no further than what its log line needs.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::fake_postgrest::{FakePostgrest, Fault};
use exai_tests::mcp::{self, result_text};
use exai_tests::procfs::{rss_bytes, MIB};
use exai_tests::{Daemon, PATIENCE};
use serde_json::json;

#[test]
fn a_provider_body_that_never_ends_is_cut_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        // Only a byte limit ends these calls with an error naming it.
        &[("EXAI_PROVIDER_TIMEOUT_SECS", "10".to_string())],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");

    let streamed = ws.call_tool("chat", json!({"prompt": "go [fault:endless-event]"}));
    assert_eq!(streamed["result"]["isError"], true, "{streamed}");
    let text = result_text(&streamed);
    assert!(
        text.contains("a streamed event larger than 1048576 bytes"),
        "{text}"
    );
    let whole = ws.call_tool(
        "chat",
        json!({"prompt": "go [fault:endless-event]", "stream": false}),
    );
    assert_eq!(whole["result"]["isError"], true, "{whole}");
    let text = result_text(&whole);
    assert!(
        text.contains("response larger than 16777216 bytes"),
        "{text}"
    );

    let rss = rss_bytes(daemon.proc.pid());
    assert!(
        rss < 150 * MIB,
        "{} MiB after two endless bodies",
        rss / MIB
    );
    let answer = ws.call_tool("chat", json!({"prompt": "still here"}));
    assert!(
        result_text(&answer).starts_with("echo: still here\n"),
        "{answer}"
    );
}

#[test]
fn a_supabase_error_body_that_never_ends_is_read_no_further_than_needed() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    fake.set_fault(Some(Fault::EndlessError));
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
            ("EXAI_SUPABASE_TIMEOUT_SECS", "10".to_string()),
        ],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    ws.call_tool("chat", json!({"prompt": "kept in the spool"}));
    // The status and the start of the body, cut, rather than a timeout after reading it.
    let line = daemon
        .proc
        .wait_for_log("Supabase upload failed (HTTP 500: eeee");
    assert!(line.contains("eeee…"), "{line}");
    assert!(line.len() < 4096, "{} bytes logged", line.len());
    let rss = rss_bytes(daemon.proc.pid());
    assert!(rss < 150 * MIB, "{} MiB", rss / MIB);
    fake.set_fault(None);
    exai_tests::wait_for("the turn uploaded once Supabase is well", PATIENCE, || {
        (fake.stats().tables.get("messages").map_or(0, |t| t.rows) == 2).then_some(())
    });
}
