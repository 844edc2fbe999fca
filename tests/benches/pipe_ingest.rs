//! End-to-end ingest: EventEmitter → pipe writer → Unix socket → agent listener (decode,
//! the daemon's record and its series) → a sink that counts. Measures events per second
//! through the whole pipe.
//! Run: cargo bench -p exai-tests --bench pipe_ingest

mod common;

use common::CountingSink;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exai_agent::listener;
use exai_daemon::pipe_writer::{self, DaemonIdentity, WriterConfig};
use exai_daemon::views::NoDependencies;
use exai_daemon::{EventEmitter, Totals};
use exai_proto::event::Direction;
use exai_proto::{EventKind, SamplingPolicy};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A realistic mix: mostly WebSocket messages, some provider calls.
fn event(i: u64) -> EventKind {
    if i.is_multiple_of(8) {
        common::provider_call(i)
    } else {
        EventKind::WsMessage {
            direction: Direction::Inbound,
            bytes: (i % 2000) as u32,
        }
    }
}

const EVENTS_PER_ITER: u64 = 200_000;

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancellationToken::new();

    let sink = Arc::new(CountingSink::default());
    let daemons = common::daemons(&exai_agent::metrics::Registry::new());
    let agent_listener = runtime.block_on(async { listener::bind(&socket) }).unwrap();
    runtime.spawn(listener::serve(
        agent_listener,
        daemons,
        sink.clone(),
        256,
        cancel.clone(),
    ));

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

    let mut group = c.benchmark_group("pipe");
    group.throughput(Throughput::Elements(EVENTS_PER_ITER));
    group.sample_size(20);
    group.bench_function("ingest", |b| {
        b.iter_custom(|iters| common::drive(&emitter, &sink, EVENTS_PER_ITER, iters, event))
    });
    group.finish();
    cancel.cancel();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
