//! Reading a request body under a deadline, as Apache's mod_reqtimeout does: after a
//! short grace the body must keep arriving at a minimum average rate, and it must be
//! whole within a total time; a client too slow is answered 408 and its connection
//! closed, instead of holding it open byte by byte.

use crate::config::{ConnectionLimits, BODY_GRACE};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
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

/// Reads `body` whole, at most `limit` bytes, within the deadlines of `limits`.
pub async fn read(
    mut body: hyper::body::Incoming,
    limit: usize,
    limits: &ConnectionLimits,
) -> Result<Bytes, BodyError> {
    let started = Instant::now();
    let mut buf = BytesMut::new();
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
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
