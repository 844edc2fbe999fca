//! Bad input gets a clear answer — a JSON-RPC error, a close code or an HTTP status —
//! and the daemon keeps serving everyone.

use exai_tests::mcp::{self, result_text, Ended};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;

const TOKEN: &str = "0123456789abcdef-test-token";

fn daemon(dir: &tempfile::TempDir) -> Daemon {
    Daemon::start_with(
        &dir.path().join("events.sock"),
        &[
            ("EXAI_WS_TOKEN", TOKEN.into()),
            ("EXAI_WS_MAX_FRAME_BYTES", "65536".into()),
        ],
    )
}

fn authed(daemon: &Daemon) -> mcp::RawWs {
    mcp::connect(
        &daemon.ws_url(),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .expect("authorised upgrade")
}

/// A raw HTTP request; returns the status code.
fn http_status(port: u16, request: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).unwrap();
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn tokens_and_origins_are_checked_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    // Everything logged, so that "the token never reaches the log" means something.
    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[
            ("EXAI_WS_TOKEN", TOKEN.into()),
            ("EXAI_LOG", "trace".into()),
        ],
    );
    assert_eq!(
        mcp::connect(&daemon.ws_url(), &[]).err(),
        Some(401),
        "no token"
    );
    assert_eq!(
        mcp::connect(
            &daemon.ws_url(),
            &[("authorization", "Bearer 0123456789abcdef-wrong")]
        )
        .err(),
        Some(401)
    );
    let url = format!("{}?token={TOKEN}", daemon.ws_url());
    assert!(mcp::connect(&url, &[]).is_ok(), "?token= is accepted");
    let origin = [
        ("authorization", &*format!("Bearer {TOKEN}")),
        ("origin", "https://evil.example"),
    ];
    assert_eq!(
        mcp::connect(&daemon.ws_url(), &origin).err(),
        Some(403),
        "foreign Origin"
    );
    let loopback = [
        ("authorization", &*format!("Bearer {TOKEN}")),
        ("origin", "http://localhost:3000"),
    ];
    assert!(
        mcp::connect(&daemon.ws_url(), &loopback).is_ok(),
        "loopback Origin"
    );

    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let post = |host: &str, extra: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(
        http_status(daemon.mcp_port, &post("evil.example", &bearer)),
        403,
        "foreign Host"
    );
    assert_eq!(
        http_status(
            daemon.mcp_port,
            &post(
                "127.0.0.1",
                &format!("{bearer}Origin: https://evil.example\r\n")
            )
        ),
        403
    );
    assert_eq!(
        http_status(daemon.mcp_port, &post("127.0.0.1", "")),
        401,
        "no token over HTTP"
    );
    assert_eq!(
        http_status(
            daemon.mcp_port,
            &post("127.0.0.1", "Authorization: Bearer nope\r\n")
        ),
        401
    );

    // The token never reaches the log, not even at trace level. The log is read from the
    // daemon's stderr as it comes: wait until the trace lines are in.
    let log = wait_for("trace lines in the daemon's log", PATIENCE, || {
        let log = daemon.proc.log();
        (log.len() > 20).then_some(log)
    });
    assert!(
        log.iter().all(|l| !l.contains(TOKEN)),
        "the token reached the log"
    );
}

#[test]
fn malformed_json_rpc_gets_the_right_error_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&dir);
    let mut ws = authed(&daemon);
    ws.initialize("2025-11-25");

    ws.send_text("{not json");
    let reply = ws.recv().unwrap();
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    assert_eq!(reply["id"], json!(null));

    ws.send_text(r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#);
    let reply = ws.recv().unwrap();
    assert_eq!(
        (reply["error"]["code"].clone(), reply["id"].clone()),
        (json!(-32600), json!(7)),
        "{reply}"
    );

    let reply = ws.call_tool("no-such-tool", json!({}));
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown tool \"no-such-tool\""));

    let reply = ws.call_tool("chat", json!({"temperature": 1}));
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt is required"),
        "{reply}"
    );

    let reply = ws.request("resources/frobnicate", json!({}));
    assert_eq!(reply["error"]["code"], -32601, "{reply}");
    // Discovery is 2026-07-28's: without that revision's _meta, invalid params.
    let reply = ws.request("server/discover", json!({}));
    assert_eq!(reply["error"]["code"], -32602, "{reply}");

    // After all that, the same session still answers.
    let reply = ws.call_tool("version", json!({}));
    assert!(result_text(&reply).starts_with("exai "), "{reply}");
    assert_eq!(ws.request("ping", json!({}))["result"], json!({}));
}

