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
