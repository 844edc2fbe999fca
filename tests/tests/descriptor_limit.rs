//! Out of file descriptors, `accept` fails (EMFILE) and the connection stays in the
//! kernel's backlog: the daemon and the agent back off instead of retrying at once,
//! logging at most a line a second — their CPU time over 3 s stays small — and serve
//! again once descriptors are free. Default caps are fitted to `RLIMIT_NOFILE` at start.

use exai_tests::mcp::{self, result_text};
use exai_tests::procfs::cpu_seconds;
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::json;
use std::net::TcpStream;
use std::time::Duration;

/// The open-file limit the processes run under.
const NOFILE: u64 = 128;
/// Connections held open against them: more than the limit.
const HELD: usize = 200;
/// How long CPU time is measured while descriptors are exhausted.
const WINDOW: Duration = Duration::from_secs(3);
/// CPU a process may use in that window while it waits: spinning uses the whole window.
const CPU_BOUND: f64 = 0.6;

fn hold_connections(port: u16) -> Vec<TcpStream> {
    (0..HELD)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect()
}

/// CPU seconds `pid` uses over [`WINDOW`] of wall time.
fn cpu_over_window(pid: u32) -> f64 {
    let before = cpu_seconds(pid);
    // The measurement window itself, not a wait for something to happen.
    std::thread::sleep(WINDOW);
    let used = cpu_seconds(pid) - before;
    eprintln!("pid {pid}: {used:.2} CPU seconds in {WINDOW:?}");
    used
}

#[test]
fn the_daemon_out_of_descriptors_backs_off_logs_once_a_second_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_nofile(
        &dir.path().join("events.sock"),
        &[
            // Set above what the limit allows: kept (with a warning), so accept fails.
            ("EXAI_WS_MAX_CONNECTIONS", "2048".to_string()),
            ("EXAI_HTTP_HEADER_TIMEOUT_MS", "60000".to_string()),
        ],
        Some(NOFILE),
    );
    let held = hold_connections(daemon.mcp_port);
    let failing = "accepting connections failed: out of file descriptors";
    let before = daemon.proc.count_log(failing);
    let cpu = cpu_over_window(daemon.proc.pid());
    assert!(
        cpu < CPU_BOUND,
        "{cpu:.2} CPU seconds in {WINDOW:?} while out of descriptors"
    );
    // At most a line a second, each saying how many failed since the last.
    let lines = daemon.proc.count_log(failing) - before;
    assert!(lines <= 4, "{lines} log lines in {WINDOW:?}");
    assert!(daemon.proc.count_log(failing) > 0);
    daemon
        .proc
        .wait_for_log("need more descriptors than RLIMIT_NOFILE allows");

    drop(held);
    let mut ws = wait_for("a connection once descriptors are free", PATIENCE, || {
        mcp::connect(&daemon.ws_url(), &[]).ok()
    });
    ws.initialize("2025-11-25");
    assert!(result_text(&ws.call_tool("version", json!({}))).starts_with("exai "));
}

#[test]
fn default_caps_are_lowered_to_fit_the_limit_and_clients_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_nofile(
        &dir.path().join("events.sock"),
        &[("EXAI_HTTP_HEADER_TIMEOUT_MS", "60000".to_string())],
        Some(NOFILE),
    );
    let line = daemon
        .proc
        .wait_for_log("lowered EXAI_WS_MAX_CONNECTIONS and EXAI_WS_MAX_PENDING_CONNECTIONS to fit");
    assert!(line.contains("limit=128"), "{line}");
    // More idle connections than descriptors: the oldest are closed to make room, so
    // accept keeps working and a real client gets in.
    let _held = hold_connections(daemon.mcp_port);
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).expect("a real client is served");
    ws.initialize("2025-11-25");
    let status = ws.call_tool("status", json!({}));
    let connections = &status["result"]["structuredContent"]["connections"];
    let (active, pending) = (
        connections["max_connections"].as_u64().unwrap(),
        connections["max_pending_connections"].as_u64().unwrap(),
    );
    assert!(active + pending < NOFILE, "{connections}");
    assert!(
        connections["pending_evicted"].as_u64().unwrap() > 0,
        "{connections}"
    );
    assert_eq!(daemon.proc.count_log("accepting connections failed"), 0);
    let cpu = cpu_over_window(daemon.proc.pid());
    assert!(cpu < CPU_BOUND, "{cpu:.2} CPU seconds in {WINDOW:?}");
}

#[test]
fn the_agent_out_of_descriptors_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_with_nofile(&dir.path().join("events.sock"), &[], Some(64));
    let held = hold_connections(agent.metrics_port);
    let failing = "accepting connections failed: out of file descriptors";
    let before = agent.proc.count_log(failing);
    let cpu = cpu_over_window(agent.proc.pid());
    assert!(
        cpu < CPU_BOUND,
        "{cpu:.2} CPU seconds in {WINDOW:?} while out of descriptors"
    );
    let lines = agent.proc.count_log(failing) - before;
    assert!(lines <= 4, "{lines} log lines in {WINDOW:?}");
    assert!(agent.proc.count_log(failing) > 0);
    drop(held);
    wait_for("metrics once descriptors are free", PATIENCE, || {
        exai_tests::metrics::http_get(agent.metrics_port, "/metrics")
    });
}
