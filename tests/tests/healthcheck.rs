//! `exai-daemon healthcheck` and `exai-agent healthcheck`, the container healthchecks of
//! compose/docker-compose.yml: exit 0 against a running process, 1 when nothing answers.

use exai_tests::process::bin_path;
use exai_tests::{Agent, Daemon};
use std::process::{Command, Output};

fn healthcheck(binary: &str, env: &[(&str, String)]) -> Output {
    Command::new(bin_path(binary))
        .arg("healthcheck")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary} healthcheck: {e}"))
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    exai_tests::free_port()
}

#[test]
fn the_daemon_healthcheck_asks_the_daemon_port() {
    let dir = tempfile::tempdir().unwrap();
    // No agent: the daemon serves without one, and so is healthy.
    let daemon = Daemon::start(&dir.path().join("events.sock"));
    let out = healthcheck(
        "exai-daemon",
        &[
            ("EXAI_WS_HOST", "0.0.0.0".into()),
            ("EXAI_WS_PORT", daemon.mcp_port.to_string()),
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("answers /healthz with 200"),
        "{}",
        said(&out)
    );
    let out = Command::new(bin_path("exai-daemon"))
        .args(["healthcheck", "--ready"])
        .env("EXAI_WS_PORT", daemon.mcp_port.to_string())
        .output()
        .unwrap();
    assert!(
        said(&out).contains("answers /readyz with 200"),
        "{}",
        said(&out)
    );

    let port = closed_port();
    let out = healthcheck("exai-daemon", &[("EXAI_WS_PORT", port.to_string())]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        said(&out)
    );
}

#[test]
fn the_agent_healthcheck_asks_health_live() {
    let dir = tempfile::tempdir().unwrap();
    // No daemon: /health is unhealthy, but the agent is live.
    let agent = Agent::start(&dir.path().join("events.sock"));
    let port = agent.health_port.unwrap();
    assert_eq!(agent.health("/health").0, 503);
    let out = healthcheck("exai-agent", &[("HEALTH_CHECK_PORT", port.to_string())]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("answers /health/live with 200"),
        "{}",
        said(&out)
    );

    let out = healthcheck(
        "exai-agent",
        &[("HEALTH_CHECK_PORT", closed_port().to_string())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    // Pointed at the metrics port, it gets an answer, but not a live one.
    let out = healthcheck(
        "exai-agent",
        &[("HEALTH_CHECK_PORT", agent.metrics_port.to_string())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("404"), "{}", said(&out));

    let out = healthcheck("exai-agent", &[("HEALTH_CHECK_ENABLED", "false".into())]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("HEALTH_CHECK_ENABLED"),
        "{}",
        said(&out)
    );
}
