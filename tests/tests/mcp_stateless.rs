//! MCP 2026-07-28 on every transport, beside the handshake era: stateless requests over
//! Streamable HTTP, WebSocket and the stdio bridge; a conversation continued across
//! transports with nothing but its `continuation_id`; malformed 2026 requests each
//! answered with the error the revision specifies, the daemon serving on; and each era's
//! results in that era's shape whichever path answered them.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::http_mcp::{self, modern_meta, HttpSession};
use exai_tests::mcp;
use exai_tests::process::bin_path;
use exai_tests::Daemon;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

fn daemon(dir: &tempfile::TempDir, llm: &FakeLlmProc) -> Daemon {
    Daemon::with_llm(&dir.path().join("events.sock"), llm.port, &[])
}

/// A stateless `tools/call` over HTTP that must succeed; its result.
fn http_call(port: u16, name: &str, arguments: Value) -> Value {
    let answer = http_mcp::stateless(
        port,
        1,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
    .expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.header("mcp-session-id").is_none(),
        "no session: {answer:?}"
    );
    let message = answer.message().expect("a JSON-RPC answer");
    assert_eq!(message["result"]["isError"], false, "{message}");
    message["result"].clone()
}

#[test]
fn a_conversation_goes_on_across_transports_with_its_handle_alone() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);

    // Streamable HTTP, no session: the first turn.
    let first = http_call(daemon.mcp_port, "chat", json!({"prompt": "one"}));
    assert_eq!(first["resultType"], "complete");
    assert_eq!(first["_meta"][SERVER_INFO]["name"], "exai");
    let id = first["structuredContent"]["continuation_id"]
        .as_str()
        .unwrap()
        .to_string();

    // WebSocket, no initialize: discover, list, the second turn.
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    let meta = modern_meta(json!({}));
    let discovered = ws.request("server/discover", json!({"_meta": meta}));
    assert!(
        discovered["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{discovered}"
    );
    assert_eq!(discovered["result"]["_meta"][SERVER_INFO]["name"], "exai");
    let listed = ws.request("tools/list", json!({"_meta": meta}));
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["chat", "listmodels", "version", "status"],
        "a fixed order"
    );
    assert_eq!(listed["result"]["ttlMs"], 60000);
    assert_eq!(listed["result"]["cacheScope"], "private");
    let second = ws.request(
        "tools/call",
        json!({"name": "chat", "arguments": {"prompt": "two", "continuation_id": id}, "_meta": meta}),
    );
    assert_eq!(
        second["result"]["structuredContent"]["history_turns"], 1,
        "{second}"
    );
    assert_eq!(second["result"]["resultType"], "complete");

    // The stdio bridge, no initialize: the third turn.
    let mut bridge = Command::new(bin_path("exai-daemon"))
        .args(["bridge", &daemon.ws_url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the bridge starts");
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "chat", "arguments": {"prompt": "three", "continuation_id": id}, "_meta": meta}});
    writeln!(bridge.stdin.as_mut().unwrap(), "{call}").unwrap();
    let mut lines = BufReader::new(bridge.stdout.take().unwrap()).lines();
    let third: Value = loop {
        let line = lines.next().expect("the bridge answers").unwrap();
        let message: Value = serde_json::from_str(&line).expect("stdout carries JSON-RPC only");
        if message["id"] == 7 {
            break message;
        }
    };
    drop(bridge.stdin.take());
    let _ = bridge.wait();
    assert_eq!(
        third["result"]["structuredContent"]["history_turns"], 2,
        "{third}"
    );
    let contents: Vec<String> = exai_tests::conversation::sent_to_provider(&llm, "three")
        .into_iter()
        .map(|(_, content)| content)
        .collect();
    assert_eq!(
        contents,
        ["one", "echo: one", "two", "echo: two", "three"],
        "every earlier turn reached the model"
    );
}

