//! The compose stack as operators run it (compose/docker-compose.yml), on a real Docker
//! engine. No registry is reachable, so the images are built here first and cached
//! (tests/src/compose/images.rs). Where no engine answers the test is skipped with a
//! message, unless EXAI_REQUIRE_DOCKER=1 (set by .ci/run), where that is a failure.
//!
//! One project, step after step: the configuration validates with and without the
//! monitoring profile; the daemon serves alone, with no agent; the whole stack answers a
//! chat from the host through the published ports; the agent is restarted, then killed
//! and started, under a load of chats; the daemon is recreated while Supabase's stand-in
//! is down; two daemons share one agent and one Redis; Prometheus comes with its profile;
//! `stop` lets every program finish on its own. Every chat the test sends is counted, and
//! `mcp_requests_total` must match that count exactly at each step. A table of what each
//! step measured closes the test.

use exai_tests::compose::{self, example_env, repo, show, ChatLoad, ComposeTool, Project};
use exai_tests::fake_postgrest::{self, FakePostgrest};
use exai_tests::mcp::{self, RawWs};
use exai_tests::metrics::{http_get, prometheus_scalar};
use exai_tests::process::python_sdk;
use exai_tests::{wait_for, Scrape};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// The label that names a daemon in the agent's per-daemon series.
const DAEMON_LABEL: &str = "daemon";

/// The image's user, who runs both programs (compose/Dockerfile).
const EXAI_UID: u32 = 10001;

/// Bound for what takes containers: starts, restarts, healthchecks every 5 s, scrapes
/// every 15 s. A passing run returns as soon as each condition holds.
const CONTAINER_PATIENCE: Duration = Duration::from_secs(120);

/// Chats of the load that must be answered before, between and after the agent's restarts.
const LOAD_STRETCH: u64 = 40;

/// Turns chatted while Supabase's stand-in is down.
const SPOOLED_TURNS: usize = 20;

#[test]
fn the_compose_stack_as_operators_run_it() {
    let Some(tool) = compose::tool_or_skip("compose test") else {
        return;
    };
    let started = Instant::now();
    let (bin_dir, images) = compose::built_images();
    let mut report = Report::default();
    report.row(
        "images",
        Chats::none(),
        match &images.built[..] {
            [] => "all cached".to_string(),
            built => {
                let each: Vec<String> = built
                    .iter()
                    .map(|(tag, took)| {
                        let name = tag.split(':').next().unwrap_or(tag);
                        let name = name.trim_start_matches("exai-test/");
                        format!("{name} {:.0} s", took.as_secs_f64())
                    })
                    .collect();
                format!("built: {}", each.join(", "))
            }
        },
        Recovery::none(),
    );

    let project = Project::new(
        tool,
        vec![
            repo().join("compose/docker-compose.yml"),
            repo().join("tests/compose/fakes.yml"),
        ],
        compose::test_variables(&images, &bin_dir),
        &["monitoring"],
    );
    let mut sent = 0u64;
    config_validates(&project, &mut report);
    the_daemon_serves_alone(&project, &mut sent, &mut report);
    the_stack_answers_from_the_host(&project, &mut sent, &mut report);
    the_agent_restarts_under_load(&project, &mut sent, &mut report);
    the_daemon_is_recreated_with_supabase_down(&project, &mut sent, &mut report);
    two_daemons_share_one_agent(&project, &mut sent, &mut report);
    prometheus_scrapes_the_agent(&project, sent, &mut report);
    stop_is_graceful(&project, &mut sent, &mut report);
    report.print(tool, project.name(), started.elapsed());
}

/// Every variable in compose/.env.example is one the compose file reads, and the other
/// way round: operators find every knob there, with its default.
#[test]
fn the_example_env_lists_every_variable_of_the_compose_file() {
    let file = std::fs::read_to_string(repo().join("compose/docker-compose.yml")).unwrap();
    let read: BTreeSet<String> = file
        .split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    let listed: BTreeSet<String> = example_env().into_keys().collect();
    assert_eq!(
        read, listed,
        "compose/.env.example against docker-compose.yml"
    );
}

