//! Ingest with the agent's real work (the daemon's record and series, the dashboard), with no dashboard
//! client, then with 50 clients reading `/ws`, then with none again: clients must not
//! slow ingestion. Compare the three in one run.
//! Run: cargo bench -p exai-tests --bench dashboard_ingest

mod common;

use common::{CountingSink, Tee};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exai_agent::config::DashboardConfig;
use exai_agent::dashboard::{self, Dashboard};
use exai_agent::health::Health;
use exai_agent::{http_server, listener};
use exai_daemon::pipe_writer::{self, DaemonIdentity, WriterConfig};
use exai_daemon::views::NoDependencies;
use exai_daemon::{EventEmitter, Totals};
use exai_proto::event::{Direction, McpMethod, RequestStatus, Tool, Transport};
use exai_proto::{EventKind, SamplingPolicy};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Mostly messages, some requests and model calls, as under MCP load.
fn event(i: u64) -> EventKind {
    match i % 8 {
        0 => common::provider_call(i),
        1 => EventKind::McpRequest {
            transport: Transport::WebSocket,
            method: McpMethod::ToolsCall,
            tool: Tool::Chat,
            status: RequestStatus::Success,
            duration_us: 900 + i % 500,
        },
        _ => EventKind::WsMessage {
            direction: Direction::Inbound,
            bytes: (i % 2000) as u32,
        },
    }
}

const EVENTS_PER_ITER: u64 = 200_000;
const CLIENTS: usize = 50;

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancellationToken::new();

    let registry = exai_agent::metrics::Registry::new();
    let daemons = common::daemons(&registry);
    let health_config = exai_agent::config::AgentConfig::load(&[("X", "1")], &Default::default())
        .unwrap()
        .health_checks;
    let (_publish, findings) = tokio::sync::watch::channel(Arc::default());
    let health = Arc::new(Health::new(health_config, daemons.clone(), findings));
    let config = DashboardConfig {
        static_dir: None,
        max_clients: 100,
        client_queue: 64,
        events_per_second: 50,
    };
    let dashboard = Arc::new(Dashboard::new(config, &registry, daemons.clone(), health));
    let counted = Arc::new(CountingSink::default());

    let port = runtime.block_on(async {
        let http = http_server::bind("MONITORING_PORT", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = http.local_addr().unwrap().port();
        tokio::spawn(http_server::serve(
            http,
            dashboard::server::handler(dashboard.clone(), true, cancel.clone()),
            cancel.clone(),
        ));
        tokio::spawn(dashboard.clone().run(cancel.clone()));
        let events = listener::bind(&socket).unwrap();
        tokio::spawn(listener::serve(
            events,
            daemons,
            Arc::new(Tee(dashboard.clone(), counted.clone())),
            256,
            cancel.clone(),
        ));
        port
    });

    let emitter = EventEmitter::new(SamplingPolicy::keep_all(), 1 << 16, Totals::new(&[]));
    runtime.spawn(pipe_writer::run(
        emitter.clone(),
        DaemonIdentity::current("bench".into()),
        Arc::new(NoDependencies),
        WriterConfig::new(socket),
        cancel.clone(),
    ));
    while !emitter.stats().connected {
        std::thread::sleep(Duration::from_millis(5));
    }

    let run = |b: &mut criterion::Bencher| {
        b.iter_custom(|iters| common::drive(&emitter, &counted, EVENTS_PER_ITER, iters, event))
    };

    let mut group = c.benchmark_group("dashboard");
    group.throughput(Throughput::Elements(EVENTS_PER_ITER));
    group.sample_size(20);
    group.bench_function("ingest_no_clients", run);

    // Fifty clients that read every frame, as browsers would.
    let frames = Arc::new(AtomicU64::new(0));
    let clients = CancellationToken::new();
    runtime.block_on(async {
        for _ in 0..CLIENTS {
            let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
                .await
                .expect("dashboard client connects");
            let (frames, stop) = (frames.clone(), clients.clone());
            tokio::spawn(async move {
                let (_tx, mut rx) = ws.split();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        frame = rx.next() => match frame {
                            Some(Ok(_)) => { frames.fetch_add(1, Ordering::Relaxed); }
                            _ => return,
                        },
                    }
                }
            });
        }
    });
    let before = frames.load(Ordering::Relaxed);
    group.bench_function("ingest_50_clients", run);
    let received = frames.load(Ordering::Relaxed) - before;
    assert!(
        received >= CLIENTS as u64,
        "the clients were live: {received} frames"
    );
    eprintln!("dashboard clients received {received} frames during the 50-client run");
    clients.cancel();

    group.bench_function("ingest_no_clients_again", run);
    group.finish();
    cancel.cancel();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
