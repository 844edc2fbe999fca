//! The compose file's `fleet` profile on a real Docker engine: HAProxy
//! (compose/haproxy.cfg) in front of three daemons sharing Redis and one agent, every
//! client on the balancer's one published port. Images are built here and cached
//! (tests/src/compose/images.rs); without an engine the test is skipped with a message,
//! unless EXAI_REQUIRE_DOCKER=1.
//!
//! One project, step after step: 300 stateless chats of one conversation (SDK 2.x) spread
//! over the three daemons, each turn reading the one before from Redis whichever daemon
//! wrote it; a task started through the balancer completes when polled through it; a
//! 2025-era HTTP session of 50 calls stays on one daemon; a WebSocket session works.
//! Then, under a steady load of stateless chats: `docker stop` of one daemon fails no
//! call (HAProxy takes it out when /readyz says 503, while it still serves) and its last
//! heartbeat is counted; `docker start` brings it back, failing none either; SIGKILL of
//! another fails only the calls it had in flight, and `up` brings it back into rotation.
//! HAProxy's metrics and the agent reach Prometheus.
//! A table of counts and recovery times closes the test; times are printed, never
//! asserted.

use exai_tests::compose::{self, BalancerStats, ChatLoad, ComposeTool, Project, ServerRow};
use exai_tests::metrics::prometheus_scalar;
use exai_tests::process::{python_sdk, python_sdk2};
use exai_tests::{wait_for, Scrape};
use std::process::Command;
use std::time::{Duration, Instant};

/// Daemons of the fleet.
const DAEMONS: usize = 3;

/// HAProxy's backend of daemons (compose/haproxy.cfg).
const BACKEND: &str = "daemons";

/// Bound for what takes containers: starts, healthchecks every 5 s, scrapes every 15 s.
/// A passing run returns as soon as each condition holds.
const CONTAINER_PATIENCE: Duration = Duration::from_secs(120);

/// Stateless chats of one conversation spread over the fleet by the SDK client.
const SPREAD_CHATS: u64 = 300;

/// Calls of one 2025-era Streamable HTTP session.
const SESSION_CALLS: u64 = 50;

/// Clients of the steady load, each with one chat in flight at a time, and how long
/// fake-llm takes over each answer (so that some are in flight on a daemon when it dies).
const LOAD_CLIENTS: usize = 16;
const LOAD_LATENCY_MS: u64 = 20;

/// Chats of the load answered before and after each event under load.
const LOAD_STRETCH: u64 = 300;

/// Chats of mcp2_client.py's `tasks` scenario, each counted once: the task that
/// completes and the one it cancels.
const TASK_CHATS: u64 = 2;