fn config_validates(project: &Project, report: &mut Report) {
    project.run(&["config", "-q"]);
    project.run(&["--profile", "monitoring", "config", "-q"]);
    report.row(
        "config",
        Chats::none(),
        "valid without and with --profile monitoring".into(),
        Recovery::none(),
    );
}

/// The daemon (and Redis, which it names first) with no agent anywhere: it serves, and its
/// healthcheck says so.
fn the_daemon_serves_alone(project: &Project, sent: &mut u64, report: &mut Report) {
    // The daemon depends on the agent only for the order of start and stop.
    project.run(&[
        "up",
        "-d",
        "--no-build",
        "--no-deps",
        "redis",
        "fake-llm",
        "fake-postgrest",
        "daemon",
    ]);
    assert!(
        project.containers("agent").is_empty(),
        "nothing should have started the agent"
    );
    let port = serving_daemon(project, 1);
    let steps = python_sdk(&["ws", &format!("ws://127.0.0.1:{port}/mcp")]);
    assert_eq!(steps["chat"]["is_error"], false, "{steps:?}");
    assert_eq!(steps["continue"]["is_error"], false, "{steps:?}");
    assert_eq!(
        steps["continue"]["structured"]["history_turns"], 1,
        "the thread lives in Redis: {steps:?}"
    );
    *sent += 2;
    wait_healthy(project, "daemon", 1);
    let ps = project.run(&["ps", "daemon"]);
    assert!(ps.contains("(healthy)"), "{ps}");
    report.row(
        "daemon alone, no agent",
        Chats::all_answered(2),
        "SDK chat + continuation over WebSocket; container healthy".into(),
        Recovery::none(),
    );
}

/// The whole stack: a chat from the host with the SDK, counted exactly on the published
/// metrics port; /health healthy; the dashboard answers.
fn the_stack_answers_from_the_host(project: &Project, sent: &mut u64, report: &mut Report) {
    project.run(&["up", "-d", "--no-build"]);
    wait_healthy(project, "agent", 1);
    let metrics = project.port("agent", 8000, 1);
    wait_for("the agent to see the daemon", CONTAINER_PATIENCE, || {
        (connected_daemons(&Scrape::get(metrics)).len() == 1).then_some(())
    });
    let port = serving_daemon(project, 1);
    let steps = python_sdk(&["http", &format!("http://127.0.0.1:{port}/mcp")]);
    assert_eq!(steps["chat"]["is_error"], false, "{steps:?}");
    assert_eq!(steps["continue"]["is_error"], false, "{steps:?}");
    *sent += 2;
    let counted = wait_chat_count(metrics, *sent);

    let health = project.port("agent", 8081, 1);
    let report_json = wait_for("/health to say healthy", CONTAINER_PATIENCE, || {
        let (status, body) = http_get(health, "/health")?;
        let body: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && body["status"] == "healthy").then_some(body)
    });
    assert_eq!(report_json["components"]["storage"]["type"], "redis");
    assert_eq!(report_json["components"]["supabase"]["enabled"], true);

    // Neither program runs as root, and the socket directory the volume shares belongs to
    // the user both run as.
    for service in ["daemon", "agent"] {
        let uid = project.run(&["exec", "-T", service, "id", "-u"]);
        assert_eq!(uid.trim(), EXAI_UID.to_string(), "{service} runs as");
    }
    let volume = compose::inspect_volume(&format!("{}_events", project.name()), "{{.Mountpoint}}");
    let socket_dir = std::fs::metadata(&volume).expect("the events volume's directory");
    assert_eq!(
        (socket_dir.uid(), socket_dir.mode() & 0o777),
        (EXAI_UID, 0o700)
    );
    let socket = std::fs::symlink_metadata(Path::new(&volume).join("events.sock"))
        .expect("the agent's socket in the events volume");
    assert!(socket.file_type().is_socket());
    assert_eq!((socket.uid(), socket.mode() & 0o777), (EXAI_UID, 0o660));

    let dashboard = project.port("agent", 8080, 1);
    let (status, page) = http_get(dashboard, "/").expect("the dashboard answers");
    assert_eq!(status, 200);
    assert!(page.contains("<title>exai · monitoring"), "{page:.200}");
    report.row(
        "stack up, chat from the host",
        Chats::all_answered(2),
        format!(
            "mcp_requests_total {counted} = {sent} sent; /health healthy; dashboard 200; {}",
            format_args!("uid {EXAI_UID} in both, socket 0660 in a 0700 volume")
        ),
        Recovery::none(),
    );
}

