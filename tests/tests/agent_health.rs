//! The agent's health checks on :8081: the report's shape, each component's failure
//! flipping status and code within a check interval and recovery flipping it back, and
//! requests that never wait on a dependency.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::fake_postgrest::{FakePostgrest, Fault};
use exai_tests::mcp;
use exai_tests::redis::{RedisServer, SilentListener};
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::{json, Value};
use std::path::Path;

/// Checks every 200 ms, so a flip is seen quickly.
const FAST: (&str, &str) = ("EXAI_HEALTH_INTERVAL_MS", "200");

fn report(agent: &Agent) -> (u16, Value) {
    let (code, body) = agent.health("/health");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (code, json)
}

/// Waits until `/health` answers `code` with `component` in `status`.
fn wait_status(agent: &Agent, component: &str, status: &str, code: u16) -> Value {
    wait_for(
        &format!("/health {code} with {component} {status}"),
        PATIENCE,
        || {
            let (got, body) = report(agent);
            (got == code && body["components"][component]["status"] == status).then_some(body)
        },
    )
}

fn start(socket: &Path, env: &[(&str, String)]) -> (Agent, Daemon) {
    let mut all = vec![(FAST.0, FAST.1.to_string())];
    all.extend(env.iter().cloned());
    let agent = Agent::start_with(socket, &all);
    let daemon = Daemon::start(socket);
    (agent, daemon)
}

#[test]
fn the_report_has_the_documented_shape_and_no_secret() {
    const KEY: &str = "service-role-key-never-shown-1234";
    const PASSWORD: &str = "redis-password-never-shown";
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let redis = RedisServer::start();
    let postgrest = FakePostgrest::start_with_key(KEY);
    let redis_url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port());
    let (agent, _daemon) = start(
        &socket,
        &[
            ("REDIS_URL", redis_url),
            ("SUPABASE_URL", postgrest.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", KEY.into()),
            ("EXAI_TIMEZONE", "Australia/Melbourne".into()),
            ("EXAI_LOG", "debug".into()),
        ],
    );
    // The Redis double has no password: AUTH fails, and that must not leak it either.
    let body = wait_status(&agent, "daemon", "healthy", 503);
    for key in [
        "status",
        "timestamp_utc",
        "timestamp_local",
        "timezone",
        "version",
    ] {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
    assert_eq!(body["timezone"], "Australia/Melbourne");
    let local = body["timestamp_local"].as_str().unwrap();
    assert!(
        local.ends_with("+11:00") || local.ends_with("+10:00"),
        "Melbourne's offset: {local}"
    );
    assert!(body["timestamp_utc"].as_str().unwrap().ends_with('Z'));
    let c = &body["components"];
    assert_eq!(c["storage"]["type"], "redis");
    for (component, fields) in [
        ("storage", &["status", "type", "latency_ms", "message"][..]),
        ("supabase", &["status", "enabled", "latency_ms", "message"]),
        (
            "memory",
            &["status", "process_memory_mb", "system_memory_percent"],
        ),
        ("disk", &["status", "disk_percent", "path"]),
        ("daemon", &["status", "connected", "last_event_age_s"]),
    ] {
        for field in fields {
            assert!(
                c[component].get(field).is_some(),
                "{component}.{field} missing: {body}"
            );
        }
    }
    assert_eq!(c["supabase"]["status"], "healthy");
    assert_eq!(c["supabase"]["enabled"], true);
    assert_eq!(c["daemon"]["connected"], true);
    assert!(c["memory"]["daemon_memory_mb"].as_f64().unwrap() > 1.0);

    for path in ["/health", "/healthz", "/health/ready", "/health/live"] {
        let (_, text) = agent.health(path);
        assert!(
            !text.contains(KEY) && !text.contains(PASSWORD),
            "{path}: {text}"
        );
    }
    let log = agent.proc.log().join("\n");
    assert!(!log.contains(KEY) && !log.contains(PASSWORD), "{log}");
    assert_eq!(agent.health("/health/live").0, 200);
    assert_eq!(agent.health("/nope").0, 404);
}

#[test]
fn redis_down_degrades_and_its_return_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let (agent, _daemon) = start(
        &dir.path().join("events.sock"),
        &[("REDIS_URL", redis.url())],
    );
    let body = wait_status(&agent, "storage", "healthy", 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(agent.health("/health/ready").0, 200);

    redis.kill();
    let body = wait_status(&agent, "storage", "unhealthy", 503);
    assert_eq!(
        body["status"], "degraded",
        "the daemon still answers, without history"
    );
    let (code, ready) = agent.health("/health/ready");
    assert_eq!(code, 503, "{ready}");
    assert!(ready.contains("storage"), "{ready}");
    assert_eq!(agent.health("/healthz").0, 503);

    redis.restart();
    let body = wait_status(&agent, "storage", "healthy", 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(agent.health("/health/ready").0, 200);
}

#[test]
fn supabase_failing_degrades_and_a_rejected_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let postgrest = FakePostgrest::start_with_key("the-right-key-000000");
    let (agent, _daemon) = start(
        &dir.path().join("events.sock"),
        &[
            ("SUPABASE_URL", postgrest.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", "the-right-key-000000".into()),
        ],
    );
    wait_status(&agent, "supabase", "healthy", 200);

    postgrest.set_fault(Some(Fault::Unavailable));
    let body = wait_status(&agent, "supabase", "unhealthy", 503);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"]["supabase"]["http_status"], 503);

    postgrest.set_fault(Some(Fault::Unauthorized));
    let body = wait_for("the rejected key to be named", PATIENCE, || {
        let (_, body) = report(&agent);
        let message = body["components"]["supabase"]["message"]
            .as_str()?
            .to_string();
        message.contains("rejected").then_some(body)
    });
    assert_eq!(body["components"]["supabase"]["http_status"], 401);

    postgrest.set_fault(None);
    wait_status(&agent, "supabase", "healthy", 200);
}

#[test]
fn a_daemon_killed_is_unhealthy_until_one_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let (agent, mut daemon) = start(&socket, &[]);
    wait_status(&agent, "daemon", "healthy", 200);

    daemon.proc.kill_hard();
    let body = wait_status(&agent, "daemon", "unhealthy", 503);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["components"]["daemon"]["connected"], false);
    assert_eq!(agent.health("/health/ready").0, 503);
    assert_eq!(
        agent.health("/health/live").0,
        200,
        "the agent itself is alive"
    );

    let _back = Daemon::start(&socket);
    wait_status(&agent, "daemon", "healthy", 200);
    assert_eq!(agent.health("/health/ready").0, 200);
}

