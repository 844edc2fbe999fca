//! The only observability object the request path touches.

use crate::clock::CoarseClock;
use crate::sampler;
use crate::totals::Totals;
use crossbeam_queue::ArrayQueue;
use exai_proto::heartbeat::{DropCounts, DropReason};
use exai_proto::{CorrelationId, Event, EventKind, ModelEntry, SampleClass, SamplingPolicy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// What became of one `record` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Not sampled: nothing was built or queued.
    NotSampled,
    Queued,
    /// Sampled, but the queue was full; counted as `queue_full`.
    Dropped,
}

/// Records sampled events into a bounded queue that the pipe writer drains. Cloning is
/// cheap; every clone feeds the same queue.
#[derive(Debug, Clone)]
pub struct EventEmitter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: ArrayQueue<Event>,
    pub(crate) policy: SamplingPolicy,
    pub(crate) clock: CoarseClock,
    pub(crate) totals: Totals,
    /// Written by `record` (queue_full) and the writer (the others), read by heartbeats.
    pub(crate) dropped: [AtomicU64; DropReason::COUNT],
    /// The fields below are written only by the pipe writer; they are atomics so that
    /// stats can be read from anywhere, not because anyone contends for them.
    pub(crate) writer: WriterState,
    /// The models the daemon serves, as announced to the agent.
    catalogue: Mutex<Arc<Catalogue>>,
}

/// The models the daemon serves, numbered so the writer can tell a change.
#[derive(Debug, Default, PartialEq)]
pub struct Catalogue {
    pub generation: u64,
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Default)]
pub(crate) struct WriterState {
    /// Events taken from the queue since start.
    pub(crate) accepted: AtomicU64,
    /// Heartbeats generated since start.
    pub(crate) heartbeats: AtomicU64,
    /// Sequence number of the next event to be written.
    pub(crate) next_seq: AtomicU64,
    /// Every event below this was acknowledged by an agent.
    pub(crate) acked_seq: AtomicU64,
    pub(crate) connected: AtomicBool,
    /// `next_seq` and `acked_seq` as sent in the latest Hello.
    pub(crate) hello_next_seq: AtomicU64,
    pub(crate) hello_acked_seq: AtomicU64,
    pub(crate) connections_made: AtomicU64,
}

/// A point-in-time view of the emitter and its writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmitterStats {
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub accepted: u64,
    pub heartbeats: u64,
    pub dropped: DropCounts,
    pub next_seq: u64,
    pub acked_seq: u64,
    pub connected: bool,
    /// How many times the writer connected to an agent.
    pub connections_made: u64,
    /// `(next_seq, acked_seq)` as sent in the latest Hello.
    pub last_hello: (u64, u64),
}

const NO_CORRELATION: CorrelationId = CorrelationId::empty();

