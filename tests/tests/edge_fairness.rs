//! No client can lock another out at the MCP edge: what a hostile client did to the
//! daemon at 32f6138, each reproduced here against the fix.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::http_mcp::{self, HttpSession};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Opens `GET /mcp` on `session` and reads its status line; the stream stays open for as
/// long as the returned socket lives.
fn open_stream(port: u16, session: &str) -> (u16, TcpStream) {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-06-18\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(socket.try_clone().unwrap())
        .read_line(&mut status)
        .unwrap();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {status:?}"));
    (code, socket)
}

#[test]
fn idle_streams_hold_no_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[("EXAI_HTTP_MAX_SESSIONS", "64".into())],
    );
    let port = daemon.mcp_port;

    // One client takes every session and opens a stream on each.
    let sessions: Vec<HttpSession> = (0..64)
        .map(|_| HttpSession::open(port).expect("a session"))
        .collect();
    // A session holds at most two streams (EXAI_HTTP_MAX_STREAMS_PER_SESSION).
    let mut held = Vec::new();
    for expected in [200, 200, 429] {
        let (status, socket) = open_stream(port, &sessions[0].id);
        assert_eq!(status, expected);
        held.push(socket);
    }
    held.pop();
    // A client holds at most 32 (EXAI_HTTP_MAX_STREAMS_PER_CLIENT).
    let mut refused = 0;
    for session in &sessions[1..] {
        let (status, socket) = open_stream(port, &session.id);
        match status {
            200 => held.push(socket),
            429 => refused += 1,
            other => panic!("a stream got {other}"),
        }
    }
    assert_eq!(
        (held.len(), refused),
        (32, 33),
        "a client's share of streams"
    );

    // A newcomer still gets a session: one held only by a waiting stream makes room.
    let newcomer = HttpSession::open(port);
    assert!(
        newcomer.is_ok(),
        "a new client was refused: {newcomer:?}",
        newcomer = newcomer.err()
    );
    drop(held);
}

#[test]
fn a_duplicate_id_in_a_session_is_refused_and_every_request_answered() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(&dir.path().join("events.sock"), llm.port, &[]);
    let port = daemon.mcp_port;
    let session = HttpSession::open(port).expect("a session");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "chat", "arguments": {"prompt": "slow [latency:1500]"}}})
    .to_string();

    let answers: Vec<Value> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..40)
            .map(|_| scope.spawn(|| session.send(&body).and_then(|a| a.message())))
            .collect();
        calls
            .into_iter()
            .map(|call| call.join().unwrap().expect("every request is answered"))
            .collect()
    });
    let results = answers.iter().filter(|a| a.get("result").is_some()).count();
    let duplicates = answers
        .iter()
        .filter(|a| a["error"]["code"] == -32600 && a["id"] == 7)
        .count();
    assert_eq!((results, duplicates), (1, 39), "{answers:?}");

    // Nothing stays in flight, and the id is free again once answered.
    let mut session = session;
    let status = session
        .call_tool("status", json!({}))
        .unwrap()
        .message()
        .unwrap();
    assert_eq!(
        status["result"]["structuredContent"]["in_flight"], 0,
        "{status}"
    );
    let again = session.send(&body).and_then(|a| a.message()).unwrap();
    assert_eq!(again["result"]["isError"], false, "{again}");
    wait_for("no call in flight", PATIENCE, || {
        let status = http_mcp::post(
            port,
            Some(&session.id),
            r#"{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"status"}}"#,
        )?
        .message()?;
        (status["result"]["structuredContent"]["in_flight"] == 0).then_some(())
    });
}

#[test]
fn large_requests_waiting_for_a_model_take_a_bounded_share_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[
            // One GLM call at a time, and a long wait allowed: the rest queue.
            ("EXAI_WS_GLM_MAX_INFLIGHT", "1".into()),
            ("EXAI_INFLIGHT_WAIT_MS", "60000".into()),
            // Room for four of the bodies below.
            ("EXAI_REQUEST_BYTES_MAX", (16usize << 20).to_string()),
        ],
    );
    let port = daemon.mcp_port;
    let pid = daemon.proc.pid();
    let before = exai_tests::procfs::rss_bytes(pid);
    let headers = http_mcp::modern_headers("tools/call", Some("chat"));
    let chat = |prompt: &str| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "chat", "arguments": {"prompt": prompt},
                       "_meta": http_mcp::modern_meta(json!({}))}});
        http_mcp::post_request(None, &headers, &body.to_string())
    };
    let large = chat(&"x".repeat(3_900_000));
    let blocker = chat("hold the place [latency:2000]");
    let peak = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let answers: Vec<http_mcp::Answer> = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = exai_tests::procfs::rss_bytes(pid);
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // One call holds the only place; then 100 chats of 3.9 MB come at once.
        let held = scope.spawn(|| http_mcp::exchange(port, &blocker));
        wait_for("the blocker to reach the model", PATIENCE, || {
            let (_, stats) = exai_tests::metrics::http_get(llm.port, "/_stats")?;
            let stats: Value = serde_json::from_str(&stats).ok()?;
            (stats["requests"].as_u64()? >= 1).then_some(())
        });
        let calls: Vec<_> = (0..100)
            .map(|_| scope.spawn(|| http_mcp::exchange(port, &large).expect("an answer")))
            .collect();
        let answers = calls.into_iter().map(|c| c.join().unwrap()).collect();
        held.join().unwrap().expect("the blocker is answered");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        answers
    });
    let answered = answers.iter().filter(|a| a.status == 200).count();
    let refused: Vec<&http_mcp::Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(answered + refused.len(), 100, "each is answered or refused");
    assert!(
        (1..=4).contains(&answered),
        "the budget holds up to four: {answered}"
    );
    assert!(
        refused
            .iter()
            .all(|a| a.body.contains("EXAI_REQUEST_BYTES_MAX")),
        "a refusal names its setting"
    );
    let peak = peak.into_inner();
    println!(
        "100 chats of 3.9 MB: {answered} answered, {} refused; daemon RSS {} MB before, peak {} MB",
        refused.len(),
        before >> 20,
        peak >> 20
    );
    // 16 MiB of bodies, each held at most three times over (body, JSON, prompt) while
    // being read and checked; at 32f6138 the daemon grew by 1,162 MB.
    let grew = peak.saturating_sub(before);
    assert!(grew < 160 << 20, "the daemon grew by {} MB", grew >> 20);
}