/// A small filesystem whose use the test controls. Needs root (CI runs as root).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(kib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount(8)");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (the disk test needs root)",
            dir.path().display()
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn disk_use_past_the_threshold_flips_and_freeing_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(4096);
    let (agent, _daemon) = start(
        &dir.path().join("events.sock"),
        &[
            ("EXAI_HEALTH_DISK_PATH", disk.0.path().display().to_string()),
            ("EXAI_HEALTH_DISK_DEGRADED_PERCENT", "50".into()),
            ("EXAI_HEALTH_DISK_UNHEALTHY_PERCENT", "90".into()),
        ],
    );
    wait_status(&agent, "disk", "healthy", 200);

    let filler = disk.0.path().join("filler");
    std::fs::write(&filler, vec![7u8; 3 * 1024 * 1024]).unwrap();
    let body = wait_status(&agent, "disk", "degraded", 503);
    assert_eq!(body["status"], "degraded");
    let percent = body["components"]["disk"]["disk_percent"].as_f64().unwrap();
    assert!((50.0..90.0).contains(&percent), "{percent}");
    assert_eq!(
        agent.health("/health/ready").0,
        200,
        "disk pressure shows in /health, it does not stop the service"
    );

    std::fs::remove_file(&filler).unwrap();
    wait_status(&agent, "disk", "healthy", 200);
    let used = agent.scrape().sum(
        "mcp_disk_usage_percent",
        &[("path", &disk.0.path().display().to_string())],
    );
    assert!(used < 50.0, "{used}");
}

#[test]
fn a_stalled_dependency_does_not_slow_health_requests() {
    // Accepts connections and never answers a byte.
    let stall = SilentListener::start();
    let port = stall.port();
    let dir = tempfile::tempdir().unwrap();
    // Each check may take 30 s: a request that waited on one could not answer within
    // the client's 10 s read timeout.
    let (agent, _daemon) = start(
        &dir.path().join("events.sock"),
        &[
            ("REDIS_URL", format!("redis://127.0.0.1:{port}")),
            ("SUPABASE_URL", format!("http://127.0.0.1:{port}")),
            ("SUPABASE_SERVICE_ROLE_KEY", "stalled-key-0000000000".into()),
            ("EXAI_HEALTH_TIMEOUT_MS", "30000".into()),
        ],
    );
    stall.wait_accepted(2);
    for _ in 0..50 {
        let (code, body) = agent.health("/health");
        assert_eq!(code, 503, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["components"]["storage"]["status"], "unhealthy");
        assert_eq!(agent.health("/health/live").0, 200);
    }
}

#[test]
fn a_busy_daemon_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let llm = FakeLlmProc::start(&["--latency-ms", "3000"]);
    let agent = Agent::start_with(&socket, &[(FAST.0, FAST.1.into())]);
    let daemon = Daemon::with_llm(
        &socket,
        llm.port,
        &[
            ("EXAI_WS_GLOBAL_MAX_INFLIGHT", "2".into()),
            ("EXAI_INFLIGHT_WAIT_MS", "10000".into()),
        ],
    );
    // Six slow chats against two places: every place taken, four waiting.
    let callers: Vec<_> = (0..6)
        .map(|i| {
            let url = daemon.ws_url();
            std::thread::spawn(move || {
                let mut ws = mcp::connect(&url, &[]).unwrap();
                ws.initialize("2025-11-25");
                ws.call_tool("chat", json!({"prompt": format!("slow {i}")}))
            })
        })
        .collect();
    agent.wait_metric("mcp_inflight_calls", &[], |v| v == 2.0);
    let (code, body) = report(&agent);
    assert_eq!((code, &body["status"]), (200, &json!("healthy")), "{body}");
    assert_eq!(agent.health("/health/ready").0, 200);
    for caller in callers {
        let answer = caller.join().unwrap();
        assert_ne!(answer["result"]["isError"], json!(true), "{answer}");
    }
}
