//! The agent's `/metrics`: every family an operator's dashboards expect, text that
//! `promtool` accepts, counts that are exact under sampling (checked through a real
//! Prometheus server), and series of departed daemons that go away.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{self, result_text, RawWs};
use exai_tests::metrics::http_get;
use exai_tests::{free_port, wait_for, Agent, Daemon, Proc, PATIENCE};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// The seed's families, and those docs/ARCHITECTURE.md adds.
const FAMILIES: &[&str] = &[
    "mcp_requests_total",
    "mcp_request_duration_seconds",
    "mcp_active_connections",
    "mcp_api_calls_total",
    "mcp_api_latency_seconds",
    "mcp_api_time_to_first_token_seconds",
    "mcp_api_time_to_first_answer_token_seconds",
    "mcp_tokens_total",
    "mcp_storage_operations_total",
    "mcp_storage_latency_seconds",
    "mcp_cache_hit_ratio",
    "mcp_memory_usage_bytes",
    "mcp_cpu_usage_percent",
    "mcp_disk_usage_percent",
    "mcp_errors_total",
    "mcp_storage_up",
    "exai_pipe_events_received_total",
    "exai_pipe_events_lost_total",
    "exai_pipe_daemon_dropped_events_total",
    "exai_pipe_frames_rejected_total",
    "exai_pipe_daemon_connected",
    "exai_pipe_unknown_total",
    "exai_daemon_info",
    "exai_build_info",
];

fn chat(ws: &mut RawWs, args: Value) -> Value {
    ws.call_tool("chat", args)["result"].clone()
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by tests/run.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn real_traffic_fills_every_family_and_promtool_accepts_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let llm = FakeLlmProc::start(&[]);
    let agent = Agent::start(&socket);
    let daemon = Daemon::with_llm(
        &socket,
        llm.port,
        &[
            ("EXAI_PROVIDER_MAX_ATTEMPTS", "2".into()),
            // Every provider call and storage op is an event; requests stay 1 in 10.
            ("EXAI_SAMPLE_STORAGE_READS", "1".into()),
        ],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    for _ in 0..5 {
        assert!(result_text(&ws.call_tool("version", json!({}))).starts_with("exai "));
    }
    let first = chat(&mut ws, json!({"prompt": "hello", "model": "kimi-k2"}));
    let id = first["_meta"]["continuation_id"].as_str().unwrap();
    let again = chat(
        &mut ws,
        json!({"prompt": "and again", "continuation_id": id}),
    );
    assert_ne!(again["isError"], json!(true));
    let failed = chat(&mut ws, json!({"prompt": "boom [fault:500]"}));
    assert_eq!(failed["isError"], json!(true));
    let unknown = ws.call_tool("no_such_tool", json!({}));
    assert_eq!(unknown["error"]["code"], json!(-32602));

    // Nine tool calls: exact, though requests are sampled 1 in 10.
    let calls = [("method", "call_tool")];
    agent.wait_metric("mcp_requests_total", &calls, |v| v == 9.0);
    let scrape = agent.scrape();
    assert_eq!(
        scrape.sum(
            "mcp_requests_total",
            &[("method", "call_tool"), ("transport", "websocket")]
        ),
        9.0
    );
    // The seed's spelling, so existing dashboards keep working.
    assert_eq!(
        scrape.sum(
            "mcp_requests_total",
            &[("method", "call_tool"), ("endpoint", "version")]
        ),
        5.0
    );
    assert_eq!(
        scrape.sum(
            "mcp_requests_total",
            &[("endpoint", "chat"), ("status", "tool_error")]
        ),
        1.0
    );
    assert_eq!(
        scrape.sum(
            "mcp_api_calls_total",
            &[("provider", "glm"), ("status", "server_error")]
        ),
        1.0
    );
    assert_eq!(scrape.sum("mcp_errors_total", &[("component", "glm")]), 1.0);
    assert!(
        scrape.sum(
            "mcp_api_calls_total",
            &[("provider", "kimi"), ("model", "kimi-k2.6")]
        ) == 1.0,
        "aliases (here a retired id) count under the model's real name"
    );
    assert!(scrape.sum("mcp_tokens_total", &[("type", "output")]) > 0.0);
    assert_eq!(
        scrape.sum("mcp_cache_hit_ratio", &[]),
        1.0,
        "the one read found its thread"
    );
    assert!(
        scrape.sum(
            "mcp_memory_usage_bytes",
            &[("component", "daemon"), ("daemon", &daemon.name)]
        ) > 1e6
    );
    agent.wait_metric("mcp_memory_usage_bytes", &[("component", "agent")], |v| {
        v > 1e6
    });

    let text = agent.scrape().text;
    for family in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "family {family} missing from /metrics"
        );
    }
    let (clean, said) = promtool_check(&text);
    assert!(clean && said.trim().is_empty(), "promtool: {said}");

    // The scrape configuration shipped for operators is valid too.
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/prometheus.yml");
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&shipped)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

fn prometheus_query(port: u16, query: &str) -> Option<Value> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http_get(port, &format!("/api/v1/query?query={encoded}"))?;
    let body: Value = serde_json::from_str(&body).ok()?;
    (status == 200).then_some(body)
}

