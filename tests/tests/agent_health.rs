//! The agent's health checks on :8081: the report's shape, the daemon link flipping at
//! once, Redis and Supabase as the daemon sees them (the agent holds neither's secrets),
//! the agent's own checks flipping within a check interval and recovery flipping back, and
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

/// An agent checking every 200 ms with `agent_env`, and a daemon with `daemon_env`.
fn start(
    socket: &Path,
    agent_env: &[(&str, String)],
    daemon_env: &[(&str, String)],
) -> (Agent, Daemon) {
    let mut all = vec![(FAST.0, FAST.1.to_string())];
    all.extend(agent_env.iter().cloned());
    let agent = Agent::start_with(socket, &all);
    let daemon = Daemon::start_with(socket, daemon_env);
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
    let spool = tempfile::tempdir().unwrap();
    // The secrets go to the daemon only: the agent reports what the daemon sees.
    let (agent, _daemon) = start(
        &socket,
        &[
            ("EXAI_TIMEZONE", "Australia/Melbourne".into()),
            ("EXAI_LOG", "debug".into()),
        ],
        &[
            ("REDIS_URL", redis_url),
            ("SUPABASE_URL", postgrest.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", KEY.into()),
            ("EXAI_SPOOL_DIR", spool.path().display().to_string()),
        ],
    );
    // The Redis double has no password: AUTH fails, and that must not leak it either.
    let body = wait_for("the daemon's view of Redis", PATIENCE, || {
        let (code, body) = report(&agent);
        (code == 503 && body["components"]["storage"]["status"] == "unhealthy").then_some(body)
    });
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
    assert_eq!(c["storage"]["view"], "daemon");
    for (component, fields) in [
        (
            "storage",
            &[
                "status",
                "view",
                "type",
                "latency_ms",
                "last_error",
                "message",
            ][..],
        ),
        (
            "supabase",
            &[
                "status",
                "view",
                "enabled",
                "last_upload",
                "spool_depth",
                "spool_bytes",
                "refused_turns",
                "message",
            ],
        ),
        (
            "memory",
            &["status", "process_memory_mb", "system_memory_percent"],
        ),
        ("disk", &["status", "disk_percent", "path"]),
        (
            "daemon",
            &[
                "status",
                "connected",
                "instances",
                "last_event_age_s",
                "daemons",
            ],
        ),
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
    assert_eq!(c["daemon"]["daemons"][0]["connected"], true);
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

/// The agent has no Redis URL: it reports Redis as the daemon finds it.
#[test]
fn redis_down_as_the_daemon_sees_it_degrades_and_its_return_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let (agent, _daemon) = start(
        &dir.path().join("events.sock"),
        &[],
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
    assert_eq!(body["components"]["storage"]["view"], "daemon");
    assert!(
        body["components"]["storage"]["last_error"].is_string(),
        "{body}"
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

/// The agent has no Supabase key: it reports the daemon's uploads, and the spool as it
/// grows while they fail.
#[test]
fn supabase_failing_as_the_daemon_sees_it_shows_the_spool_growing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let postgrest = FakePostgrest::start_with_key("the-right-key-000000");
    let llm = FakeLlmProc::start(&[]);
    let agent = Agent::start_with(&socket, &[(FAST.0, FAST.1.into())]);
    let daemon = Daemon::with_llm(
        &socket,
        llm.port,
        &[
            ("SUPABASE_URL", postgrest.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", "the-right-key-000000".into()),
            (
                "EXAI_SPOOL_DIR",
                dir.path().join("spool").display().to_string(),
            ),
            ("EXAI_SUPABASE_TIMEOUT_SECS", "2".into()),
            ("EXAI_SUPABASE_AUTH_RETRY_SECS", "1".into()),
        ],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let mut chat = |n: usize| {
        let answer = ws.call_tool("chat", json!({"prompt": format!("turn {n}")}));
        assert_ne!(answer["result"]["isError"], json!(true), "{answer}");
    };
    chat(0);
    let body = wait_for("the first upload", PATIENCE, || {
        let (code, body) = report(&agent);
        let s = &body["components"]["supabase"];
        (code == 200 && s["last_upload"] == "ok" && s["spool_depth"] == 0).then_some(body)
    });
    assert_eq!(body["components"]["supabase"]["view"], "daemon");

    postgrest.set_fault(Some(Fault::Unavailable));
    for n in 1..=3 {
        chat(n);
    }
    let body = wait_for(
        "failing uploads, the turns kept in the spool",
        PATIENCE,
        || {
            let (code, body) = report(&agent);
            let s = &body["components"]["supabase"];
            (code == 503 && s["status"] == "unhealthy" && s["spool_depth"].as_u64() >= Some(3))
                .then_some(body)
        },
    );
    let s = &body["components"]["supabase"];
    assert_eq!(body["status"], "degraded", "chats still answer");
    assert_eq!(s["last_upload"], "retry");
    assert_eq!(s["http_status"], 503);
    assert!(s["spool_bytes"].as_u64().unwrap() > 0, "{s}");
    let depth = s["spool_depth"].as_u64().unwrap();
    chat(4);
    wait_for("the spool to grow", PATIENCE, || {
        let (_, body) = report(&agent);
        (body["components"]["supabase"]["spool_depth"].as_u64() > Some(depth)).then_some(())
    });

    postgrest.set_fault(Some(Fault::Unauthorized));
    let body = wait_for("the rejected key to be named", PATIENCE, || {
        let (_, body) = report(&agent);
        let s = &body["components"]["supabase"];
        (s["last_upload"] == "rejected" && s["http_status"] == 401).then_some(body)
    });
    assert!(
        body["components"]["supabase"]["message"]
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{body}"
    );

    postgrest.set_fault(None);
    wait_for("the spool to drain and health to recover", PATIENCE, || {
        let (code, body) = report(&agent);
        let s = &body["components"]["supabase"];
        (code == 200 && s["status"] == "healthy" && s["spool_depth"] == 0).then_some(())
    });
}

#[test]
fn a_daemon_killed_is_unhealthy_until_one_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let (agent, mut daemon) = start(&socket, &[], &[]);
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
        &[],
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

/// The agent's own probes, when an operator asks for them, run under their timeout off
/// the request path; the report says whose view it shows.
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
            (
                "EXAI_HEALTH_PROBE_REDIS_URL",
                format!("redis://127.0.0.1:{port}"),
            ),
            (
                "EXAI_HEALTH_PROBE_SUPABASE_URL",
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "EXAI_HEALTH_PROBE_SUPABASE_KEY",
                "stalled-key-0000000000".into(),
            ),
            ("EXAI_HEALTH_TIMEOUT_MS", "30000".into()),
        ],
        &[],
    );
    stall.wait_accepted(2);
    for _ in 0..50 {
        let (code, body) = agent.health("/health");
        assert_eq!(code, 503, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let storage = &body["components"]["storage"];
        assert_eq!(storage["status"], "unhealthy", "{body}");
        assert_eq!(storage["view"], "agent");
        assert_eq!(body["components"]["supabase"]["view"], "agent");
        assert_eq!(agent.health("/health/live").0, 200);
    }
}

/// What the agent checks itself is done under the timeout; a probe that does not answer
/// in time is a failure, reported as such, and the next round tries again.
#[test]
fn a_probe_that_does_not_answer_in_time_is_reported_failed() {
    let stall = SilentListener::start();
    let dir = tempfile::tempdir().unwrap();
    let (agent, _daemon) = start(
        &dir.path().join("events.sock"),
        &[
            (
                "EXAI_HEALTH_PROBE_REDIS_URL",
                format!("redis://127.0.0.1:{}", stall.port()),
            ),
            ("EXAI_HEALTH_TIMEOUT_MS", "100".into()),
        ],
        &[],
    );
    let body = wait_for("the probe's time limit to be reported", PATIENCE, || {
        let (code, body) = report(&agent);
        let message = body["components"]["storage"]["message"]
            .as_str()?
            .to_string();
        (code == 503 && message.contains("no answer within 100 ms")).then_some(body)
    });
    assert_eq!(body["components"]["storage"]["status"], "unhealthy");
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

/// The daemon link is known inside the agent: health follows a daemon's Hello and its
/// socket closing at once, not at the next round of checks (here ten minutes away).
#[test]
fn the_link_shows_in_health_at_once_not_at_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start_with(&socket, &[("EXAI_HEALTH_INTERVAL_MS", "600000".into())]);
    // The first round (memory, disk) runs at start; after it, nothing is checked again.
    let (code, body) = wait_for("the first round of checks", PATIENCE, || {
        let (code, body) = report(&agent);
        (body["components"]["disk"]["status"] == "healthy").then_some((code, body))
    });
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body["components"]["daemon"]["message"],
        "no daemon has connected yet"
    );

    let started = std::time::Instant::now();
    let mut daemon = Daemon::start(&socket);
    let connected = wait_for("/health 200 after the daemon's Hello", PATIENCE, || {
        let (code, _) = agent.health("/health");
        let (ready, _) = agent.health("/health/ready");
        (code == 200 && ready == 200).then(|| started.elapsed())
    });
    let killed = std::time::Instant::now();
    daemon.proc.kill_hard();
    let gone = wait_for(
        "/health 503 after the daemon's socket closed",
        PATIENCE,
        || {
            let (code, body) = report(&agent);
            (code == 503 && body["components"]["daemon"]["connected"] == false)
                .then(|| killed.elapsed())
        },
    );
    assert_eq!(agent.health("/health/ready").0, 503);
    // Reported, not asserted: the machine's load decides the exact figure.
    eprintln!("health followed the link: 200 {connected:?} after the daemon started, 503 {gone:?} after it was killed");
}

/// Bound to loopback, `/health*` and `/metrics` answer only loopback host names: a page
/// from another site that rebinds its name to 127.0.0.1 gets nothing.
#[test]
fn foreign_host_names_are_refused_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir.path().join("events.sock"));
    let health = agent.health_port.unwrap();
    for (port, path) in [
        (health, "/health"),
        (health, "/health/live"),
        (agent.metrics_port, "/metrics"),
    ] {
        let (code, body) = exai_tests::metrics::http_get_as(port, path, "evil.example:80").unwrap();
        assert_eq!(code, 403, "{path}: {body}");
        assert!(!body.contains("exai_build_info"), "{body}");
        let (code, _) = exai_tests::metrics::http_get_as(port, path, "localhost").unwrap();
        assert_ne!(code, 403, "{path}");
    }
}
