//! A count of things under way — answers on their way out, sessions open — that shutdown
//! can wait to see at zero: woken by the last one to end, never by a timer.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct UnderWay {
    count: AtomicUsize,
    none: Notify,
}

impl UnderWay {
    pub fn start(&self) {
        self.count.fetch_add(1, Relaxed);
    }

    pub fn end(&self) {
        if self.count.fetch_sub(1, Relaxed) == 1 {
            self.none.notify_waiters();
        }
    }

    pub fn now(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// Completes once none is under way.
    pub async fn none(&self) {
        until(&self.none, || self.now() == 0).await
    }
}

/// Completes once `done` holds, checking it again each time `changed` is notified (the
/// waiter is registered before each check, so no notification falls between them).
pub async fn until(changed: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_wait_ends_when_the_last_one_does() {
        let under_way = Arc::new(UnderWay::default());
        under_way.none().await;
        under_way.start();
        under_way.start();
        let waiter = tokio::spawn({
            let under_way = under_way.clone();
            async move { under_way.none().await }
        });
        under_way.end();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one is still under way");
        under_way.end();
        waiter.await.unwrap();
        assert_eq!(under_way.now(), 0);
    }
}
