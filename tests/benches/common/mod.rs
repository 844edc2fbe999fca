//! What the ingest benchmarks share: the agent's registry of daemons, a sink that counts,
//! and the measured loop.

use exai_agent::daemons::{Daemons, DaemonsConfig};
use exai_agent::metrics::{Families, Registry};
use exai_agent::EventSink;
use exai_daemon::{EventEmitter, Recorded};
use exai_proto::{CorrelationId, Event, EventKind, SampleClass};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts what the agent dispatched.
#[derive(Default)]
pub struct CountingSink(pub AtomicU64);

impl EventSink for CountingSink {
    fn events(&self, _daemon: &str, events: &[Event]) {
        self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
    }
}

/// Hands each batch to `first`, then to the counter.
#[allow(dead_code)] // dashboard_ingest's; pipe_ingest counts alone
pub struct Tee(pub Arc<dyn EventSink>, pub Arc<CountingSink>);

impl EventSink for Tee {
    fn events(&self, daemon: &str, events: &[Event]) {
        self.0.events(daemon, events);
        self.1.events(daemon, events);
    }
}

/// The agent's registry of daemons with its default limits, its families in `registry`.
pub fn daemons(registry: &Registry) -> Arc<Daemons> {
    let families = Arc::new(Families::new(registry));
    Arc::new(Daemons::new(
        families,
        DaemonsConfig {
            ttl: Duration::from_secs(600),
            max_daemons: 64,
            max_models: 64,
        },
    ))
}

/// A model call, as the benchmarks send them.
pub fn provider_call(i: u64) -> EventKind {
    EventKind::ProviderCall(exai_proto::ProviderCall {
        provider: exai_proto::Provider::Glm,
        model: "glm-4.5-flash".into(),
        status: exai_proto::CallStatus::Success,
        latency_us: 800_000 + i % 1000,
        ttft_us: Some(120_000),
        ttfa_us: Some(120_000),
        input_tokens: 250,
        output_tokens: 600,
        attempts: 1,
        bytes: 4096,
        ..Default::default()
    })
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
