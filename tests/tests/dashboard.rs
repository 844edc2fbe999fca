//! The dashboard in a real browser (Debian's Chromium, driven by Playwright from the test
//! venv), served by a real agent fed by a real daemon under load; and a dashboard client
//! that never reads, which must cost the agent frames, never ingestion.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp;
use exai_tests::process::{bin_path, python};
use exai_tests::{wait_for, Agent, Daemon, Proc, PATIENCE};
use serde_json::json;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Where screenshots are kept after the run.
fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn under_load_the_page_shows_live_figures_and_finds_a_chat_by_correlation_id() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let llm = FakeLlmProc::start(&[]);
    let agent = Agent::start(&socket);
    let daemon = Daemon::with_llm(&socket, llm.port, &[]);
    let _load = Proc::spawn(
        "exai-load",
        &[
            "--url",
            &daemon.ws_url(),
            "--sessions",
            "4",
            "--tool",
            "chat",
            "--duration",
            "60",
            "--warmup",
            "0",
        ],
        &[],
    );
    agent.wait_metric("mcp_api_calls_total", &[], |v| v > 100.0);

    let url = format!("http://127.0.0.1:{}/", agent.dashboard_port.unwrap());
    let shot = artifact("dashboard-live.png");
    let seen = python(
        "dashboard_check.py",
        &["live", &url, &daemon.ws_url(), shot.to_str().unwrap()],
    );
    let figures = &seen["figures"];
    for key in [
        "throughput",
        "websocket_events",
        "glm_events",
        "pipe_received",
    ] {
        assert!(figures[key].as_f64().unwrap() > 0.0, "{key}: {figures}");
    }
    assert_eq!(figures["health"], "healthy", "{figures}");
    assert!(
        figures["rows"].as_u64().unwrap() > 0,
        "live events: {figures}"
    );

    let chat = &seen["chat"];
    assert_eq!(
        chat["echoed"], chat["correlation_id"],
        "the daemon kept the id"
    );
    // Model calls are always events (requests only 1 in 10): the chat's call is there.
    let found = &seen["found"];
    let services = found["services"].as_array().unwrap();
    assert!(
        services.contains(&json!("glm")),
        "the chat's model call: {found}"
    );
    assert_eq!(
        found["visible_rows"], found["rows"],
        "the search shows only that chat's events: {found}"
    );
    assert_eq!(seen["screenshot"]["page_errors"], json!([]));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot was saved"
    );
}

#[test]
fn a_page_opened_before_the_agent_starts_connects_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let port = exai_tests::free_port();
    let static_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static");
    let shot = artifact("dashboard-before-agent.png");
    let seen = python(
        "dashboard_check.py",
        &[
            "before-agent",
            &port.to_string(),
            static_dir.to_str().unwrap(),
            bin_path("exai-agent").to_str().unwrap(),
            dir.path().join("events.sock").to_str().unwrap(),
            shot.to_str().unwrap(),
        ],
    );
    assert_ne!(
        seen["page_open_without_agent"]["first_state"], "connected",
        "{seen:?}"
    );
    assert!(seen.contains_key("connected_after_agent_start"), "{seen:?}");
    assert_eq!(seen["done"]["page_errors"], json!([]));
}

/// Opens `/ws` with a tiny receive buffer and never reads from it.
fn stuck_client(port: u16) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: a fresh socket, configured and connected before it is wrapped.
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of_val(&size) as libc::socklen_t,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&addr) as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect to the dashboard");
        std::net::TcpStream::from_raw_fd(fd)
    };
    let mut s = stream;
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "upgraded");
    s
}

#[test]
fn a_client_that_never_reads_loses_frames_and_ingestion_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    // A short queue and large event frames, so the socket buffers fill within seconds.
    let agent = Agent::start_with(
        &socket,
        &[
            ("MONITORING_CLIENT_QUEUE", "2".into()),
            ("MONITORING_EVENTS_PER_SECOND", "20000".into()),
        ],
    );
    // Every message and request an event, so the pipe is busy.
    let daemon = Daemon::start_with(
        &socket,
        &[
            ("EXAI_SAMPLE_WS_MESSAGES", "1".into()),
            ("EXAI_SAMPLE_REQUESTS", "1".into()),
        ],
    );
    let port = agent.dashboard_port.unwrap();
    let _stuck: Vec<_> = (0..3).map(|_| stuck_client(port)).collect();
    agent.wait_metric("exai_dashboard_clients", &[], |v| v == 3.0);

    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let mut calls = 0.0;
    // Generous: how soon the socket buffers fill depends on how busy the machine is.
    wait_for("frames dropped for the stuck clients", 3 * PATIENCE, || {
        for _ in 0..200 {
            ws.call_tool("version", json!({}));
            calls += 1.0;
        }
        (agent
            .scrape()
            .sum("exai_dashboard_frames_dropped_total", &[])
            > 0.0)
            .then_some(())
    });
    // Everything the daemon sent arrived and was counted, stuck clients or not.
    agent.wait_metric("mcp_requests_total", &[("method", "call_tool")], |v| {
        v == calls
    });
    let instance = [("daemon", daemon.name.as_str())];
    assert_eq!(
        agent.scrape().sum("exai_pipe_events_lost_total", &instance),
        0.0
    );
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name), ("kind", "mcp_request")],
        |v| v >= calls,
    );
    // A reading client is still served.
    let (status, body) = exai_tests::metrics::http_get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("dashboard.js"));
}
