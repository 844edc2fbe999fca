//! Ingest with the agent's real sinks (metrics, daemon link, dashboard), with no dashboard
//! client, then with 50 clients reading `/ws`, then with none again: clients must not
//! slow ingestion. Compare the three in one run.
//! Run: cargo bench -p exai-tests --bench dashboard_ingest

mod common;

use common::CountingSink;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exai_agent::config::DashboardConfig;
use exai_agent::dashboard::{self, Dashboard};
use exai_agent::health::link::DaemonLink;
use exai_agent::metrics::instances::Instances;
use exai_agent::metrics::pipe::PipeMetrics;
use exai_agent::metrics::service::ServiceMetrics;
use exai_agent::sink::{FanOut, Increases};
use exai_agent::{health, http_server, listener, EventSink};
use exai_daemon::pipe_writer::{self, DaemonIdentity, WriterConfig};
use exai_daemon::{EventEmitter, Totals};
use exai_proto::event::{
    CallStatus, Direction, McpMethod, Provider, RequestStatus, Tool, Transport,
};
use exai_proto::{EventKind, SamplingPolicy};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Mostly messages, some requests and model calls, as under MCP load.
fn event(i: u64) -> EventKind {
    match i % 8 {
        0 => EventKind::ProviderCall {
            provider: Provider::Glm,
            model: "glm-4.5-flash".into(),
            status: CallStatus::Success,
            latency_us: 800_000 + i % 1000,
            ttft_us: Some(120_000),
            input_tokens: 250,
            output_tokens: 600,
            attempts: 1,
            bytes: 4096,
        },
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
    let instances = Arc::new(Instances::new(64, Duration::from_secs(600)));
    let pipe = Arc::new(PipeMetrics::new(&registry, instances));
    let service = Arc::new(ServiceMetrics::new(&registry));
    let link = Arc::new(DaemonLink::default());
    let (_publish, health) = tokio::sync::watch::channel(Arc::new(health::not_checked_yet(
        &exai_agent::config::AgentConfig::load(&[("X", "1")], &Default::default())
            .unwrap()
            .health_checks,
    )));
    let config = DashboardConfig {
        static_dir: None,
        max_clients: 100,
        client_queue: 64,
        events_per_second: 50,
    };
    let dashboard = Arc::new(Dashboard::new(
        config,
        &registry,
        pipe.clone(),
        health,
        chrono_tz::UTC,
    ));
    let counted = Arc::new(CountingSink::default());
    let sinks: Vec<Arc<dyn EventSink>> = vec![counted.clone(), service, link, dashboard.clone()];

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
            Arc::new(Increases::new(FanOut(sinks))),
            pipe,
            cancel.clone(),
        ));
        port
    });

    let emitter = EventEmitter::new(SamplingPolicy::keep_all(), 1 << 16, Totals::new(&[]));
    runtime.spawn(pipe_writer::run(
        emitter.clone(),
        DaemonIdentity::current(),
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
