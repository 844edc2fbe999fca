//! Reading a request body under a deadline, as Apache's mod_reqtimeout does: after a
//! short grace the body must keep arriving at a minimum average rate, and it must be
//! whole within a total time; a client too slow is answered 408 and its connection
//! closed, instead of holding it open byte by byte.
//!
//! The bodies the daemon holds at once are bounded in bytes too ([`BodyBudget`]): a body
//! counts from its first byte until its request is answered, so a crowd of large
//! requests waiting for a model place cannot take the daemon's memory; the one that
//! would go past the budget is answered 503 at once.

use crate::config::{ConnectionLimits, BODY_GRACE};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit (413).
    TooLarge,
    /// Slower than the minimum rate, or not whole within the total time (408).
    TooSlow,
    /// The client broke off.
    Broken,
    /// The bodies held now leave no room for this one (503).
    OverBudget,
}

/// Bytes of request bodies held now, at most `max` (EXAI_REQUEST_BYTES_MAX).
pub struct BodyBudget {
    held: Arc<AtomicUsize>,
    max: usize,
}

/// A body's share of the budget, given back when dropped.
pub struct HeldBytes {
    held: Arc<AtomicUsize>,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(max: usize) -> Self {
        Self {
            held: Arc::default(),
            max,
        }
    }

    /// An empty share, grown as the body arrives.
    pub fn share(&self) -> HeldBytes {
        HeldBytes {
            held: self.held.clone(),
            bytes: 0,
        }
    }

    /// Grows `share` by `more` bytes, unless that would go past the budget.
    fn grow(&self, share: &mut HeldBytes, more: usize) -> bool {
        let mut now = self.held.load(Relaxed);
        loop {
            let next = now.saturating_add(more);
            if next > self.max {
                return false;
            }
            match self.held.compare_exchange_weak(now, next, Relaxed, Relaxed) {
                Ok(_) => {
                    share.bytes += more;
                    return true;
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Relaxed);
    }
}

/// When the body's next bytes must have arrived: `grace + received / min_rate` after the
/// start, and never later than `total` after it.
pub fn deadline(
    started: Instant,
    received: u64,
    min_rate: u64,
    grace: Duration,
    total: Duration,
) -> Instant {
    let earned = Duration::from_secs_f64(received as f64 / min_rate.max(1) as f64);
    started + (grace + earned).min(total)
}

/// Reads `body` whole, at most `limit` bytes, within the deadlines of `limits` and the
/// room `budget` has; returns it with its share of the budget.
pub async fn read(
    mut body: hyper::body::Incoming,
    limit: usize,
    limits: &ConnectionLimits,
    budget: &BodyBudget,
) -> Result<(Bytes, HeldBytes), BodyError> {
    let started = Instant::now();
    let mut buf = BytesMut::new();
    let mut share = budget.share();
    loop {
        let by = deadline(
            started,
            buf.len() as u64,
            limits.body_min_rate,
            BODY_GRACE,
            limits.body_timeout,
        );
        let frame = match tokio::time::timeout_at(by, body.frame()).await {
            Err(_) => return Err(BodyError::TooSlow),
            Ok(None) => return Ok((buf.freeze(), share)),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            if !budget.grow(&mut share, data.len()) {
                return Err(BodyError::OverBudget);
            }
            buf.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_share_a_budget_given_back_when_answered() {
        let budget = BodyBudget::new(100);
        let mut a = budget.share();
        let mut b = budget.share();
        assert!(budget.grow(&mut a, 60));
        assert!(!budget.grow(&mut b, 50), "past the budget");
        assert!(budget.grow(&mut b, 40));
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn the_deadline_grows_with_what_arrived_up_to_the_total() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(2);
        let total = Duration::from_secs(30);
        assert_eq!(deadline(t0, 0, 1000, grace, total), t0 + grace);
        assert_eq!(
            deadline(t0, 5000, 1000, grace, total),
            t0 + Duration::from_secs(7)
        );
        assert_eq!(deadline(t0, 1 << 30, 1000, grace, total), t0 + total);
    }
}
