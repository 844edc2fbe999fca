//! Streamable HTTP sessions are bounded (`EXAI_HTTP_MAX_SESSIONS`): 8,000 `initialize`
//! POSTs in a burst keep at most that many, the ones idle the longest closed first
//! (their clients get 404, as the protocol says, and may start anew); a session with a
//! call in flight is never closed; and once the sessions expire the daemon's memory
//! comes back down.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::http_mcp::{post, HttpSession, INITIALIZE};
use exai_tests::mcp;
use exai_tests::procfs::{rss_bytes, MIB};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::{json, Value};

const MAX_SESSIONS: u64 = 256;
const BURST: usize = 8000;
const SENDERS: usize = 8;

fn connections(ws: &mut mcp::RawWs) -> Value {
    ws.call_tool("status", json!({}))["result"]["structuredContent"]["connections"].clone()
}

#[test]
fn eight_thousand_sessions_stay_bounded_and_their_memory_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[
            ("EXAI_HTTP_MAX_SESSIONS", MAX_SESSIONS.to_string()),
            ("EXAI_HTTP_SESSION_IDLE_S", "2".to_string()),
        ],
    );
    let port = daemon.mcp_port;
    let mut watcher = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    watcher.initialize("2025-11-25");
    // Warm up the paths the burst takes, then take the baseline.
    for _ in 0..20 {
        HttpSession::open(port).expect("a session");
    }
    let baseline = rss_bytes(daemon.proc.pid());

    // A session busy with a call through the burst is not the one closed.
    let mut busy = HttpSession::open(port).expect("a session");
    let call = std::thread::spawn(move || {
        busy.call_tool(
            "chat",
            json!({"prompt": "through the burst [latency:3000]"}),
        )
    });
    wait_for("the call in flight", PATIENCE, || {
        let status = watcher.call_tool("status", json!({}));
        (status["result"]["structuredContent"]["in_flight"] == 1).then_some(())
    });
    let first = HttpSession::open(port).expect("a session").id;

    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut answered = 0;
                for _ in 0..BURST / SENDERS {
                    if post(port, None, INITIALIZE).is_some_and(|a| a.status == 200) {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let mut most = 0;
    while !senders.iter().all(|s| s.is_finished()) {
        let open = connections(&mut watcher)["http_sessions"].as_u64();
        most = most.max(open.unwrap_or(u64::MAX));
    }
    let answered: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
    let peak = rss_bytes(daemon.proc.pid());
    assert!(
        peak < baseline + 100 * MIB,
        "{} MiB over the baseline of {} MiB after the burst",
        (peak - baseline) / MIB,
        baseline / MIB
    );
    assert_eq!(answered, BURST, "every initialize was answered");
    let after_burst = connections(&mut watcher);
    assert!(
        most <= MAX_SESSIONS,
        "{most} sessions open during the burst"
    );
    assert!(
        after_burst["http_sessions_evicted"].as_u64().unwrap() >= (BURST as u64 - MAX_SESSIONS),
        "{after_burst}"
    );

    // The busy session kept its call; the first idle one was closed to make room.
    let answer = call.join().unwrap().expect("the call's answer");
    assert!(
        answer.body.contains("echo: through the burst"),
        "{}",
        answer.body
    );
    let gone = post(
        port,
        Some(&first),
        r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
    )
    .expect("an answer");
    assert_eq!(gone.status, 404, "a closed session is unknown");

    // Idle sessions expire, and the memory they held is given back.
    wait_for("every session to expire", PATIENCE, || {
        (connections(&mut watcher)["http_sessions"] == 0).then_some(())
    });
    let after = wait_for("the memory to come back", PATIENCE, || {
        let rss = rss_bytes(daemon.proc.pid());
        (rss < baseline + 20 * MIB).then_some(rss)
    });
    eprintln!(
        "RSS: baseline {} MiB, after the burst {} MiB, after expiry {} MiB",
        baseline / MIB,
        peak / MIB,
        after / MIB
    );
}

/// The model calls under way, as `status` in `session` reports them.
fn in_flight(session: &mut HttpSession) -> Value {
    let answer = session
        .call_tool("status", json!({}))
        .expect("status answers");
    answer.message().expect("a JSON-RPC answer")["result"]["structuredContent"]["in_flight"].clone()
}

/// A plain `tools/call` over HTTP is answered in place, off rmcp's session worker
/// (`daemon/src/server/direct.rs`); it must still end as rmcp's would: cancelled by
/// `notifications/cancelled` naming it, and by the end of its session, its model call
/// aborted and its place returned, the client answered with the cancellation.
#[test]
fn a_plain_http_call_is_cancelled_by_its_notification_and_by_its_session_end() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(&dir.path().join("events.sock"), llm.port, &[]);
    let port = daemon.mcp_port;
    let mut session = HttpSession::open(port).expect("a session");
    let id = session.id.clone();
    let slow_call = |request_id: u64| {
        let id = id.clone();
        std::thread::spawn(move || {
            let body = json!({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": "chat", "arguments": {"prompt": "slow [latency:30000]"}}});
            post(port, Some(&id), &body.to_string())
        })
    };

    // Cancelled by its notification.
    let call = slow_call(41);
    wait_for("the model call under way", PATIENCE, || {
        (in_flight(&mut session) == 1).then_some(())
    });
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 41, "reason": "the test cancels"}});
    let accepted = session
        .send(&note.to_string())
        .expect("the notification is taken");
    assert_eq!(accepted.status, 202);
    let answer = call.join().unwrap().expect("the call is answered");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let message = answer.message().expect("JSON");
    assert_eq!(message["id"], 41, "{message}");
    assert_eq!(message["result"]["isError"], true, "{message}");
    let text = message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.contains("cancelled by the client"), "{message}");
    assert_eq!(in_flight(&mut session), 0, "the model call's place is back");

    // Ended with its session.
    let call = slow_call(42);
    wait_for("the second model call under way", PATIENCE, || {
        (in_flight(&mut session) == 1).then_some(())
    });
    let deleted = exai_tests::http_mcp::exchange(
        port,
        format!("DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: {id}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("DELETE answered");
    assert_eq!(deleted.status, 204);
    let answer = call.join().unwrap().expect("the call is answered");
    let message = answer.message().expect("JSON");
    assert_eq!(message["id"], 42, "{message}");
    let text = message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.contains("cancelled by the client"), "{message}");
    let mut other = HttpSession::open(port).expect("another session");
    assert_eq!(in_flight(&mut other), 0, "the model call's place is back");
}
