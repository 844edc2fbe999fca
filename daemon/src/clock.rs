//! A coarse wall clock for event timestamps. Reading the system clock costs tens of
//! nanoseconds — as much as recording an event — so the pipe writer refreshes this one
//! every few milliseconds and `record` reads an atomic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct CoarseClock {
    unix_us: AtomicU64,
}

impl CoarseClock {
    pub fn new() -> Self {
        Self {
            unix_us: AtomicU64::new(now_unix_us()),
        }
    }

    /// Microseconds since the Unix epoch, as of the last [`tick`](Self::tick).
    #[inline]
    pub fn now_us(&self) -> u64 {
        self.unix_us.load(Ordering::Relaxed)
    }

    pub fn tick(&self) {
        self.unix_us.store(now_unix_us(), Ordering::Relaxed);
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

pub fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
