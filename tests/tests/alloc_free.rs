//! (f) Recording allocates nothing: not when the event is not sampled, not when it is
//! queued, not when the queue is full. A counting global allocator proves it.

use exai_daemon::{EventEmitter, Recorded, Totals};
use exai_proto::event::{CallStatus, Provider};
use exai_proto::{CorrelationId, EventKind, ProviderCall, SampleClass, SamplingPolicy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAllocator;

thread_local! {
    /// Allocations made by this thread. Const-initialised with no destructor, so
    /// reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn provider_call() -> EventKind {
    EventKind::ProviderCall(ProviderCall {
        provider: Provider::Kimi,
        model: "kimi-k2-0905-preview".into(),
        status: CallStatus::Success,
        latency_us: 1_200_000,
        ttft_us: Some(300_000),
        ttfa_us: Some(900_000),
        input_tokens: 120,
        output_tokens: 400,
        reasoning_tokens: 250,
        cached_tokens: 64,
        attempts: 1,
        bytes: 2048,
    })
}

#[test]
fn recording_never_allocates() {
    let policy = SamplingPolicy::default().with_rate(SampleClass::ProviderCalls, 10);
    let emitter = EventEmitter::new(policy, 1_000, Totals::new(&[]));
    let correlation = CorrelationId::new("4bf92f3577b34da6a3ce929d0e0e4736");
    let mut outcomes = [0u64; 3];
    // Warm the thread-local sampler before counting.
    emitter.record(SampleClass::ProviderCalls, &correlation, provider_call);

    let allocated = allocations_during(|| {
        for _ in 0..100_000 {
            let i = match emitter.record(SampleClass::ProviderCalls, &correlation, provider_call) {
                Recorded::NotSampled => 0,
                Recorded::Queued => 1,
                Recorded::Dropped => 2,
            };
            outcomes[i] += 1;
        }
    });
    // All three paths ran: 90,000 not sampled, the queue filled, then it was full.
    assert_eq!(outcomes[0], 90_000);
    assert_eq!(outcomes[1], 999);
    assert_eq!(outcomes[2], 10_000 - 999);
    assert_eq!(allocated, 0, "recording allocated {allocated} times");

    // The counter does see allocations, so zero above is a real measurement.
    let boxed = allocations_during(|| drop(std::hint::black_box(Box::new(1u64))));
    assert_eq!(boxed, 1);
}
