//! In-flight limits: one global, one per provider, held by RAII permits so a call that
//! ends in any way — answer, error, cancellation, panic — gives its places back.
//!
//! Over the limit a call waits, but only for a bounded time: short bursts queue, a
//! sustained overload gets a clear "busy" error instead of an unbounded queue. The queue
//! is bounded in bytes too: what the waiting calls carry (their prompts) may add up to
//! `EXAI_WAITING_BYTES_MAX`; past it a call that would wait is refused at once.

use exai_proto::Provider;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct InflightLimits {
    global: Arc<Semaphore>,
    global_max: usize,
    per_provider: [(Arc<Semaphore>, usize); Provider::COUNT],
    max_wait: Duration,
    /// Bytes the calls waiting for a place carry now.
    waiting_bytes: AtomicUsize,
    max_waiting_bytes: usize,
}

/// Both places a running call holds.
#[derive(Debug)]
pub struct CallPermit {
    _global: OwnedSemaphorePermit,
    _provider: OwnedSemaphorePermit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("{provider} is busy: {max} calls already in flight ({setting}); waited {waited:?}, try again shortly")]
    Provider {
        provider: Provider,
        max: usize,
        setting: &'static str,
        waited: Duration,
    },
    #[error("the server is busy: {max} model calls already in flight (EXAI_WS_GLOBAL_MAX_INFLIGHT); waited {waited:?}, try again shortly")]
    Global { max: usize, waited: Duration },
    #[error("the server is busy: the calls already waiting for a model carry {waiting} bytes and this one {bytes} more, past EXAI_WAITING_BYTES_MAX ({max}); try again shortly")]
    WaitingBytes {
        waiting: usize,
        bytes: usize,
        max: usize,
    },
}

pub fn provider_setting(provider: Provider) -> &'static str {
    match provider {
        Provider::Kimi => "EXAI_WS_KIMI_MAX_INFLIGHT",
        Provider::Glm => "EXAI_WS_GLM_MAX_INFLIGHT",
        // The wire's fallback: this daemon calls no such provider.
        Provider::Other => "EXAI_WS_GLOBAL_MAX_INFLIGHT",
    }
}

impl InflightLimits {
    pub fn new(global: usize, kimi: usize, glm: usize, max_wait: Duration) -> Self {
        let sem = |n: usize| (Arc::new(Semaphore::new(n)), n);
        let mut per_provider = [sem(0), sem(0), sem(0)];
        per_provider[Provider::Kimi.index()] = sem(kimi);
        per_provider[Provider::Glm.index()] = sem(glm);
        Self {
            global: Arc::new(Semaphore::new(global)),
            global_max: global,
            per_provider,
            max_wait,
            waiting_bytes: AtomicUsize::new(0),
            max_waiting_bytes: usize::MAX,
        }
    }

    /// At most `max` bytes of waiting calls at once (see the module's doc).
    pub fn with_max_waiting_bytes(mut self, max: usize) -> Self {
        self.max_waiting_bytes = max;
        self
    }

    /// [`acquire`](Self::acquire) for a call carrying `bytes`: a free place is taken at
    /// once; waiting for one needs room for `bytes` among the waiting calls' bytes, or the
    /// call is refused at once.
    pub async fn acquire_carrying(
        &self,
        provider: Provider,
        bytes: usize,
    ) -> Result<CallPermit, Busy> {
        if let Some(permit) = self.try_acquire(provider) {
            return Ok(permit);
        }
        let _waiting = self.reserve_waiting(bytes)?;
        self.acquire(provider).await
    }

    fn try_acquire(&self, provider: Provider) -> Option<CallPermit> {
        let (sem, _) = &self.per_provider[provider.index()];
        let provider_permit = sem.clone().try_acquire_owned().ok()?;
        let global_permit = self.global.clone().try_acquire_owned().ok()?;
        Some(CallPermit {
            _global: global_permit,
            _provider: provider_permit,
        })
    }

