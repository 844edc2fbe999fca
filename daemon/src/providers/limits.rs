//! In-flight limits: one global, one per provider, held by RAII permits so a call that
//! ends in any way — answer, error, cancellation, panic — gives its places back.
//!
//! Over the limit a call waits, but only for a bounded time: short bursts queue, a
//! sustained overload gets a clear "busy" error instead of an unbounded queue.

use exai_proto::Provider;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct InflightLimits {
    global: Arc<Semaphore>,
    global_max: usize,
    per_provider: [(Arc<Semaphore>, usize); Provider::COUNT],
    max_wait: Duration,
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
        }
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
}