impl EventEmitter {
    pub fn new(policy: SamplingPolicy, queue_capacity: usize, totals: Totals) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: ArrayQueue::new(queue_capacity.max(1)),
                policy,
                clock: CoarseClock::new(),
                totals,
                dropped: Default::default(),
                writer: WriterState::default(),
                catalogue: Mutex::default(),
            }),
        }
    }

    /// Records one occurrence of `class`. When it is not sampled this is a thread-local
    /// decrement and nothing else: `make` is not called. When it is, the event is pushed
    /// without blocking; a full queue drops it and counts `queue_full`.
    #[inline]
    pub fn record(
        &self,
        class: SampleClass,
        correlation: &CorrelationId,
        make: impl FnOnce() -> EventKind,
    ) -> Recorded {
        let Some(weight) = sampler::sample(class, self.shared.policy.rate(class)) else {
            return Recorded::NotSampled;
        };
        // Checked first so that a full queue costs two loads, not building the event and
        // the queue's full-path fence. A push can still find it full; that drops too.
        if self.shared.queue.is_full() {
            return self.dropped_queue_full();
        }
        let event = Event {
            at_unix_us: self.shared.clock.now_us(),
            correlation: *correlation,
            weight,
            kind: make(),
        };
        match self.shared.queue.push(event) {
            Ok(()) => Recorded::Queued,
            Err(_) => self.dropped_queue_full(),
        }
    }

    #[cold]
    fn dropped_queue_full(&self) -> Recorded {
        self.shared.dropped[DropReason::QueueFull.index()].fetch_add(1, Relaxed);
        Recorded::Dropped
    }

    /// [`record`](Self::record) for an event that belongs to no request.
    #[inline]
    pub fn record_uncorrelated(
        &self,
        class: SampleClass,
        make: impl FnOnce() -> EventKind,
    ) -> Recorded {
        self.record(class, &NO_CORRELATION, make)
    }

    /// The oldest queued event. The pipe writer is the one consumer in the daemon.
    pub(crate) fn pop(&self) -> Option<Event> {
        self.shared.queue.pop()
    }

    /// Moves up to `max` queued events into `out`, oldest first; returns how many.
    pub fn drain_into(&self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.shared.queue.pop() {
                Some(event) => out.push(event),
                None => break,
            }
            n += 1;
        }
        n
    }

    /// Sets the models announced to the agent (in the next Hello, and at once to a
    /// connected agent when they changed).
    pub fn announce_models(&self, models: Vec<ModelEntry>) {
        let mut catalogue = self
            .shared
            .catalogue
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if catalogue.models != models {
            *catalogue = Arc::new(Catalogue {
                generation: catalogue.generation + 1,
                models,
            });
        }
    }

    /// The models announced to the agent.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.shared
            .catalogue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The exact counters shipped in heartbeats.
    pub fn totals(&self) -> &Totals {
        &self.shared.totals
    }

    pub fn policy(&self) -> SamplingPolicy {
        self.shared.policy
    }

    pub fn stats(&self) -> EmitterStats {
        let s = &self.shared;
        let w = &s.writer;
        EmitterStats {
            queue_depth: s.queue.len(),
            queue_capacity: s.queue.capacity(),
            accepted: w.accepted.load(Relaxed),
            heartbeats: w.heartbeats.load(Relaxed),
            dropped: self.dropped(),
            next_seq: w.next_seq.load(Relaxed),
            acked_seq: w.acked_seq.load(Relaxed),
            connected: w.connected.load(Relaxed),
            connections_made: w.connections_made.load(Relaxed),
            last_hello: (
                w.hello_next_seq.load(Relaxed),
                w.hello_acked_seq.load(Relaxed),
            ),
        }
    }

    pub fn dropped(&self) -> DropCounts {
        let d = &self.shared.dropped;
        DropCounts {
            queue_full: d[DropReason::QueueFull.index()].load(Relaxed),
            write_error: d[DropReason::WriteError.index()].load(Relaxed),
            disconnected: d[DropReason::Disconnected.index()].load(Relaxed),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exai_proto::event::Direction;

    fn ws() -> EventKind {
        EventKind::WsMessage {
            direction: Direction::Inbound,
            bytes: 3,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let emitter = EventEmitter::new(SamplingPolicy::keep_all(), 4, Totals::new(&[]));
        let outcomes: Vec<Recorded> = (0..10)
            .map(|_| emitter.record_uncorrelated(SampleClass::Supabase, ws))
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == Recorded::Queued).count(),
            4
        );
        assert_eq!(emitter.dropped().queue_full, 6);
        assert_eq!(emitter.stats().queue_depth, 4);
    }

    #[test]
    fn unsampled_records_never_build_the_event() {
        let emitter = EventEmitter::new(SamplingPolicy::default(), 64, Totals::new(&[]));
        let mut built = 0;
        for _ in 0..100 {
            emitter.record_uncorrelated(SampleClass::WsMessages, || {
                built += 1;
                ws()
            });
        }
        assert_eq!(built, 10);
        assert_eq!(emitter.stats().queue_depth, 10);
    }
}