/// `restart agent`, then `kill -s SIGKILL agent` and `start agent`, while chats run: none
/// fails, the daemon's container is never restarted, and once the agent is back its
/// counts match every chat sent.
fn the_agent_restarts_under_load(project: &Project, sent: &mut u64, report: &mut Report) {
    let daemon = project.container("daemon", 1);
    let daemon_started = compose::inspect(&daemon, "{{.State.StartedAt}}");
    let port = serving_daemon(project, 1);
    let load = ChatLoad::start(&format!("ws://127.0.0.1:{port}/mcp"), 4, 20);
    let stretch = |what: &str| {
        let from = load.answered();
        wait_for(what, CONTAINER_PATIENCE, || {
            (load.answered() >= from + LOAD_STRETCH).then_some(())
        });
    };
    stretch("the load to run");

    let restart = Instant::now();
    project.run(&["restart", "agent"]);
    wait_agent_sees(project, 1);
    let restarted_in = restart.elapsed();
    stretch("the load to go on after the restart");

    let kill = Instant::now();
    project.run(&["kill", "-s", "SIGKILL", "agent"]);
    project.run(&["start", "agent"]);
    let metrics = wait_agent_sees(project, 1);
    let killed_in = kill.elapsed();
    stretch("the load to go on after the kill");

    let result = load.stop();
    *sent += result.sent;
    assert_eq!(
        result.failed, 0,
        "chats failed while the agent restarted: {:?}",
        result.failures
    );
    let counted = wait_chat_count(metrics, *sent);
    let lost = Scrape::get(metrics).sum("exai_pipe_events_lost_total", &[]);
    assert_eq!(
        project.container("daemon", 1),
        daemon,
        "the daemon's container was replaced"
    );
    assert_eq!(compose::inspect(&daemon, "{{.RestartCount}}"), "0");
    assert_eq!(
        compose::inspect(&daemon, "{{.State.StartedAt}}"),
        daemon_started,
        "the daemon's container restarted"
    );
    report.row(
        "agent restart + SIGKILL under load",
        Chats {
            sent: result.sent,
            failed: result.failed,
        },
        format!(
            "mcp_requests_total {counted} = {sent} sent; events lost {lost}; daemon never restarted"
        ),
        Recovery(vec![("restart", restarted_in), ("kill + start", killed_in)]),
    );
}