    fn reserve_waiting(&self, bytes: usize) -> Result<Waiting<'_>, Busy> {
        let mut waiting = self.waiting_bytes.load(Relaxed);
        loop {
            let total = waiting.saturating_add(bytes);
            // One call alone may always wait, however large: the bound is on the queue.
            if total > self.max_waiting_bytes && waiting > 0 {
                return Err(Busy::WaitingBytes {
                    waiting,
                    bytes,
                    max: self.max_waiting_bytes,
                });
            }
            match self
                .waiting_bytes
                .compare_exchange_weak(waiting, total, Relaxed, Relaxed)
            {
                Ok(_) => {
                    return Ok(Waiting {
                        limits: self,
                        bytes,
                    })
                }
                Err(now) => waiting = now,
            }
        }
    }

    /// Bytes the calls waiting for a place carry now.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes.load(Relaxed)
    }

    /// Takes a place for `provider` (first its own, then a global one), waiting at most
    /// the configured time for each.
    pub async fn acquire(&self, provider: Provider) -> Result<CallPermit, Busy> {
        let (sem, max) = &self.per_provider[provider.index()];
        let waited = self.max_wait;
        let provider_permit = tokio::time::timeout(self.max_wait, sem.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(Busy::Provider {
                provider,
                max: *max,
                setting: provider_setting(provider),
                waited,
            })?;
        let global_permit =
            tokio::time::timeout(self.max_wait, self.global.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or(Busy::Global {
                    max: self.global_max,
                    waited,
                })?;
        Ok(CallPermit {
            _global: global_permit,
            _provider: provider_permit,
        })
    }

    /// Calls in flight now, globally.
    pub fn in_flight(&self) -> usize {
        self.global_max - self.global.available_permits()
    }

    pub fn provider_in_flight(&self, provider: Provider) -> usize {
        let (sem, max) = &self.per_provider[provider.index()];
        max - sem.available_permits()
    }
}

/// A waiting call's bytes, counted until it has its place or gives up.
struct Waiting<'a> {
    limits: &'a InflightLimits,
    bytes: usize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.limits.waiting_bytes.fetch_sub(self.bytes, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn permits_come_back_and_overload_is_a_clear_error() {
        let limits = InflightLimits::new(3, 1, 2, Duration::from_secs(5));
        let first = limits.acquire(Provider::Kimi).await.unwrap();
        assert_eq!(limits.in_flight(), 1);
        let err = limits.acquire(Provider::Kimi).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("kimi is busy: 1 calls already in flight (EXAI_WS_KIMI_MAX_INFLIGHT)"),
            "{err}"
        );
        drop(first);
        let _again = limits.acquire(Provider::Kimi).await.unwrap();
        let _g1 = limits.acquire(Provider::Glm).await.unwrap();
        let _g2 = limits.acquire(Provider::Glm).await.unwrap();
        assert_eq!(limits.in_flight(), 3);
        assert_eq!(limits.provider_in_flight(Provider::Glm), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_is_bounded_in_bytes_and_a_free_place_needs_no_room() {
        let limits =
            InflightLimits::new(8, 1, 1, Duration::from_secs(5)).with_max_waiting_bytes(100);
        // A free place is taken whatever the call carries.
        let running = limits.acquire_carrying(Provider::Glm, 1_000).await.unwrap();
        assert_eq!(limits.waiting_bytes(), 0);
        // Waiting: the first call may, however large; then only while the bytes fit.
        let first = tokio::spawn(async move {
            let limits = Box::leak(Box::new(limits));
            let waiter = limits.acquire_carrying(Provider::Glm, 150);
            (limits as &InflightLimits, waiter)
        });
        let (limits, waiter) = first.await.unwrap();
        tokio::pin!(waiter);
        assert!(futures_util::poll!(waiter.as_mut()).is_pending());
        assert_eq!(limits.waiting_bytes(), 150);
        let refused = limits
            .acquire_carrying(Provider::Glm, 10)
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Busy::WaitingBytes {
                    waiting: 150,
                    bytes: 10,
                    max: 100
                }
            ),
            "{refused}"
        );
        assert!(refused.to_string().contains("EXAI_WAITING_BYTES_MAX"));
        drop(running);
        let _placed = waiter.await.unwrap();
        assert_eq!(
            limits.waiting_bytes(),
            0,
            "a call that has its place waits no more"
        );
    }
}