/// The single value of an instant-vector query, if there is exactly one.
fn scalar(port: u16, query: &str) -> Option<f64> {
    let body = prometheus_query(port, query)?;
    let result = body["data"]["result"].as_array()?;
    match &result[..] {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

#[test]
fn a_real_prometheus_scrapes_the_exact_request_count() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    // The default policy: one MCP request event in ten.
    let daemon = Daemon::start(&socket);

    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: exai-agent\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            agent.metrics_port
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let prometheus = Proc::spawn_command("prometheus", cmd);
    prometheus.wait_for_log("Server is ready to receive web requests");

    const CALLS: usize = 137;
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    for _ in 0..CALLS {
        assert!(result_text(&ws.call_tool("version", json!({}))).starts_with("exai "));
    }

    let query = "sum(mcp_requests_total{job=\"exai-agent\",method=\"call_tool\"})";
    wait_for("Prometheus to see the target up", PATIENCE, || {
        (scalar(port, "up{job=\"exai-agent\"}")? == 1.0).then_some(())
    });
    let seen = wait_for("Prometheus to scrape the final count", PATIENCE, || {
        scalar(port, query).filter(|v| *v >= CALLS as f64)
    });
    assert_eq!(
        seen, CALLS as f64,
        "exact, not an estimate from 1-in-10 sampling"
    );
    // The daemon is its own label; Prometheus's `instance` is the agent's address, and
    // nothing of ours was renamed to `exported_instance`.
    let mine = format!(
        "sum(mcp_requests_total{{daemon=\"{}\",method=\"call_tool\"}})",
        daemon.name
    );
    assert_eq!(scalar(port, &mine), Some(CALLS as f64));
    let renamed = prometheus_query(port, "count({exported_instance!=\"\"})").unwrap();
    assert_eq!(renamed["data"]["result"], json!([]), "{renamed}");
    let target = format!("127.0.0.1:{}", agent.metrics_port);
    let instance = prometheus_query(port, "mcp_requests_total").unwrap();
    for series in instance["data"]["result"].as_array().unwrap() {
        assert_eq!(series["metric"]["instance"], target.as_str(), "{series}");
    }
}

#[test]
fn the_series_of_a_departed_daemon_expire() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start_with(&socket, &[("EXAI_METRICS_DAEMON_TTL_S", "1".into())]);
    let mut daemon = Daemon::start(&socket);
    let name = daemon.name.clone();
    let mine = [("daemon", name.as_str())];
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    ws.call_tool("version", json!({}));
    agent.wait_metric("mcp_requests_total", &[("method", "call_tool")], |v| {
        v == 1.0
    });
    agent.wait_metric("mcp_memory_usage_bytes", &mine, |v| v > 0.0);
    daemon.proc.kill_hard();
    agent.wait_metric("exai_pipe_daemon_connected", &mine, |v| v == 0.0);
    wait_for("the departed daemon's series to go", PATIENCE, || {
        let text = agent.scrape().text;
        (!text.contains(&format!("daemon=\"{name}\""))).then_some(())
    });
    // All of them: its counts are kept by Prometheus, not by the agent forever.
    assert_eq!(
        agent
            .scrape()
            .sum("mcp_requests_total", &[("method", "call_tool")]),
        0.0
    );
}

#[test]
fn a_model_the_agent_never_heard_of_is_labelled_by_name_and_past_the_cap_other() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    // Room for the built-in table and one more model.
    let cap = exai_daemon::providers::MODELS.len() + 1;
    let agent = Agent::start_with(&socket, &[("EXAI_METRICS_MAX_MODELS", cap.to_string())]);
    let file = dir.path().join("models.json");
    std::fs::write(
        &file,
        r#"{"models": [{"name": "glm-new-a", "provider": "glm"}, {"name": "glm-new-b", "provider": "glm"}]}"#,
    )
    .unwrap();
    let llm = FakeLlmProc::start(&["--extra-models", "glm:glm-new-a,glm:glm-new-b"]);
    let daemon = Daemon::with_llm(
        &socket,
        llm.port,
        &[("EXAI_MODELS_FILE", file.display().to_string())],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    for model in ["glm-new-a", "glm-new-b"] {
        let answer = chat(&mut ws, json!({"prompt": "hi", "model": model}));
        assert_eq!(answer["isError"], false, "{answer}");
    }
    agent.wait_metric("mcp_api_calls_total", &[("provider", "glm")], |v| v == 2.0);
    let scrape = agent.scrape();
    assert_eq!(
        scrape.sum("mcp_api_calls_total", &[("model", "glm-new-a")]),
        1.0,
        "a model only the daemon's catalogue knows keeps its name"
    );
    assert_eq!(
        scrape.sum("mcp_api_calls_total", &[("model", "glm-new-b")]),
        0.0
    );
    assert_eq!(
        scrape.sum(
            "mcp_api_calls_total",
            &[("provider", "glm"), ("model", "other")]
        ),
        1.0,
        "past the cap, other"
    );
}

/// A client connected over Streamable HTTP holds a session, not a socket: the heartbeat
/// counts sessions of both transports, so `mcp_active_connections` sees it.
#[test]
fn http_sessions_count_as_active_connections() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let daemon = Daemon::start(&socket);
    let mine = [("daemon", daemon.name.as_str())];
    agent.wait_metric("exai_pipe_daemon_connected", &mine, |v| v == 1.0);
    let sessions: Vec<_> = (0..3)
        .map(|_| exai_tests::http_mcp::HttpSession::open(daemon.mcp_port).expect("a session"))
        .collect();
    agent.wait_metric("mcp_active_connections", &mine, |v| v == 3.0);
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    agent.wait_metric("mcp_active_connections", &mine, |v| v == 4.0);
    drop(sessions);
}