/// With Supabase's stand-in stopped, turns wait in the spool; `up --force-recreate` gives
/// the daemon a new container on the same spool volume, which still holds them, and they
/// arrive, each once, when the stand-in is back.
fn the_daemon_is_recreated_with_supabase_down(
    project: &Project,
    sent: &mut u64,
    report: &mut Report,
) {
    let old = project.container("daemon", 1);
    let mut ws = session(serving_daemon(project, 1));
    wait_for(
        "the spool to be empty before Supabase goes",
        CONTAINER_PATIENCE,
        || (spool_records(&mut ws) == 0).then_some(()),
    );
    project.run(&["stop", "fake-postgrest"]);
    let prompts: BTreeSet<String> = (0..SPOOLED_TURNS).map(|n| format!("spooled-{n}")).collect();
    for prompt in &prompts {
        let result = ws.call_tool("chat", json!({ "prompt": prompt }))["result"].clone();
        assert_eq!(result["isError"], false, "{result}");
    }
    *sent += SPOOLED_TURNS as u64;
    assert_eq!(spool_records(&mut ws), SPOOLED_TURNS as u64);
    drop(ws);

    let recreate = Instant::now();
    project.run(&[
        "up",
        "-d",
        "--no-build",
        "--no-deps",
        "--force-recreate",
        "daemon",
    ]);
    let mut ws = session(serving_daemon(project, 1));
    let kept = spool_records(&mut ws);
    let recreated_in = recreate.elapsed();
    assert_ne!(project.container("daemon", 1), old, "not recreated");
    assert_eq!(
        kept, SPOOLED_TURNS as u64,
        "the spool volume keeps the turns"
    );

    let back = Instant::now();
    project.run(&["start", "fake-postgrest"]);
    let supabase = project.port("fake-postgrest", 8091, 1);
    wait_for("the spooled turns to arrive", CONTAINER_PATIENCE, || {
        (spool_records(&mut ws) == 0).then_some(())
    });
    let arrived_in = back.elapsed();
    let users: BTreeSet<String> = rows(supabase, "messages?role=eq.user")
        .iter()
        .map(|r| r["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(users, prompts, "each spooled turn arrived");
    let stats: Value = serde_json::from_str(
        &fake_postgrest::request(supabase, "GET", "/_stats", &[], "")
            .expect("fake-postgrest answers /_stats")
            .1,
    )
    .unwrap();
    assert_eq!(stats["tables"]["messages"]["rows"], 2 * SPOOLED_TURNS);
    assert_eq!(stats["tables"]["messages"]["duplicates"], 0, "{stats}");
    report.row(
        "daemon recreated, Supabase down",
        Chats::all_answered(SPOOLED_TURNS as u64),
        format!(
            "spool {SPOOLED_TURNS} before, {kept} after recreate; {} turns arrived once",
            users.len()
        ),
        Recovery(vec![
            ("recreate", recreated_in),
            ("Supabase back → uploaded", arrived_in),
        ]),
    );
}

/// `--scale daemon=2`: both daemons in the agent's metrics, and a conversation started on
/// one continues on the other through Redis.
fn two_daemons_share_one_agent(project: &Project, sent: &mut u64, report: &mut Report) {
    project.run(&["up", "-d", "--no-build", "--scale", "daemon=2"]);
    wait_healthy(project, "daemon", 2);
    let (first, second) = (serving_daemon(project, 1), serving_daemon(project, 2));
    assert_ne!(first, second);
    let metrics = wait_agent_sees(project, 2);
    let health = project.port("agent", 8081, 1);
    wait_for("/health to count two daemons", CONTAINER_PATIENCE, || {
        let (_, body) = http_get(health, "/health")?;
        let body: Value = serde_json::from_str(&body).ok()?;
        (body["components"]["daemon"]["instances"] == 2).then_some(())
    });
    let steps = python_sdk(&[
        "handoff",
        &format!("http://127.0.0.1:{first}/mcp"),
        &format!("ws://127.0.0.1:{second}/mcp"),
    ]);
    assert_eq!(steps["first"]["is_error"], false, "{steps:?}");
    assert_eq!(steps["second"]["is_error"], false, "{steps:?}");
    assert_eq!(
        steps["second"]["meta"]["continuation_id"],
        steps["first"]["meta"]["continuation_id"]
    );
    assert_eq!(
        steps["second"]["structured"]["history_turns"], 1,
        "the second daemon read the first one's turn: {steps:?}"
    );
    *sent += 2;
    let counted = wait_chat_count(metrics, *sent);
    report.row(
        "scale daemon=2, one agent",
        Chats::all_answered(2),
        format!(
            "2 daemons in /metrics and /health; continued on the other with history_turns 1; mcp_requests_total {counted} = {sent} sent"
        ),
        Recovery::none(),
    );
}

/// The monitoring profile: Prometheus scrapes the agent by service name, and its query API
/// reports the exact count.
fn prometheus_scrapes_the_agent(project: &Project, sent: u64, report: &mut Report) {
    let started = Instant::now();
    project.run(&[
        "--profile",
        "monitoring",
        "up",
        "-d",
        "--no-build",
        "--scale",
        "daemon=2",
    ]);
    let prometheus = project.port("prometheus", 9090, 1);
    let query = r#"sum(mcp_requests_total{job="exai-agent",method="call_tool",endpoint="chat"})"#;
    let seen = wait_for("Prometheus to scrape the agent", CONTAINER_PATIENCE, || {
        prometheus_scalar(prometheus, query)
    });
    let scraped_in = started.elapsed();
    assert_eq!(
        prometheus_scalar(prometheus, r#"up{job="exai-agent"}"#),
        Some(1.0)
    );
    assert_eq!(seen, sent as f64, "exact, through Prometheus");
    report.row(
        "--profile monitoring",
        Chats::none(),
        format!("Prometheus: {seen} = {sent} sent"),
        Recovery(vec![("up → first scrape", scraped_in)]),
    );
}

/// `stop` is a graceful shutdown: chats answered just before it reach the agent's count
/// (the daemons' last heartbeat), and the daemons and the agent exit 0 on their own,
/// inside the grace period, instead of being killed.
fn stop_is_graceful(project: &Project, sent: &mut u64, report: &mut Report) {
    const LAST: u64 = 5;
    let mut ws = session(serving_daemon(project, 1));
    for n in 0..LAST {
        let result =
            ws.call_tool("chat", json!({ "prompt": format!("last-{n}") }))["result"].clone();
        assert_eq!(result["isError"], false, "{result}");
    }
    *sent += LAST;
    drop(ws);
    let daemons = [
        project.container("daemon", 1),
        project.container("daemon", 2),
    ];
    let stop = Instant::now();
    project.run(&["stop", "daemon"]);
    let stopped_in = stop.elapsed();
    for id in &daemons {
        assert_eq!(
            compose::inspect(id, "{{.State.ExitCode}}"),
            "0",
            "a daemon did not stop gracefully"
        );
    }
    let counted = wait_chat_count(project.port("agent", 8000, 1), *sent);
    let agent = project.container("agent", 1);
    project.run(&["stop", "agent"]);
    assert_eq!(compose::inspect(&agent, "{{.State.ExitCode}}"), "0");

    // The whole stack at once, as an operator stops it: the daemons first (they depend
    // on the agent), so their last heartbeat finds the agent still listening.
    project.run(&["start"]);
    let metrics = project.port("agent", 8000, 1);
    wait_for("both daemons connected again", CONTAINER_PATIENCE, || {
        (Scrape::get(metrics).sum("exai_pipe_daemon_connected", &[]) == 2.0).then_some(())
    });
    // What a daemon logs when the agent is gone: closed, failed or unreachable.
    let agent_lost = |id: &String| {
        let log = compose::docker_logs(id);
        [
            "agent closed the event pipe",
            "writing to the agent failed",
            "agent not reachable",
        ]
        .iter()
        .map(|line| log.matches(line).count())
        .sum::<usize>()
    };
    let before: Vec<usize> = daemons.iter().map(agent_lost).collect();
    project.run(&["stop"]);
    for (id, before) in daemons.iter().zip(&before) {
        assert_eq!(compose::inspect(id, "{{.State.ExitCode}}"), "0");
        assert_eq!(
            agent_lost(id),
            *before,
            "the agent stopped before a daemon's last heartbeat:\n{}",
            compose::docker_logs(id)
        );
    }
    assert_eq!(compose::inspect(&agent, "{{.State.ExitCode}}"), "0");
    report.row(
        "stop",
        Chats::all_answered(LAST),
        format!("daemons and agent exit 0; mcp_requests_total {counted} = {sent} sent; whole-stack stop: daemons before the agent"),
        Recovery(vec![("daemons stopped", stopped_in)]),
    );
}

/// The host port of the `index`th daemon, once that daemon answers HTTP on it (Docker's
/// proxy accepts connections before the daemon listens).
fn serving_daemon(project: &Project, index: usize) -> u16 {
    let port = project.port("daemon", 8079, index);
    wait_for(
        &format!("daemon #{index} to serve on {port}"),
        CONTAINER_PATIENCE,
        || http_get(port, "/").map(|_| ()),
    );
    port
}

/// Waits until Docker reports `service`'s first `count` containers healthy, which is
/// their healthcheck subcommand answering.
fn wait_healthy(project: &Project, service: &str, count: usize) {
    for index in 1..=count {
        let id = project.container(service, index);
        wait_for(
            &format!("{service} #{index} to be healthy"),
            CONTAINER_PATIENCE,
            || (compose::inspect(&id, "{{.State.Health.Status}}") == "healthy").then_some(()),
        );
    }
}

/// Waits until the agent (after a restart its published port is new) reports `count`
/// daemons connected; returns its metrics port.
fn wait_agent_sees(project: &Project, count: usize) -> u16 {
    let metrics = project.port("agent", 8000, 1);
    wait_for(
        &format!("the agent to see {count} daemon(s)"),
        CONTAINER_PATIENCE,
        || (connected_daemons(&Scrape::get(metrics)).len() == count).then_some(()),
    );
    metrics
}

/// The daemons the agent reports connected, by the label that names a daemon.
fn connected_daemons(scrape: &Scrape) -> BTreeSet<String> {
    scrape
        .matching("exai_pipe_daemon_connected", &[])
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.labels.get(DAEMON_LABEL).cloned())
        .collect()
}

/// Chats counted by the agent, summed over daemons.
fn chat_count(scrape: &Scrape) -> f64 {
    scrape.sum(
        "mcp_requests_total",
        &[("method", "call_tool"), ("endpoint", "chat")],
    )
}

/// Waits for the agent's chat count to reach `sent`, then requires it to be exactly that.
fn wait_chat_count(metrics: u16, sent: u64) -> f64 {
    let counted = wait_for(
        &format!("the agent to count {sent} chats"),
        CONTAINER_PATIENCE,
        || Some(chat_count(&Scrape::get(metrics))).filter(|n| *n >= sent as f64),
    );
    assert_eq!(counted, sent as f64, "mcp_requests_total is exact");
    counted
}

fn session(port: u16) -> RawWs {
    let mut ws = mcp::connect(&format!("ws://127.0.0.1:{port}/mcp"), &[]).expect("upgrade");
    ws.initialize("2025-11-25");
    ws
}

fn spool_records(ws: &mut RawWs) -> u64 {
    let status = ws.call_tool("status", json!({}));
    status["result"]["structuredContent"]["supabase"]["spool_records"]
        .as_u64()
        .unwrap_or_else(|| panic!("no spool_records in {status}"))
}

/// Rows from fake-postgrest's REST API on `port`: `query` is `table?filters`.
fn rows(port: u16, query: &str) -> Vec<Value> {
    let bearer = format!("Bearer {}", FakePostgrest::KEY);
    let headers = [
        ("apikey", FakePostgrest::KEY),
        ("Authorization", bearer.as_str()),
    ];
    let (status, body) =
        fake_postgrest::request(port, "GET", &format!("/rest/v1/{query}"), &headers, "")
            .expect("fake-postgrest answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("rows are JSON")
}

/// Chats a step sent, and how many of them failed.
struct Chats {
    sent: u64,
    failed: u64,
}

impl Chats {
    fn none() -> Option<Self> {
        None
    }

    fn all_answered(sent: u64) -> Option<Self> {
        Some(Self { sent, failed: 0 })
    }
}

/// How long a step took to come back, from the command to the outcome, by what it did.
struct Recovery(Vec<(&'static str, Duration)>);

impl Recovery {
    fn none() -> Self {
        Self(Vec::new())
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<[String; 5]>,
}

impl Report {
    fn row(
        &mut self,
        step: &str,
        chats: impl Into<Option<Chats>>,
        seen: String,
        recovery: Recovery,
    ) {
        let (sent, failed) = match chats.into() {
            Some(c) => (c.sent.to_string(), c.failed.to_string()),
            None => ("-".into(), "-".into()),
        };
        let recovery = match &recovery.0[..] {
            [] => "-".to_string(),
            parts => parts
                .iter()
                .map(|(what, took)| format!("{what} {:.1}", took.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
        };
        self.rows
            .push([step.to_string(), sent, failed, seen, recovery]);
    }

    fn print(&self, tool: ComposeTool, project: &str, took: Duration) {
        let mut out = String::new();
        let header = ["step", "chats sent", "failed", "seen", "seconds to recover"];
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: [&str; 5]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        out.push_str(&format!(
            "\ncompose stack ({}, project {project}), {:.0} s in all:\n",
            tool.spelling(),
            took.as_secs_f64()
        ));
        out.push_str(&line(header));
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("-|-"));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
            out.push('\n');
        }
        show(&out);
    }
}