#[test]
fn binary_and_oversized_frames_close_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&dir);

    let mut ws = authed(&daemon);
    ws.initialize("2025-11-25");
    ws.send_binary(b"\x00\x01binary");
    assert!(
        matches!(ws.recv(), Err(Ended::Close(Some((1003, _))))),
        "binary frame"
    );

    let mut ws = authed(&daemon);
    ws.initialize("2025-11-25");
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    ws.send_text(&huge);
    assert!(
        matches!(ws.recv(), Err(Ended::Close(Some((1009, _))))),
        "oversized frame"
    );

    // The daemon is unharmed: a new session works.
    let mut ws = authed(&daemon);
    ws.initialize("2025-11-25");
    assert!(result_text(&ws.call_tool("version", json!({}))).starts_with("exai "));
}

#[test]
fn initialize_negotiates_every_supported_version() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&dir);
    for (asked, answered) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let mut ws = authed(&daemon);
        assert_eq!(
            ws.request("ping", json!({}))["result"],
            json!({}),
            "ping before initialize"
        );
        let init = ws.initialize(asked);
        assert_eq!(init["result"]["protocolVersion"], answered, "asked {asked}");
        assert_eq!(init["result"]["serverInfo"]["name"], "exai");
    }
}

#[test]
fn too_many_requests_in_flight_on_one_connection_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let llm = exai_tests::fake_llm::FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[("EXAI_WS_MAX_INFLIGHT_PER_CONNECTION", "2".into())],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    for id in [100, 101, 102] {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "chat", "arguments": {"prompt": "slow [latency:1500]"}}});
        ws.send_text(&call.to_string());
    }
    let first = ws.recv().unwrap();
    assert_eq!(first["id"], 102, "the third is refused at once: {first}");
    assert_eq!(first["error"]["code"], -32000);
    assert!(first["error"]["message"]
        .as_str()
        .unwrap()
        .contains("EXAI_WS_MAX_INFLIGHT_PER_CONNECTION"));
    let mut answered: Vec<u64> = (0..2)
        .map(|_| ws.recv().unwrap()["id"].as_u64().unwrap())
        .collect();
    answered.sort();
    assert_eq!(answered, [100, 101]);
}

#[test]
fn connections_beyond_the_cap_get_503_and_the_rest_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[("EXAI_WS_MAX_CONNECTIONS", "2".into())],
    );
    let mut first = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    let _second = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    let status = http_status(
        daemon.mcp_port,
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert_eq!(status, 503, "a third connection is refused");
    first.initialize("2025-11-25");
    assert!(result_text(&first.call_tool("version", json!({}))).starts_with("exai "));
    drop(first);
    // A place frees up when a session ends.
    let mut third = exai_tests::wait_for("a free connection slot", exai_tests::PATIENCE, || {
        mcp::connect(&daemon.ws_url(), &[]).ok()
    });
    third.initialize("2025-11-25");
}

/// A raw HTTP exchange: status, headers (lower-cased names) and body.
fn http_exchange(port: u16, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // Every exchange here ends: Connection: close, and the SSE stream of a POSTed
    // request closes after its answer.
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

fn post(port: u16, session: Option<&str>, body: &str) -> (u16, String, String) {
    let session = session
        .map(|s| format!("Mcp-Session-Id: {s}\r\n"))
        .unwrap_or_default();
    http_exchange(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{session}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn streamable_http_answers_202_404_and_405_as_the_protocol_says() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("events.sock"));
    let port = daemon.mcp_port;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let (status, head, body) = post(port, None, init);
    assert_eq!(status, 200, "{head}");
    assert!(
        body.contains("\"protocolVersion\":\"2025-06-18\""),
        "{body}"
    );
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id:"))
        .map(str::trim)
        .expect("a session id")
        .to_string();

    let (status, _, _) = post(
        port,
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202, "a notification is accepted with 202");
    let (status, head, body) = post(
        port,
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"version","arguments":{}}}"#,
    );
    assert_eq!(status, 200);
    assert!(body.contains("exai 0."), "{body}");
    // An answer with nothing before it comes as plain JSON, the client accepting it.
    assert!(head.contains("content-type: application/json"), "{head}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(answer["id"], 2, "{body}");
    let (status, _, _) = post(
        port,
        Some("no-such-session"),
        r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
    );
    assert_eq!(status, 404, "an unknown session");
    let (status, _, _) = http_exchange(
        port,
        "PUT /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    let (status, _, body) = post(
        port,
        Some(&session),
        r#"{"jsonrpc":"2.0","id":4,"method":"server/discover","params":{}}"#,
    );
    assert_eq!(
        status, 400,
        "discovery without 2026-07-28's _meta is malformed"
    );
    assert!(body.contains("-32602"), "{body}");
    let (status, _, _) = http_exchange(
        port,
        &format!("DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: {session}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 204, "the session is ended");
    let (status, _, _) = post(
        port,
        Some(&session),
        r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#,
    );
    assert_eq!(status, 404, "an ended session is gone");
}