#[test]
fn a_fleet_behind_haproxy_as_operators_run_it() {
    let Some(tool) = compose::tool_or_skip("compose fleet test") else {
        return;
    };
    let started = Instant::now();
    let (bin_dir, images) = compose::built_images();
    let mut report = Report::default();
    report.note(
        "images",
        match &images.built[..] {
            [] => "all cached".to_string(),
            built => format!(
                "built: {}",
                built
                    .iter()
                    .map(|(tag, took)| format!("{tag} {:.0} s", took.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    );
    let project = Project::new(
        tool,
        vec![
            compose::repo().join("compose/docker-compose.yml"),
            compose::repo().join("tests/compose/fakes.yml"),
        ],
        compose::test_variables(&images, &bin_dir),
        &["fleet", "monitoring"],
    );
    project.run(&["--profile", "fleet", "config", "-q"]);
    project.run(&[
        "--profile",
        "fleet",
        "--profile",
        "monitoring",
        "config",
        "-q",
    ]);

    let fleet = Fleet::up(&project, &mut report);
    let mut sent = 0u64;
    stateless_chats_spread_over_the_fleet(&fleet, &mut sent, &mut report);
    a_task_completes_through_the_balancer(&fleet, &mut sent, &mut report);
    a_session_stays_on_its_daemon(&fleet, &mut sent, &mut report);
    websocket_passes_through(&fleet, &mut sent, &mut report);
    let stopped = docker_stop_fails_no_call(&fleet, &mut sent, &mut report);
    docker_start_fails_no_call(&fleet, &stopped, &mut report);
    sigkill_fails_only_calls_in_flight(&fleet, &mut report);
    prometheus_scrapes_haproxy_and_the_agent(&fleet, &mut report);
    report.print(tool, project.name(), started.elapsed());
}

/// The running stack: its published ports and its daemons, in compose's order.
struct Fleet<'a> {
    project: &'a Project,
    /// Where clients connect: HAProxy's frontend.
    balancer: u16,
    /// HAProxy's statistics and metrics.
    stats: u16,
    /// The agent's /metrics.
    metrics: u16,
    daemons: Vec<DaemonContainer>,
}

/// One daemon's container, and how each side names it.
#[derive(Debug, Clone)]
struct DaemonContainer {
    /// Compose's number for it (`--index`).
    index: usize,
    id: String,
    /// Its `daemon` label in the agent's metrics: the container's host name and port,
    /// which stay when the container restarts.
    label: String,
}

impl DaemonContainer {
    fn of(project: &Project, index: usize) -> Self {
        let id = project.container("daemon", index);
        let label = format!("{}:8079", compose::inspect(&id, "{{.Config.Hostname}}"));
        Self { index, id, label }
    }

    /// Its address on the stack's network, which HAProxy's server slot shows; a
    /// restarted container may get another one.
    fn ip(&self) -> String {
        compose::inspect(
            &self.id,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
    }
}

impl<'a> Fleet<'a> {
    /// `--profile fleet --profile monitoring up -d --scale daemon=3`, then waits until
    /// every daemon is healthy, known to the agent and in HAProxy's rotation.
    fn up(project: &'a Project, report: &mut Report) -> Self {
        let started = Instant::now();
        up(project);
        let daemons: Vec<DaemonContainer> = (1..=DAEMONS)
            .map(|index| DaemonContainer::of(project, index))
            .collect();
        for daemon in &daemons {
            wait_for(
                &format!("daemon #{} to be healthy", daemon.index),
                CONTAINER_PATIENCE,
                || {
                    (compose::inspect(&daemon.id, "{{.State.Health.Status}}") == "healthy")
                        .then_some(())
                },
            );
        }
        let fleet = Self {
            project,
            balancer: project.port("balancer", 8078, 1),
            stats: project.port("balancer", 8404, 1),
            metrics: project.port("agent", 8000, 1),
            daemons,
        };
        wait_for("the agent to see three daemons", CONTAINER_PATIENCE, || {
            let scrape = Scrape::get(fleet.metrics);
            fleet
                .daemons
                .iter()
                .all(|d| scrape.sum("exai_pipe_daemon_connected", &[("daemon", &d.label)]) == 1.0)
                .then_some(())
        });
        fleet.wait_in_rotation(&fleet.daemons.iter().collect::<Vec<_>>());
        let exported = BalancerStats::exported(fleet.stats).expect("HAProxy's exporter");
        assert!(
            exported.contains(&format!(
                "haproxy_backend_active_servers{{proxy=\"{BACKEND}\"}} {DAEMONS}"
            )),
            "HAProxy's /metrics: {:.2000}",
            exported
        );
        report.row(
            "up --scale daemon=3",
            None,
            &[],
            format!(
                "3 daemons healthy, in the agent, UP in HAProxy (/stats and /metrics); balancer on :{}",
                fleet.balancer
            ),
            vec![("up → all in rotation", started.elapsed())],
        );
        fleet
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.balancer)
    }

    fn stats(&self) -> BalancerStats {
        BalancerStats::get(self.stats).unwrap_or_default()
    }

    /// HAProxy's slot holding `daemon`'s current address.
    fn slot(&self, daemon: &DaemonContainer) -> Option<ServerRow> {
        self.stats().server_at(BACKEND, &daemon.ip()).cloned()
    }

    /// Waits until HAProxy has each of `daemons` UP at its current address.
    fn wait_in_rotation(&self, daemons: &[&DaemonContainer]) {
        for daemon in daemons {
            wait_for(
                &format!("HAProxy to have daemon #{} UP", daemon.index),
                CONTAINER_PATIENCE,
                || self.slot(daemon).filter(ServerRow::is_up),
            );
        }
    }

    /// Chats each daemon answered, as the agent counts them, by the daemons' order.
    fn chats(&self) -> Vec<u64> {
        let scrape = Scrape::get(self.metrics);
        self.daemons
            .iter()
            .map(|d| chat_count(&scrape, &[("daemon", &d.label)]) as u64)
            .collect()
    }

    /// Waits for the agent's chat count, over every daemon, to reach `sent`, then
    /// requires it to be exactly that; returns each daemon's count.
    fn wait_chats(&self, sent: u64) -> Vec<u64> {
        let counted = wait_for(
            &format!("the agent to count {sent} chats"),
            CONTAINER_PATIENCE,
            || Some(chat_count(&Scrape::get(self.metrics), &[]) as u64).filter(|n| *n >= sent),
        );
        assert_eq!(counted, sent, "mcp_requests_total is exact over the fleet");
        self.chats()
    }

    /// Waits until a new process (not `old_instance`) answers as `daemon` and has
    /// answered chats of the load; its count then, and HAProxy's slot for it.
    fn wait_answering(&self, daemon: &DaemonContainer, old_instance: &str) -> (u64, ServerRow) {
        let index = daemon.index - 1;
        wait_for(
            &format!("daemon #{} to answer chats again", daemon.index),
            CONTAINER_PATIENCE,
            || {
                // The agent resets a daemon's counts at its new process's Hello, before
                // it shows the new instance: a count read after seeing it is the new one's.
                let instance = self.instance(daemon).filter(|i| i != old_instance)?;
                let count = self.chats()[index];
                let row = self.slot(daemon).filter(ServerRow::is_up)?;
                (count >= 10 && self.instance(daemon) == Some(instance)).then_some((count, row))
            },
        )
    }

    /// The agent's `instance_id` of the process now behind `daemon`'s label.
    fn instance(&self, daemon: &DaemonContainer) -> Option<String> {
        Scrape::get(self.metrics)
            .matching("exai_daemon_info", &[("daemon", &daemon.label)])
            .find(|s| s.value == 1.0)
            .and_then(|s| s.labels.get("instance_id").cloned())
    }
}

fn up(project: &Project) {
    project.run(&[
        "--profile",
        "fleet",
        "--profile",
        "monitoring",
        "up",
        "-d",
        "--no-build",
        "--scale",
        &format!("daemon={DAEMONS}"),
    ]);
}

/// 300 stateless chats of one conversation through the balancer: each daemon answers
/// between a fifth and 47 % of them, and every turn finds the turns before it whichever
/// daemon answered them.
fn stateless_chats_spread_over_the_fleet(fleet: &Fleet, sent: &mut u64, report: &mut Report) {
    let steps = python_sdk2(&["calls", &fleet.url(), &SPREAD_CHATS.to_string()]);
    let calls = &steps["calls"];
    assert_eq!(calls["protocol"], "2026-07-28", "{calls}");
    assert_eq!(calls["answered"], SPREAD_CHATS, "{calls}");
    assert_eq!(calls["failed"], serde_json::json!([]), "{calls}");
    let history: Vec<u64> = calls["history"]
        .as_array()
        .expect("each answer's history_turns")
        .iter()
        .map(|t| t.as_u64().expect("a number of turns"))
        .collect();
    // The thread keeps its last turns (MAX_CONVERSATION_TURNS): the nth chat finds n-1
    // turns before it until the cap, then the cap.
    let cap = *history.last().expect("answers");
    assert!(cap > 1, "the conversation went on: {history:?}");
    let expected: Vec<u64> = (0..SPREAD_CHATS).map(|n| n.min(cap)).collect();
    assert_eq!(
        history, expected,
        "each turn read every turn before it (up to the cap) from Redis"
    );
    *sent += SPREAD_CHATS;
    let counts = fleet.wait_chats(*sent);
    for (daemon, &count) in fleet.daemons.iter().zip(&counts) {
        let share = count as f64 / SPREAD_CHATS as f64;
        assert!(
            (0.20..=0.47).contains(&share),
            "daemon #{} answered {count} of {SPREAD_CHATS}: {counts:?}",
            daemon.index
        );
    }
    report.row(
        "2026 SDK: 300 chats, one conversation",
        Some(Chats::answered(SPREAD_CHATS)),
        &counts.iter().map(|c| Some(*c as i64)).collect::<Vec<_>>(),
        format!("every daemon 20-47 %; history_turns 0, 1, … up to {cap} across daemons"),
        vec![],
    );
}

/// The tasks extension through the balancer: the task is made on one daemon and polled
/// through whichever the balancer picks; it completes, and another is cancelled.
fn a_task_completes_through_the_balancer(fleet: &Fleet, sent: &mut u64, report: &mut Report) {
    let before = fleet.chats();
    let answered = |stats: &BalancerStats| -> Vec<u64> {
        fleet
            .daemons
            .iter()
            .map(|d| {
                stats
                    .server_at(BACKEND, &d.ip())
                    .map_or(0, |s| s.responses_2xx)
            })
            .collect()
    };
    let requests_before = answered(&fleet.stats());
    let steps = python_sdk2(&["tasks", &fleet.url()]);
    let requests = delta(&requests_before, &answered(&fleet.stats()));
    assert!(
        requests.iter().all(|r| r.unwrap_or(0) > 0),
        "the task's requests went to every daemon: {requests:?}"
    );
    let completed = &steps["completed"];
    assert_eq!(completed["task"]["status"], "completed", "{steps:?}");
    assert_eq!(completed["is_error"], false, "{steps:?}");
    let polls = completed["polls"].as_array().expect("polls").len();
    assert!(polls >= 2, "polled while it worked: {completed}");
    assert_eq!(steps["cancelled"]["status"], "cancelled", "{steps:?}");
    *sent += TASK_CHATS;
    let after = fleet.wait_chats(*sent);
    report.row(
        "2026 SDK: a task, polled",
        Some(Chats::answered(TASK_CHATS)),
        &delta(&before, &after),
        format!(
            "completed after {polls} polls; another cancelled; requests per daemon {}",
            requests
                .iter()
                .map(|r| r.unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        ),
        vec![],
    );
}

/// A 2025-era Streamable HTTP session (SDK 2.x, mode legacy) through the balancer: all
/// its calls reach the daemon that holds the session, learned from `initialize`'s
/// Mcp-Session-Id (any other daemon would answer 404).
fn a_session_stays_on_its_daemon(fleet: &Fleet, sent: &mut u64, report: &mut Report) {
    let before = fleet.chats();
    let steps = python_sdk2(&["calls", &fleet.url(), &SESSION_CALLS.to_string(), "legacy"]);
    let calls = &steps["calls"];
    assert_eq!(calls["protocol"], "2025-11-25", "{calls}");
    assert_eq!(calls["answered"], SESSION_CALLS, "{calls}");
    assert_eq!(calls["failed"], serde_json::json!([]), "{calls}");
    *sent += SESSION_CALLS;
    let after = fleet.wait_chats(*sent);
    let moved = delta(&before, &after);
    let mut sorted: Vec<i64> = moved.iter().map(|d| d.unwrap_or(0)).collect();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [0, 0, SESSION_CALLS as i64],
        "every call of the session on one daemon: {moved:?}"
    );
    report.row(
        "2025 SDK over HTTP: 50 calls, one session",
        Some(Chats::answered(SESSION_CALLS)),
        &moved,
        "all on the daemon holding the session (stick on Mcp-Session-Id)".into(),
        vec![],
    );
}

/// A WebSocket session (SDK 1.x) through the balancer: the upgrade passes, and the
/// session chats and continues its conversation.
fn websocket_passes_through(fleet: &Fleet, sent: &mut u64, report: &mut Report) {
    let before = fleet.chats();
    let steps = python_sdk(&["ws", &format!("ws://127.0.0.1:{}/mcp", fleet.balancer)]);
    assert_eq!(steps["chat"]["is_error"], false, "{steps:?}");
    assert_eq!(steps["continue"]["is_error"], false, "{steps:?}");
    assert_eq!(
        steps["continue"]["structured"]["history_turns"], 1,
        "{steps:?}"
    );
    *sent += 2;
    let after = fleet.wait_chats(*sent);
    report.row(
        "1.x SDK over WebSocket",
        Some(Chats::answered(2)),
        &delta(&before, &after),
        "chat + continuation, one session on one daemon".into(),
        vec![],
    );
}

/// `docker stop` of one daemon under load: HAProxy sees /readyz answer 503 and takes it
/// out while it still serves; it stops accepting only then, exits 0, and no call fails.
/// Every chat answered is counted by the agent, the stopped daemon's to its last
/// heartbeat: each daemon's count grew by exactly what HAProxy received from it.
/// Returns the stopped process's instance id.
fn docker_stop_fails_no_call(fleet: &Fleet, sent: &mut u64, report: &mut Report) -> String {
    let stopped = &fleet.daemons[0];
    let instance = fleet.instance(stopped).expect("the daemon's instance");
    let before = fleet.chats();
    let stats_before = fleet.stats();
    let slots: Vec<String> = fleet
        .daemons
        .iter()
        .map(|d| {
            stats_before
                .server_at(BACKEND, &d.ip())
                .unwrap_or_else(|| panic!("no HAProxy slot for daemon #{}", d.index))
                .name
                .clone()
        })
        .collect();
    let load = ChatLoad::start_stateless(&fleet.url(), LOAD_CLIENTS, LOAD_LATENCY_MS);
    stretch(&load, "the load to run");

    let stop_at = Instant::now();
    let mut stop = Command::new("docker")
        .args(["stop", &stopped.id])
        .spawn()
        .expect("run docker stop");
    let out = wait_for(
        "HAProxy to take the stopping daemon out",
        CONTAINER_PATIENCE,
        || {
            fleet
                .stats()
                .server(BACKEND, &slots[0])
                .filter(|s| s.is_out())
                .cloned()
        },
    );
    let out_in = stop_at.elapsed();
    assert!(stop.wait().expect("docker stop").success());
    let exited_in = stop_at.elapsed();
    assert_eq!(
        compose::inspect(&stopped.id, "{{.State.ExitCode}}"),
        "0",
        "the daemon stopped on its own"
    );
    stretch(&load, "the load to go on with two daemons");
    let result = load.stop();
    assert_eq!(
        result.failed, 0,
        "calls failed while a daemon stopped: {:?}",
        result.failures
    );

    // /readyz said 503 while the daemon still listened: the drain's line comes before the
    // one saying it no longer accepts (both in the daemon's own log stream), and
    // HAProxy's check got the 503 itself.
    let logs = compose::docker_logs(&stopped.id);
    let draining = line_of(&logs, "draining: /readyz answers 503");
    let closed = line_of(&logs, "no longer accepting connections");
    assert!(draining < closed, "{logs}");
    assert!(logs.contains("exai-daemon stopped"), "{logs}");
    let balancer_log = fleet
        .project
        .run(&["--profile", "fleet", "logs", "--no-color", "balancer"]);
    let went_down = format!(
        "Server {BACKEND}/{} is DOWN, reason: Layer7 wrong status, code: 503",
        slots[0]
    );
    assert!(balancer_log.contains(&went_down), "{balancer_log}");

    *sent += result.answered();
    let after = fleet.wait_chats(*sent);
    let stats_after = fleet.stats();
    let received: Vec<i64> = slots
        .iter()
        .map(|slot| {
            let count = |s: &BalancerStats| {
                s.server(BACKEND, slot)
                    .map_or(0, |row| row.responses_2xx as i64)
            };
            count(&stats_after) - count(&stats_before)
        })
        .collect();
    let counted: Vec<i64> = delta(&before, &after)
        .into_iter()
        .map(|d| d.unwrap_or(0))
        .collect();
    assert_eq!(
        counted, received,
        "each daemon's count grew by what HAProxy received from it"
    );
    report.row(
        "docker stop daemon #1 under load",
        Some(Chats {
            sent: result.sent,
            failed: result.failed,
        }),
        &counted.iter().map(|c| Some(*c)).collect::<Vec<_>>(),
        format!(
            "{:.0} chats/s; HAProxy: {} {} ({}) before the port closed; exit 0; agent = HAProxy per daemon",
            result.rate(),
            slots[0],
            out.status,
            out.check
        ),
        vec![("out of rotation", out_in), ("exited", exited_in)],
    );
    instance
}

/// `docker start` of the stopped daemon under load, the second half of a rolling
/// restart: it comes back into rotation and answers, and no call fails meanwhile (a
/// daemon that HAProxy tries before it listens costs no request).
fn docker_start_fails_no_call(fleet: &Fleet, stopped_instance: &str, report: &mut Report) {
    let started = &fleet.daemons[0];
    let before = fleet.chats();
    let load = ChatLoad::start_stateless(&fleet.url(), LOAD_CLIENTS, LOAD_LATENCY_MS);
    stretch(&load, "the load to run on two daemons");
    let start_at = Instant::now();
    compose::docker(&["start", &started.id]);
    fleet.wait_in_rotation(&[started]);
    let in_rotation = start_at.elapsed();
    let answering = fleet.wait_answering(started, stopped_instance);
    let answering_in = start_at.elapsed();
    stretch(&load, "the load to go on with three daemons");
    let result = load.stop();
    assert_eq!(
        result.failed, 0,
        "calls failed while a daemon came back: {:?}",
        result.failures
    );
    let after = fleet.chats();
    let counts: Vec<Option<i64>> = (0..DAEMONS)
        .map(|i| Some(after[i] as i64 - if i == 0 { 0 } else { before[i] as i64 }))
        .collect();
    report.row(
        "docker start daemon #1 under load",
        Some(Chats {
            sent: result.sent,
            failed: result.failed,
        }),
        &counts,
        format!(
            "{:.0} chats/s; back in rotation as {}, a new process (#1 counted since its start: {} when first seen answering)",
            result.rate(),
            answering.1.name,
            answering.0
        ),
        vec![("in rotation", in_rotation), ("answering", answering_in)],
    );
}

/// SIGKILL of another daemon under load: only calls it had in flight fail (each sent
/// before the kill, at most one per client, none once HAProxy took it out, each cut off
/// without an answer), and `up` brings it back into rotation, where it takes traffic
/// again.
fn sigkill_fails_only_calls_in_flight(fleet: &Fleet, report: &mut Report) {
    let killed = &fleet.daemons[1];
    let old_instance = fleet.instance(killed).expect("the daemon's instance");
    let before = fleet.chats();
    let slot = fleet
        .slot(killed)
        .expect("HAProxy's slot of the daemon")
        .name;
    let load = ChatLoad::start_stateless(&fleet.url(), LOAD_CLIENTS, LOAD_LATENCY_MS);
    stretch(&load, "the load to run");

    let kill_at = Instant::now();
    compose::docker(&["kill", "-s", "SIGKILL", &killed.id]);
    let killed_at = Instant::now();
    let out = wait_for(
        "HAProxy to take the killed daemon out",
        CONTAINER_PATIENCE,
        || {
            fleet
                .stats()
                .server(BACKEND, &slot)
                .filter(|s| s.is_out())
                .cloned()
        },
    );
    let out_in = kill_at.elapsed();
    let failed_at_kill = load.failed();
    stretch(&load, "the load to go on without it");

    let up_at = Instant::now();
    up(fleet.project);
    fleet.wait_in_rotation(&fleet.daemons.iter().collect::<Vec<_>>());
    let back_in = up_at.elapsed();
    let taking = fleet.wait_answering(killed, &old_instance);
    let traffic_in = up_at.elapsed();
    stretch(&load, "the load to go on with three again");
    let result = load.stop();

    let late: Vec<_> = result
        .failures
        .iter()
        .filter(|f| f.sent_at >= killed_at)
        .collect();
    assert!(
        late.is_empty(),
        "calls sent after the kill failed (the balancer should have sent them elsewhere): {late:?}"
    );
    assert!(
        result.failed as usize <= LOAD_CLIENTS,
        "more calls failed than could have been in flight: {:?}",
        result.failures
    );
    assert_eq!(
        result.failed, failed_at_kill,
        "calls failed after HAProxy took the daemon out: {:?}",
        result.failures
    );
    // Cut short by the daemon's death: HAProxy closes the client's kept-alive connection
    // without an answer (or says 502 on a first request), never a refusal of its own.
    let unanswered = |what: &str| {
        what.contains("closed after 0 bytes of head")
            || what.contains("reset by peer")
            || what.contains("HTTP 502")
    };
    assert!(
        result.failures.iter().all(|f| unanswered(&f.what)),
        "{:?}",
        result.failures
    );
    // What the clients saw instead of an answer, by kind.
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for failure in &result.failures {
        let what = failure.what.split_once("]: ").map_or("", |(_, what)| what);
        *kinds.entry(what.chars().take(40).collect()).or_default() += 1;
    }
    // The restarted daemon counts from zero (a new process); the others went on.
    let after = fleet.chats();
    let index = killed.index - 1;
    let counts: Vec<Option<i64>> = (0..DAEMONS)
        .map(|i| Some(after[i] as i64 - if i == index { 0 } else { before[i] as i64 }))
        .collect();
    report.row(
        "SIGKILL daemon #2 under load, then up",
        Some(Chats {
            sent: result.sent,
            failed: result.failed,
        }),
        &counts,
        format!(
            "{:.0} chats/s; failed: {} sent before the kill {kinds:?}; HAProxy: {slot} {} ({}); back as {} UP (#2 counted since its restart)",
            result.rate(),
            result.failed,
            out.status,
            out.check,
            taking.1.name,
        ),
        vec![
            ("out of rotation", out_in),
            ("up → in rotation", back_in),
            ("up → answering", traffic_in),
        ],
    );
}

/// The monitoring profile: Prometheus finds HAProxy (job `haproxy`) and the agent (job
/// `exai-agent`) through Docker's DNS, sees the three daemons in rotation again, and the
/// fleet's rules expect three daemons (from HAProxy) and count three connected.
fn prometheus_scrapes_haproxy_and_the_agent(fleet: &Fleet, report: &mut Report) {
    let started = Instant::now();
    let prometheus = fleet.project.port("prometheus", 9090, 1);
    let active =
        format!("sum(haproxy_backend_active_servers{{job=\"haproxy\",proxy=\"{BACKEND}\"}})");
    wait_for(
        "Prometheus to see three daemons in HAProxy's rotation",
        CONTAINER_PATIENCE,
        || (prometheus_scalar(prometheus, &active) == Some(DAEMONS as f64)).then_some(()),
    );
    let scraped_in = started.elapsed();
    assert_eq!(
        prometheus_scalar(prometheus, r#"sum(up{job="haproxy"})"#),
        Some(1.0)
    );
    wait_for("Prometheus to scrape the agent", CONTAINER_PATIENCE, || {
        (prometheus_scalar(prometheus, r#"sum(up{job="exai-agent"})"#) == Some(1.0)).then_some(())
    });
    assert_eq!(
        prometheus_scalar(prometheus, r#"count(up{job="exai-agent"})"#),
        Some(1.0),
        "one agent found by name"
    );
    // The fleet's recording rules (compose/prometheus/rules.yml) take the number of
    // daemons expected from HAProxy's servers when no count is configured: its empty
    // server-template slots (MAINT) are not counted.
    let expected = r#"exai:daemons_expected:count{source="haproxy"}"#;
    wait_for(
        "the rules to expect three daemons from HAProxy's servers",
        CONTAINER_PATIENCE,
        || (prometheus_scalar(prometheus, expected) == Some(DAEMONS as f64)).then_some(()),
    );
    let connected = r#"exai:exai_pipe_daemon_connected:sum"#;
    wait_for(
        "the rules to count three daemons connected",
        CONTAINER_PATIENCE,
        || (prometheus_scalar(prometheus, connected) == Some(DAEMONS as f64)).then_some(()),
    );
    let ruled_in = started.elapsed();
    report.row(
        "--profile monitoring",
        None,
        &[],
        "Prometheus: up{job=haproxy} 1, 3 active servers; up{job=exai-agent} 1 (DNS discovery); rules: 3 expected (source haproxy), 3 connected"
            .into(),
        vec![("until seen", scraped_in), ("until ruled", ruled_in)],
    );
}

/// Waits until the load has answered LOAD_STRETCH more chats.
fn stretch(load: &ChatLoad, what: &str) {
    let from = load.answered();
    wait_for(what, CONTAINER_PATIENCE, || {
        (load.answered() >= from + LOAD_STRETCH).then_some(())
    });
}

/// Chats counted by the agent whose series have all of `labels`.
fn chat_count(scrape: &Scrape, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("method", "call_tool"), ("endpoint", "chat")];
    all.extend_from_slice(labels);
    scrape.sum("mcp_requests_total", &all)
}

/// What each daemon's count grew by.
fn delta(before: &[u64], after: &[u64]) -> Vec<Option<i64>> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| Some(*a as i64 - *b as i64))
        .collect()
}

/// The number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line saying {needle:?} in:\n{text}"))
}

/// Chats a step sent, and how many of them failed.
struct Chats {
    sent: u64,
    failed: u64,
}

impl Chats {
    fn answered(sent: u64) -> Self {
        Self { sent, failed: 0 }
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<Vec<String>>,
}

impl Report {
    fn note(&mut self, step: &str, seen: String) {
        self.row(step, None, &[], seen, vec![]);
    }

    /// One step: its chats, what each daemon answered of them (by the daemons' order),
    /// what was seen, and how long each recovery took.
    fn row(
        &mut self,
        step: &str,
        chats: Option<Chats>,
        per_daemon: &[Option<i64>],
        seen: String,
        recovery: Vec<(&str, Duration)>,
    ) {
        let (sent, failed) = match chats {
            Some(c) => (c.sent.to_string(), c.failed.to_string()),
            None => ("-".into(), "-".into()),
        };
        let per_daemon = match per_daemon {
            [] => "-".to_string(),
            counts => counts
                .iter()
                .map(|c| c.map_or("-".to_string(), |c| c.to_string()))
                .collect::<Vec<_>>()
                .join(" / "),
        };
        let recovery = match &recovery[..] {
            [] => "-".to_string(),
            parts => parts
                .iter()
                .map(|(what, took)| format!("{what} {:.1}", took.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
        };
        self.rows
            .push(vec![step.into(), sent, failed, per_daemon, seen, recovery]);
    }

    fn print(&self, tool: ComposeTool, project: &str, took: Duration) {
        let header = [
            "step",
            "chats sent",
            "failed",
            "answered by #1 / #2 / #3",
            "seen",
            "seconds",
        ];
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
        let line = |cells: &[&str]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let mut out = format!(
            "\ncompose fleet ({}, project {project}), {:.0} s in all:\n{}\n{}\n",
            tool.spelling(),
            took.as_secs_f64(),
            line(&header),
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-|-")
        );
        for row in &self.rows {
            out.push_str(&line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
            out.push('\n');
        }
        compose::show(&out);
    }
}
