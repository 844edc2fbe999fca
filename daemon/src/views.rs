//! How the daemon sees its dependencies, for the heartbeat: the agent reports Redis and
//! Supabase from this, so it needs neither's address nor key. Filled as a side effect of
//! the work the daemon does anyway (its storage operations, its uploads); nothing here
//! probes anything.

use exai_proto::{StorageBackend, StorageErrorKind, StorageView, SupabaseView};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

/// What the heartbeat reports about the daemon's dependencies, and the sessions the pipe
/// writer cannot see for itself.
pub trait DependencyViews: Send + Sync {
    fn storage(&self) -> StorageView;
    fn supabase(&self) -> SupabaseView;

    /// Streamable HTTP sessions open now (WebSocket sessions are counted in `Totals`).
    fn http_sessions(&self) -> u32 {
        0
    }
}

/// Nothing to report: for tests and tools that run no storage.
pub struct NoDependencies;

impl DependencyViews for NoDependencies {
    fn storage(&self) -> StorageView {
        StorageView {
            backend: StorageBackend::Memory,
            reachable: true,
            last_error: StorageErrorKind::None,
            latency_us: 0,
            checked_ms_ago: u64::MAX,
        }
    }

    fn supabase(&self) -> SupabaseView {
        SupabaseView::default()
    }
}

/// The outcome of the last conversation-storage operation. Each operation stores three
/// relaxed atomics: as cheap as the counter it already bumps.
pub struct StorageWatch {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last operation, plus one (0: none yet).
    at_ms: AtomicU64,
    last_error: AtomicU8,
    /// Latency of the last operation that got an answer.
    latency_us: AtomicU64,
}

impl Default for StorageWatch {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            at_ms: AtomicU64::new(0),
            last_error: AtomicU8::new(StorageErrorKind::None.index() as u8),
            latency_us: AtomicU64::new(0),
        }
    }
}

impl StorageWatch {
    pub fn succeeded(&self, latency_us: u64) {
        self.latency_us.store(latency_us, Relaxed);
        self.last_error
            .store(StorageErrorKind::None.index() as u8, Relaxed);
        self.touch();
    }

    pub fn failed(&self, kind: StorageErrorKind) {
        self.last_error.store(kind.index() as u8, Relaxed);
        self.touch();
    }

    fn touch(&self) {
        self.at_ms
            .store(self.epoch.elapsed().as_millis() as u64 + 1, Relaxed);
    }

    /// The view of `backend`. Whether it is reachable is the store's own verdict, which
    /// its probe keeps current while no operation runs; this adds what the last failure
    /// was and how fast the last answer came.
    pub fn view(&self, backend: StorageBackend, reachable: bool) -> StorageView {
        let at = self.at_ms.load(Relaxed);
        let last_error =
            match StorageErrorKind::from_index(usize::from(self.last_error.load(Relaxed))) {
                _ if reachable => StorageErrorKind::None,
                None | Some(StorageErrorKind::None) => StorageErrorKind::Connection,
                Some(kind) => kind,
            };
        StorageView {
            backend,
            reachable,
            last_error,
            latency_us: self.latency_us.load(Relaxed),
            checked_ms_ago: match at {
                0 => u64::MAX,
                at => (self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(at),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_says_whether_and_the_last_failure_says_why() {
        let watch = StorageWatch::default();
        let v = watch.view(StorageBackend::Redis, true);
        assert!(v.reachable);
        assert_eq!(v.checked_ms_ago, u64::MAX);
        watch.failed(StorageErrorKind::Timeout);
        let v = watch.view(StorageBackend::Redis, false);
        assert_eq!(
            (v.reachable, v.last_error),
            (false, StorageErrorKind::Timeout)
        );
        assert!(v.checked_ms_ago < 60_000);
        // The probe found it back before any operation ran.
        let v = watch.view(StorageBackend::Redis, true);
        assert_eq!((v.reachable, v.last_error), (true, StorageErrorKind::None));
        watch.succeeded(250);
        assert_eq!(watch.view(StorageBackend::Redis, true).latency_us, 250);
        // Gone again, found by the probe: no operation said why.
        let v = watch.view(StorageBackend::Redis, false);
        assert_eq!(
            (v.reachable, v.last_error),
            (false, StorageErrorKind::Connection)
        );
    }
}
