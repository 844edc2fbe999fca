//! `compose/run-local.sh`, the quick start: Ctrl-C stops the daemon first, while the agent
//! is still there to receive its last heartbeat, then the agent. (Before, the terminal's
//! Ctrl-C reached both at once and the daemon's last heartbeat met a closed socket.)

use exai_tests::http_mcp;
use exai_tests::metrics::Scrape;
use exai_tests::process::bin_path;
use exai_tests::{free_port, wait_for, PATIENCE};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

#[test]
fn ctrl_c_stops_the_daemon_then_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = bin_path("exai-daemon").parent().unwrap().to_path_buf();
    let (mcp, metrics) = (free_port(), free_port());
    let mut script = Command::new("bash");
    script
        .arg(repo.join("compose/run-local.sh"))
        .env("EXAI_BIN_DIR", &bin_dir)
        .env("EXAI_EVENTS_SOCKET", dir.path().join("events.sock"))
        .env("EXAI_WS_PORT", mcp.to_string())
        .env("METRICS_PORT", metrics.to_string())
        .env("HEALTH_CHECK_PORT", free_port().to_string())
        .env("MONITORING_PORT", free_port().to_string())
        .env("FAKE_LLM_PORT", free_port().to_string())
        .env("EXAI_LOG", "info")
        .env_remove("KIMI_API_KEY")
        .env_remove("GLM_API_KEY")
        // Its own process group, as a shell in a terminal gives it: Ctrl-C signals the
        // whole foreground group.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = script.spawn().expect("run-local.sh starts");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });

    wait_for("the daemon connected to the agent", PATIENCE, || {
        (Scrape::get(metrics).sum("exai_pipe_daemon_connected", &[]) == 1.0).then_some(())
    });
    let answer = http_mcp::stateless(
        mcp,
        1,
        "tools/call",
        json!({"name": "chat", "arguments": {"prompt": "hello"}}),
    )
    .expect("a chat through the quick start");
    let message = answer.message().expect("a JSON-RPC answer");
    assert_eq!(message["result"]["isError"], false, "{message}");

    // Ctrl-C: SIGINT to the foreground process group.
    // The script leads its own group (`process_group(0)`): the group's id is its pid.
    let group = child.id() as libc::pid_t;
    // SAFETY: signalling the process group of our own child.
    unsafe { libc::kill(-group, libc::SIGINT) };
    let status = wait_for("run-local.sh to exit", PATIENCE, || {
        child.try_wait().ok().flatten()
    });
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    let text = log.join("\n");
    assert!(
        status.code().is_some(),
        "ended by its own exit: {status:?}\n{text}"
    );
    let at = |needle: &str| {
        log.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the output:\n{text}"))
    };
    // The daemon stopped while the agent still listened, and its last heartbeat went out.
    let agent_stops = log
        .iter()
        .position(|l| l.contains("exai_agent") && l.contains("shutting down"))
        .unwrap_or_else(|| panic!("the agent never logged its shutdown:\n{text}"));
    assert!(at("exai-daemon stopped") < agent_stops, "{text}");
    assert!(
        !text.contains("writing to the agent failed") && !text.contains("Broken pipe"),
        "the daemon's last heartbeat failed:\n{text}"
    );
}
