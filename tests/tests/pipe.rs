//! The event pipe end to end: the daemon's emitter and writer, a real socket, the real
//! agent binary.

use exai_daemon::pipe_writer::{self, DaemonIdentity, WriterConfig};
use exai_daemon::views::NoDependencies;
use exai_daemon::{EventEmitter, Recorded, Totals};
use exai_proto::event::Direction;
use exai_proto::frame;
use exai_proto::{CorrelationId, EventKind, Hello, SampleClass, SamplingPolicy};
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn ws_event() -> EventKind {
    EventKind::WsMessage {
        direction: Direction::Inbound,
        bytes: 120,
    }
}

fn received(agent: &Agent, instance: &str) -> f64 {
    agent
        .scrape()
        .sum("exai_pipe_events_received_total", &[("daemon", instance)])
}

/// (a) No agent: `record` never waits for anything, and every event is counted dropped.
#[test]
fn without_an_agent_recording_never_blocks_and_every_drop_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-listens.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let emitter = EventEmitter::new(SamplingPolicy::keep_all(), 1024, Totals::new(&[]));
        let cancel = CancellationToken::new();
        let writer = tokio::spawn(pipe_writer::run(
            emitter.clone(),
            DaemonIdentity::current("no-agent".into()),
            Arc::new(NoDependencies),
            WriterConfig::new(socket.clone()),
            cancel.clone(),
        ));
        // The writer shares this one thread, so it cannot drain while the loop runs:
        // every record past the queue's capacity must be answered at once as a drop.
        let correlation = CorrelationId::new("req-1");
        let mut queued = 0;
        for _ in 0..100_000 {
            if emitter.record(SampleClass::WsMessages, &correlation, ws_event) == Recorded::Queued {
                queued += 1;
            }
        }
        assert_eq!(queued, 1024);
        assert_eq!(emitter.dropped().queue_full, 100_000 - 1024);

        // Now the writer runs, finds no agent, and drops the queue as `disconnected`.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while emitter.dropped().disconnected < 1024 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "writer never drained: {:?}",
                emitter.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = emitter.stats();
        assert_eq!(stats.dropped.disconnected, 1024);
        assert_eq!(stats.queue_depth, 0);
        assert!(!stats.connected);
        assert_eq!(stats.next_seq, 0, "nothing was written");

        // Recording still works after all that.
        assert_eq!(
            emitter.record(SampleClass::WsMessages, &correlation, ws_event),
            Recorded::Queued
        );
        cancel.cancel();
        writer.await.unwrap();
    });
}

/// (a) The daemon binary starts and keeps running without an agent, and joins one that
/// starts later.
#[test]
fn the_daemon_runs_without_an_agent_and_connects_when_one_starts() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let mut daemon = Daemon::start(&socket);
    daemon.proc.wait_for_log("agent not reachable");
    assert!(daemon.proc.is_running(), "daemon exited without an agent");

    let agent = Agent::start(&socket);
    agent
        .proc
        .wait_for_log(&format!("daemon connected daemon={}", daemon.name));
    // Heartbeats arrive once a second.
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v >= 2.0,
    );
    assert_eq!(
        agent
            .scrape()
            .sum("exai_pipe_events_lost_total", &[("daemon", &daemon.name)]),
        0.0
    );
}

