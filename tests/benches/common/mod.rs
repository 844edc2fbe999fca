//! What the ingest benchmarks share: a sink that counts, and the measured loop.

use exai_agent::{DaemonInfo, EventSink};
use exai_daemon::{EventEmitter, Recorded};
use exai_proto::{CorrelationId, Event, EventKind, SampleClass};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts what the agent dispatched.
#[derive(Default)]
pub struct CountingSink(pub AtomicU64);

impl EventSink for CountingSink {
    fn events(&self, _daemon: &DaemonInfo, events: &[Event]) {
        self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
    }
}

/// Records `per_iter` events of `event(i)` per iteration and waits until `sink` has
/// counted them: the time through the whole pipe.
pub fn drive(
    emitter: &EventEmitter,
    sink: &CountingSink,
    per_iter: u64,
    iters: u64,
    event: impl Fn(u64) -> EventKind,
) -> Duration {
    let correlation = CorrelationId::new("bench");
    let start = Instant::now();
    for _ in 0..iters {
        let target = sink.0.load(Ordering::Relaxed) + per_iter;
        let mut sent = 0;
        while sent < per_iter {
            // Producing faster than the pipe drains would only measure drops: on a full
            // queue, give the writer the core and try again.
            match emitter.record(SampleClass::WsMessages, &correlation, || event(sent)) {
                Recorded::Queued => sent += 1,
                _ => std::thread::yield_now(),
            }
        }
        // Heartbeats also arrive; they only make the target come sooner.
        while sink.0.load(Ordering::Relaxed) < target {
            std::thread::yield_now();
        }
    }
    start.elapsed()
}