#[test]
fn malformed_stateless_requests_get_their_specified_errors_and_the_daemon_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let port = daemon.mcp_port;
    let post = |headers: &str, body: Value| {
        http_mcp::exchange(
            port,
            &http_mcp::post_request(None, headers, &body.to_string()),
        )
        .expect("an answer")
    };
    let call = |meta: Value| {
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
               "params": {"name": "version", "arguments": {}, "_meta": meta}})
    };
    let error = |answer: &http_mcp::Answer| {
        let message = answer
            .message()
            .unwrap_or_else(|| panic!("a JSON-RPC answer: {answer:?}"));
        (
            answer.status,
            message["error"]["code"].as_i64().unwrap_or_default(),
            message,
        )
    };
    let headers = http_mcp::modern_headers("tools/call", Some("version"));

    // No revision in _meta, the header naming 2026-07-28: invalid params.
    let mut no_version = modern_meta(json!({}));
    no_version
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/protocolVersion");
    let (status, code, message) = error(&post(&headers, call(no_version)));
    assert_eq!((status, code), (400, -32602), "{message}");
    assert!(message["error"]["message"]
        .as_str()
        .unwrap()
        .contains("protocolVersion"));

    // A revision this server does not speak: UnsupportedProtocolVersion, naming those it does.
    let mut future = modern_meta(json!({}));
    future["io.modelcontextprotocol/protocolVersion"] = "2027-01-01".into();
    let future_headers = headers.replace("2026-07-28", "2027-01-01");
    let (status, code, message) = error(&post(&future_headers, call(future)));
    assert_eq!((status, code), (400, -32022), "{message}");
    assert!(message["error"]["data"]["supported"]
        .as_array()
        .unwrap()
        .contains(&json!("2026-07-28")));

    // Headers that say something else than the body: HeaderMismatch.
    let wrong_name = http_mcp::modern_headers("tools/call", Some("chat"));
    let (status, code, message) = error(&post(&wrong_name, call(modern_meta(json!({})))));
    assert_eq!((status, code), (400, -32020), "{message}");
    let wrong_method = http_mcp::modern_headers("tools/list", Some("version"));
    let (status, code, message) = error(&post(&wrong_method, call(modern_meta(json!({})))));
    assert_eq!((status, code), (400, -32020), "{message}");
    let old_header = headers.replace("2026-07-28", "2025-11-25");
    let (status, code, message) = error(&post(&old_header, call(modern_meta(json!({})))));
    assert_eq!((status, code), (400, -32020), "{message}");

    // `_meta` that is not an object: not a request at all.
    let (status, code, message) = error(&post(&headers, call(json!("2026-07-28"))));
    assert_eq!((status, code), (400, -32600), "{message}");
    assert_eq!(message["id"], 5, "answered with its id");

    // 1 MiB of _meta besides the revision: an ordinary request, answered.
    let mut large = modern_meta(json!({}));
    large["example.com/padding"] = "x".repeat(1 << 20).into();
    let answer = post(&headers, call(large));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.message().unwrap()["result"]["isError"], false);

    // The daemon serves on, in both eras.
    let result = http_call(port, "version", json!({}));
    assert_eq!(result["structuredContent"]["name"], "exai");
    let mut session = HttpSession::open(port).expect("a 2025 session");
    let answer = session.call_tool("version", json!({})).unwrap();
    assert_eq!(answer.message().unwrap()["result"]["isError"], false);
}

#[test]
fn each_era_gets_its_own_result_shape_whichever_path_answers() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let port = daemon.mcp_port;

    // A plain call is answered in place; one with a progress token goes through rmcp.
    let stateless = |meta: Value| {
        let answer = http_mcp::stateless(
            port,
            3,
            "tools/call",
            json!({"name": "version", "_meta": meta}),
        )
        .expect("an answer");
        answer.message().expect("a JSON-RPC answer")["result"].clone()
    };
    let in_place = stateless(json!({}));
    let through_rmcp = stateless(json!({"progressToken": "p"}));
    for result in [&in_place, &through_rmcp] {
        assert_eq!(result["resultType"], "complete", "{result}");
        assert_eq!(
            result["_meta"][SERVER_INFO],
            json!({"name": "exai", "version": exai_daemon::VERSION})
        );
    }
    assert_eq!(
        in_place["structuredContent"],
        through_rmcp["structuredContent"]
    );

    // In a 2025 session: no resultType, no serverInfo, on either path.
    let mut session = HttpSession::open(port).expect("a 2025 session");
    let plain = session
        .call_tool("version", json!({}))
        .unwrap()
        .message()
        .unwrap();
    let with_progress = session
        .request(
            "tools/call",
            json!({"name": "version", "_meta": {"progressToken": 1}}),
        )
        .unwrap()
        .message()
        .unwrap();
    for message in [&plain, &with_progress] {
        let result = &message["result"];
        assert!(
            result.get("resultType").is_none(),
            "2025 has no resultType: {result}"
        );
        assert!(result["_meta"].get(SERVER_INFO).is_none(), "{result}");
        assert_eq!(result["isError"], false);
    }
}

#[test]
fn a_client_that_closes_its_stream_cancels_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = daemon(&dir, &llm);
    let port = daemon.mcp_port;
    let calls_in_flight = || {
        http_call(port, "status", json!({}))["structuredContent"]["in_flight"]
            .as_u64()
            .unwrap()
    };
    // In place (plain JSON), then through rmcp (a progress token: an SSE stream).
    for (round, meta) in [json!({}), json!({"progressToken": "p"})]
        .into_iter()
        .enumerate()
    {
        let mut full = modern_meta(json!({}));
        for (key, value) in meta.as_object().unwrap() {
            full[key] = value.clone();
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "chat", "arguments": {"prompt": "an endless question [think:60000]", "model": "glm-5"},
                       "_meta": full}});
        // A keep-alive connection, as SDK clients hold them.
        let request = String::from_utf8(http_mcp::post_request(
            None,
            &http_mcp::modern_headers("tools/call", Some("chat")),
            &body.to_string(),
        ))
        .unwrap()
        .replace("Connection: close\r\n", "");
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket.write_all(request.as_bytes()).unwrap();
        exai_tests::wait_for("the model call to start", exai_tests::PATIENCE, || {
            (calls_in_flight() == 1).then_some(())
        });
        drop(socket);
        exai_tests::wait_for("the model call to be aborted", exai_tests::PATIENCE, || {
            (llm.abandoned() > round as u64 && calls_in_flight() == 0).then_some(())
        });
    }
}