/// (b) The agent is SIGKILLed while events stream; a new agent starts on the same
/// socket. The daemon reconnects, events flow again, and the new agent's gap count is
/// exactly what the daemon wrote and no agent confirmed. Every recorded event is
/// accounted for once: delivered, lost by gap, or dropped with a reason.
#[test]
fn agent_killed_mid_stream_then_restarted_counts_exactly_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let mut first = Agent::start(&socket);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emitter = EventEmitter::new(SamplingPolicy::keep_all(), 1 << 16, Totals::new(&[]));
    let identity = DaemonIdentity::current("killed-mid-stream".into());
    let instance = identity.name.clone();
    let cancel = CancellationToken::new();
    let writer = runtime.spawn(pipe_writer::run(
        emitter.clone(),
        identity,
        Arc::new(NoDependencies),
        WriterConfig::new(socket.clone()),
        cancel.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(AtomicU64::new(0));
    let producer = {
        let (emitter, stop, recorded) = (emitter.clone(), stop.clone(), recorded.clone());
        std::thread::spawn(move || {
            let correlation = CorrelationId::new("stream");
            // About 100,000 events a second, for as long as the test needs.
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..100 {
                    emitter.record(SampleClass::WsMessages, &correlation, ws_event);
                }
                recorded.fetch_add(100, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    first.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &instance)],
        |v| v >= 20_000.0,
    );
    first.proc.kill_hard();
    wait_for("the writer to notice the agent is gone", PATIENCE, || {
        (!emitter.stats().connected).then_some(())
    });
    let down = emitter.stats();

    let second = Agent::start(&socket);
    let back = wait_for("the daemon to reconnect", PATIENCE, || {
        let s = emitter.stats();
        (s.connections_made == 2).then_some(s)
    });
    let (hello_next, hello_acked) = back.last_hello;
    assert_eq!(
        hello_acked, down.acked_seq,
        "nothing can be acknowledged while no agent runs"
    );
    second.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &instance)],
        |v| v >= 20_000.0,
    );

    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    cancel.cancel();
    runtime.block_on(writer).unwrap();
    let end = emitter.stats();
    assert_eq!(end.queue_depth, 0);

    let scrape = wait_for(
        "the agent to account for every written event",
        PATIENCE,
        || {
            let s = second.scrape();
            let got = s.sum("exai_pipe_events_received_total", &[("daemon", &instance)])
                + s.sum("exai_pipe_events_lost_total", &[("daemon", &instance)]);
            (got as u64 == end.next_seq - hello_acked).then_some(s)
        },
    );
    let lost = scrape.sum("exai_pipe_events_lost_total", &[("daemon", &instance)]) as u64;
    let got = scrape.sum("exai_pipe_events_received_total", &[("daemon", &instance)]) as u64;
    assert_eq!(
        lost,
        hello_next - hello_acked,
        "lost = written to the dead agent and never acknowledged"
    );
    assert_eq!(
        got,
        end.next_seq - hello_next,
        "everything written to the new agent arrived"
    );
    let recorded = recorded.load(Ordering::Relaxed);
    assert_eq!(
        recorded + end.heartbeats,
        end.dropped.total() + end.next_seq,
        "every recorded event and heartbeat was written or counted dropped: {end:?}"
    );
    // The daemon's own drop counts reached the agent through the final heartbeat.
    assert_eq!(
        scrape.sum(
            "exai_pipe_daemon_dropped_events_total",
            &[("daemon", &instance)]
        ) as u64,
        end.dropped.total()
    );
}

/// (b) The same with the real daemon binary: after the agent is killed and restarted,
/// the daemon is back on the pipe and its heartbeats flow again.
#[test]
fn the_daemon_binary_reconnects_after_the_agent_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let mut first = Agent::start(&socket);
    let daemon = Daemon::start(&socket);
    first.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v >= 1.0,
    );
    first.proc.kill_hard();

    let second = Agent::start(&socket);
    second
        .proc
        .wait_for_log(&format!("daemon connected daemon={}", daemon.name));
    second.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v >= 2.0,
    );
    assert_eq!(
        second
            .scrape()
            .sum("exai_pipe_daemon_connected", &[("daemon", &daemon.name)]),
        1.0
    );
}

/// (c) Two daemons feed one agent at once, each under its own `daemon` label.
#[test]
fn two_daemons_feed_one_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let one = Daemon::start(&socket);
    let mut two = Daemon::start(&socket);
    assert_ne!(one.instance_id, two.instance_id);
    for d in [&one, &two] {
        agent.wait_metric(
            "exai_pipe_events_received_total",
            &[("daemon", &d.name)],
            |v| v >= 2.0,
        );
        assert_eq!(
            agent
                .scrape()
                .sum("exai_pipe_daemon_connected", &[("daemon", &d.name)]),
            1.0
        );
    }
    assert!(two.proc.terminate().success());
    agent.wait_metric(
        "exai_pipe_daemon_connected",
        &[("daemon", &two.name)],
        |v| v == 0.0,
    );
    let before = received(&agent, &one.name);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &one.name)],
        |v| v > before,
    );
    assert_eq!(
        agent
            .scrape()
            .sum("exai_pipe_daemon_connected", &[("daemon", &one.name)]),
        1.0
    );
}

