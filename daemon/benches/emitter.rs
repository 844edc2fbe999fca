//! What recording costs the request path: not sampled, sampled and queued, queue full.
//! Run: cargo bench -p exai-daemon --bench emitter

use criterion::{criterion_group, criterion_main, Criterion};
use exai_daemon::{EventEmitter, Recorded, Totals};
use exai_proto::event::Direction;
use exai_proto::{CorrelationId, EventKind, SampleClass, SamplingPolicy};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn ws() -> EventKind {
    EventKind::WsMessage {
        direction: Direction::Inbound,
        bytes: black_box(512),
    }
}

fn record(c: &mut Criterion) {
    let correlation = CorrelationId::new("4bf92f3577b34da6a3ce929d0e0e4736");
    let mut group = c.benchmark_group("record");

    // A rate so high that, after the first event, nothing is sampled.
    let policy = SamplingPolicy::default().with_rate(SampleClass::WsMessages, u32::MAX);
    let emitter = EventEmitter::new(policy, 1024, Totals::new(&[]));
    emitter.record(SampleClass::WsMessages, &correlation, ws);
    group.bench_function("not_sampled", |b| {
        b.iter(|| {
            let r = emitter.record(SampleClass::WsMessages, black_box(&correlation), ws);
            debug_assert_eq!(r, Recorded::NotSampled);
            r
        })
    });

    // Every event sampled and queued; the queue is emptied between timed runs.
    const CAPACITY: usize = 1 << 16;
    let emitter = EventEmitter::new(SamplingPolicy::keep_all(), CAPACITY, Totals::new(&[]));
    let mut sink = Vec::with_capacity(CAPACITY);
    group.bench_function("sampled_queued", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CAPACITY as u64);
                let start = Instant::now();
                for _ in 0..n {
                    black_box(emitter.record(SampleClass::WsMessages, black_box(&correlation), ws));
                }
                elapsed += start.elapsed();
                sink.clear();
                emitter.drain_into(&mut sink, CAPACITY);
                left -= n;
            }
            elapsed
        })
    });

    // Sampled, but the queue is full: dropped and counted.
    let emitter = EventEmitter::new(SamplingPolicy::keep_all(), 1, Totals::new(&[]));
    emitter.record(SampleClass::WsMessages, &correlation, ws);
    group.bench_function("queue_full", |b| {
        b.iter(|| {
            let r = emitter.record(SampleClass::WsMessages, black_box(&correlation), ws);
            debug_assert_eq!(r, Recorded::Dropped);
            r
        })
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
