//! `/healthz` and `/readyz` on the daemon's MCP port, as a load balancer or a Kubernetes
//! probe asks them: no token, any `Host`, no dependency consulted, nothing said beyond the
//! verdict; and the drain a SIGTERM starts: `/readyz` 503 while every request is still
//! served, then the staged stop, whose last heartbeat counts everything.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::http_mcp::{self, exchange};
use exai_tests::mcp;
use exai_tests::metrics::http_get_as;
use exai_tests::redis::RedisServer;
use exai_tests::{free_port, wait_for, Agent, Daemon, PATIENCE};
use serde_json::json;

/// A probe as a balancer sends it: its own `Host`, no token. `(status, head, body)`.
fn probe(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: balancer.internal:9000\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange(port, request.as_bytes()).expect("an answer to the probe");
    (answer.status, answer.head, answer.body)
}

/// The header names of a response head, lower-cased and sorted.
fn header_names(head: &str) -> Vec<String> {
    let mut names: Vec<String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_ascii_lowercase())
        .collect();
    names.sort();
    names
}

#[test]
fn probes_answer_any_host_without_the_token_whatever_the_dependencies_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    // Providers that refuse every connection, and a Redis about to die.
    let nobody = free_port();
    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[
            ("EXAI_WS_TOKEN", "s3cret-token-for-the-test".to_string()),
            ("REDIS_URL", redis.url()),
            ("KIMI_API_KEY", "k".to_string()),
            ("KIMI_API_URL", format!("http://127.0.0.1:{nobody}/v1")),
            ("GLM_API_KEY", "g".to_string()),
            (
                "GLM_API_URL",
                format!("http://127.0.0.1:{nobody}/api/paas/v4"),
            ),
        ],
    );
    redis.kill();
    let port = daemon.mcp_port;

    // A chat really fails (the token opens the door, the provider refuses)...
    let mut ws = mcp::connect(
        &daemon.ws_url(),
        &[("Authorization", "Bearer s3cret-token-for-the-test")],
    )
    .unwrap();
    ws.initialize("2025-11-25");
    let answer = ws.call_tool("chat", json!({"prompt": "hello"}));
    assert_eq!(answer["result"]["isError"], true, "{answer}");

    // ...and both probes still say 200: restarting the daemon would not help.
    let (status, head, body) = probe(port, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{head}");
    let (status, head, body) = probe(port, "GET", "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"), "{head}");
    // Nothing beyond the verdict: no version, no dependency, no cookie.
    assert_eq!(
        header_names(&head),
        [
            "cache-control",
            "connection",
            "content-length",
            "content-type",
            "date"
        ],
        "{head}"
    );
    assert!(head.contains("cache-control: no-store"), "{head}");
    let (status, _, body) = probe(port, "HEAD", "/readyz");
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, head, _) = probe(port, "POST", "/readyz");
    assert_eq!(status, 405, "{head}");

    // The exemption is the probes', not the port's: MCP still wants the token and a
    // Host it knows.
    let (status, _) = http_get_as(port, "/mcp", "balancer.internal:9000").unwrap();
    assert!(status == 401 || status == 403, "MCP answered {status}");
}

#[test]
fn sigterm_drains_with_readyz_503_while_serving_then_stops_counting_everything() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let llm = FakeLlmProc::start(&[]);
    // A drain longer than the test: a second signal ends it, as Ctrl-C twice does.
    let mut daemon = Daemon::with_llm(&socket, llm.port, &[("EXAI_DRAIN_S", "600".into())]);
    agent.wait_metric("exai_pipe_daemon_connected", &[], |v| v == 1.0);
    let port = daemon.mcp_port;
    assert_eq!(probe(port, "GET", "/readyz").0, 200);

    // A WebSocket session open before the signal.
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let mut requests = 1; // initialize

    daemon.proc.send_term();
    wait_for("/readyz to answer 503", PATIENCE, || {
        let (status, _, body) = probe(port, "GET", "/readyz");
        (status == 503).then_some(body)
    });
    daemon.proc.wait_for_log("draining: /readyz answers 503");

    // Still serving everything: a new stateless chat on a new connection, the open
    // session's next call, and liveness.
    for id in 0..3 {
        let answer = http_mcp::stateless(
            port,
            id,
            "tools/call",
            json!({"name": "chat", "arguments": {"prompt": format!("during the drain {id}")}}),
        )
        .expect("an answer during the drain");
        let message = answer.message().expect("a JSON-RPC answer");
        assert_eq!(message["result"]["isError"], false, "{message}");
        requests += 1;
    }
    let answer = ws.call_tool("chat", json!({"prompt": "still here"}));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    requests += 1;
    assert_eq!(probe(port, "GET", "/healthz").0, 200);
    assert_eq!(probe(port, "GET", "/readyz").0, 503);
    assert!(daemon.proc.is_running());
    assert_eq!(daemon.proc.count_log("no longer accepting"), 0);

    // The second signal ends the drain; the staged stop follows.
    daemon.proc.send_term();
    let status = daemon.proc.wait_exit();
    assert!(status.success(), "a clean exit: {status:?}");
    let log = daemon.proc.log();
    let at = |needle: &str| {
        log.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{}", log.join("\n")))
    };
    assert!(at("draining: /readyz") < at("a second signal: ending the drain now"));
    assert!(at("a second signal") < at("no longer accepting connections"));

    // The last heartbeat counted every request answered, the drain's included.
    agent.wait_metric("mcp_requests_total", &[], |v| v == requests as f64);
}

#[test]
fn the_drain_ends_by_itself_after_exai_drain_s() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[("EXAI_DRAIN_S", "1".into())],
    );
    let port = daemon.mcp_port;
    daemon.proc.send_term();
    wait_for("/readyz to answer 503", PATIENCE, || {
        (probe(port, "GET", "/readyz").0 == 503).then_some(())
    });
    let status = daemon.proc.wait_exit();
    assert!(status.success(), "a clean exit: {status:?}");
    assert_eq!(daemon.proc.count_log("a second signal"), 0);
    daemon.proc.wait_for_log("no longer accepting connections");
}