/// A daemon that writes its last batches and closes at once, never reading the
/// acknowledgements, has every event counted: the agent's acknowledgement finds it gone,
/// and what it wrote before closing is still read and counted.
#[test]
fn batches_written_just_before_the_daemon_closes_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let hello = Hello {
        instance_id: "closes-at-once".into(),
        name: "closes-at-once".into(),
        ..a_hello()
    };
    let mut wire = Vec::new();
    frame::encode_hello(&hello, &mut wire);
    // Many frames, so that the agent reads (and acknowledges) them in several goes.
    let batch: Vec<exai_proto::Event> = (0..50)
        .map(|_| exai_proto::Event {
            at_unix_us: 1,
            correlation: CorrelationId::new("last-words"),
            weight: 1,
            kind: ws_event(),
        })
        .collect();
    for i in 0..200u64 {
        frame::encode_batch(i * 50, &batch, &mut wire).unwrap();
    }
    let mut conn = UnixStream::connect(&socket).unwrap();
    conn.write_all(&wire).unwrap();
    drop(conn);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", "closes-at-once")],
        |v| v == 10_000.0,
    );
}

fn a_hello() -> Hello {
    Hello {
        instance_id: "test-peer".into(),
        name: "test-peer".into(),
        pid: std::process::id(),
        version: "0.0.0".into(),
        started_at_unix_ms: 0,
        sampling: SamplingPolicy::default(),
        next_seq: 0,
        acked_seq: 0,
        models: vec![],
    }
}

/// Writes `bytes` on a fresh connection and waits for the agent to close it.
fn send_and_expect_close(socket: &Path, bytes: &[u8]) {
    let mut conn = UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    // The agent may close while we are still writing; that is what we wait for anyway.
    let _ = conn.write_all(bytes);
    let mut buf = [0u8; 64];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the agent did not close the connection: {e}"),
        }
    }
}

/// (d) A Hello with another protocol version is refused, with a log line that says so.
#[test]
fn a_wrong_protocol_version_is_refused_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let mut wire = Vec::new();
    frame::encode_hello_as_version(99, &a_hello(), &mut wire);
    send_and_expect_close(&socket, &wire);

    let line = agent.proc.wait_for_log("unsupported protocol version 99");
    assert!(line.contains("this side speaks version 2"), "{line}");
    assert!(
        line.contains("reason=\"bad_version\"") || line.contains("reason=bad_version"),
        "{line}"
    );
    assert_eq!(
        agent.scrape().sum(
            "exai_pipe_frames_rejected_total",
            &[("reason", "bad_version")]
        ),
        1.0
    );

    // A daemon that speaks the right version is served.
    let daemon = Daemon::start(&socket);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v >= 1.0,
    );
}

/// (e) Garbage on the socket closes that connection only; a connected daemon keeps
/// flowing and new daemons are still accepted.
#[test]
fn garbage_on_the_socket_does_not_stop_the_agent_serving_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let daemon = Daemon::start(&socket);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v >= 1.0,
    );

    // A plausible length, then noise where a Hello should be.
    let mut noise = 64u32.to_le_bytes().to_vec();
    noise.extend((0..64u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    send_and_expect_close(&socket, &noise);
    // A valid Hello, then a frame claiming 4 GiB.
    let mut wire = Vec::new();
    frame::encode_hello(&a_hello(), &mut wire);
    wire.extend_from_slice(&u32::MAX.to_le_bytes());
    send_and_expect_close(&socket, &wire);
    // A valid Hello, then a well-sized frame whose payload is not a batch.
    let mut wire = Vec::new();
    let mut hello = a_hello();
    hello.instance_id = "test-peer-2".into();
    hello.name = "test-peer-2".into();
    frame::encode_hello(&hello, &mut wire);
    wire.extend_from_slice(&16u32.to_le_bytes());
    wire.extend_from_slice(&[0xFF; 16]);
    send_and_expect_close(&socket, &wire);

    let scrape = agent.scrape();
    for reason in ["bad_magic", "bad_length", "bad_payload"] {
        assert_eq!(
            scrape.sum("exai_pipe_frames_rejected_total", &[("reason", reason)]),
            1.0,
            "{reason}"
        );
    }
    let before = received(&agent, &daemon.name);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v > before,
    );
    let late = Daemon::start(&socket);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &late.name)],
        |v| v >= 1.0,
    );
}

/// A peer that connects and says nothing is closed, and counted, rather than kept.
#[test]
fn a_peer_that_never_says_hello_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    send_and_expect_close(&socket, &[]);
    assert_eq!(
        agent
            .scrape()
            .sum("exai_pipe_frames_rejected_total", &[("reason", "no_hello")]),
        1.0
    );
    agent.proc.wait_for_log("no Hello within 10s");
}

/// A daemon newer than this agent — one more tool, status and event kind, fields this
/// agent does not know — is read, not refused: the known events are counted and applied,
/// the unknown ones counted as such, and the connection is kept.
#[test]
fn a_newer_daemons_stream_is_read_and_what_is_unknown_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let newer = exai_proto::fixture::newer_daemon("newer-1", "newer-daemon", 0);
    let mut conn = UnixStream::connect(&socket).unwrap();
    conn.write_all(&newer.wire).unwrap();
    let mine = [("daemon", "newer-daemon")];
    agent.wait_metric("exai_pipe_events_received_total", &mine, |v| {
        v == newer.batch_len as f64
    });
    let scrape = agent.scrape();
    let received = |kind| {
        scrape.sum(
            "exai_pipe_events_received_total",
            &[("daemon", "newer-daemon"), ("kind", kind)],
        )
    };
    assert_eq!(received("mcp_request"), 1.0);
    assert_eq!(received("heartbeat"), 1.0);
    assert_eq!(received("ws_message"), 1.0);
    assert_eq!(received("unknown"), f64::from(newer.unknown_kinds));
    let unknown = |what| {
        scrape.sum(
            "exai_pipe_unknown_total",
            &[("daemon", "newer-daemon"), ("what", what)],
        )
    };
    assert_eq!(unknown("event_kind"), f64::from(newer.unknown_kinds));
    // The Hello's appended field, and the batch's.
    assert_eq!(unknown("field"), f64::from(newer.unknown_fields + 1));
    assert_eq!(unknown("label_value"), f64::from(newer.unknown_labels));
    // The heartbeat's totals hold a tool this agent does not know: counted under `other`.
    assert_eq!(
        scrape.sum(
            "mcp_requests_total",
            &[("daemon", "newer-daemon"), ("endpoint", "other")]
        ),
        newer.heartbeat_requests as f64
    );
    assert_eq!(scrape.sum("exai_pipe_frames_rejected_total", &[]), 0.0);
    assert_eq!(scrape.sum("exai_pipe_events_lost_total", &mine), 0.0);
    // Still connected: the agent acknowledged the whole batch and kept the link.
    let mut ack = [0u8; 16];
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let n = conn.read(&mut ack).unwrap();
    assert!(n > 0, "an acknowledgement");
    assert_eq!(agent.scrape().sum("exai_pipe_daemon_connected", &mine), 1.0);
}

/// Past EXAI_PIPE_MAX_CONNECTIONS, a new connection is closed at once and counted; the
/// connected daemons are not disturbed.
#[test]
fn connections_past_the_cap_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start_with(&socket, &[("EXAI_PIPE_MAX_CONNECTIONS", "2".into())]);
    let daemon = Daemon::start(&socket);
    agent.wait_metric(
        "exai_pipe_daemon_connected",
        &[("daemon", &daemon.name)],
        |v| v == 1.0,
    );
    // Holds the second place without saying anything.
    let _quiet = UnixStream::connect(&socket).unwrap();
    agent.wait_metric("exai_pipe_connections_total", &[], |v| v == 2.0);
    let mut third = UnixStream::connect(&socket).unwrap();
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(third.read(&mut buf).unwrap_or(0), 0, "closed at once");
    agent.wait_metric(
        "exai_pipe_frames_rejected_total",
        &[("reason", "too_many_connections")],
        |v| v == 1.0,
    );
    let before = received(&agent, &daemon.name);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v > before,
    );
}

/// Before its Hello a peer may not make the agent buffer more than a Hello's worth.
#[test]
fn a_hello_larger_than_its_limit_is_refused_before_it_is_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let claimed = (frame::MAX_HELLO_LEN as u32) + 1;
    send_and_expect_close(&socket, &claimed.to_le_bytes());
    agent.wait_metric(
        "exai_pipe_frames_rejected_total",
        &[("reason", "bad_length")],
        |v| v == 1.0,
    );
}

/// A hostile or broken daemon whose running totals sit at the top of u64 — twice, so
/// that any sum would overflow — does not panic the agent (these tests run a debug build,
/// where overflow panics): the counts saturate and the agent keeps serving.
#[test]
fn totals_near_u64_max_saturate_and_the_agent_keeps_serving() {
    use exai_proto::heartbeat::{ProviderTotal, RequestTotal};
    use exai_proto::{CallStatus, Heartbeat, McpMethod, Provider, RequestStatus, Tool, Transport};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let mut agent = Agent::start(&socket);
    let mut hb = Heartbeat::default();
    for tool in [Tool::Version, Tool::Other, Tool::Other] {
        hb.totals.requests.push(RequestTotal {
            transport: Transport::WebSocket,
            method: McpMethod::ToolsCall,
            tool,
            status: RequestStatus::Success,
            count: u64::MAX,
        });
    }
    for model in ["a", "b"] {
        hb.totals.provider_calls.push(ProviderTotal {
            provider: Provider::Glm,
            model: model.into(),
            status: CallStatus::Success,
            calls: u64::MAX,
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            reasoning_tokens: u64::MAX,
            cached_tokens: u64::MAX,
        });
    }
    hb.pipe.dropped.queue_full = u64::MAX;
    hb.pipe.dropped.write_error = u64::MAX;
    hb.supabase.enabled = true;
    hb.supabase.spool_depth = u64::MAX;
    let beat = exai_proto::Event {
        at_unix_us: u64::MAX,
        correlation: CorrelationId::empty(),
        weight: u32::MAX,
        kind: EventKind::Heartbeat(Box::new(hb)),
    };
    let hello = Hello {
        instance_id: "huge".into(),
        name: "huge".into(),
        next_seq: u64::MAX - 4,
        acked_seq: 0,
        ..a_hello()
    };
    let mut wire = Vec::new();
    frame::encode_hello(&hello, &mut wire);
    frame::encode_batch(u64::MAX - 4, &[beat.clone(), beat], &mut wire).unwrap();
    let mut conn = UnixStream::connect(&socket).unwrap();
    conn.write_all(&wire).unwrap();
    let mine = [("daemon", "huge")];
    agent.wait_metric("exai_pipe_events_received_total", &mine, |v| v == 2.0);
    let scrape = agent.scrape();
    let max = u64::MAX as f64;
    assert_eq!(
        scrape.sum(
            "mcp_requests_total",
            &[("daemon", "huge"), ("endpoint", "other")]
        ),
        max
    );
    assert_eq!(
        scrape.sum("exai_pipe_events_lost_total", &mine),
        (u64::MAX - 4) as f64
    );
    assert!(agent.proc.is_running(), "the agent survived");
    // And it still serves a real daemon.
    let daemon = Daemon::start(&socket);
    agent.wait_metric(
        "exai_pipe_events_received_total",
        &[("daemon", &daemon.name)],
        |v| v >= 1.0,
    );
}
