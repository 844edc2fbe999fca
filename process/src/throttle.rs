//! A warning repeated at most once a period, saying how many it stood for: a failing
//! disk or `accept` must not write a line per failure.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    said_at: Option<Instant>,
    /// Occurrences since the last line.
    unsaid: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            said_at: None,
            unsaid: 0,
        }
    }

    /// Counts one occurrence; `Some(n)` when a line is due now, `n` the occurrences it
    /// stands for (this one included).
    pub fn due(&mut self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> Option<u64> {
        self.unsaid += 1;
        if self
            .said_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.every)
        {
            return None;
        }
        self.said_at = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_period_counting_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(t.due_at(start), Some(1));
        assert_eq!(t.due_at(start + Duration::from_millis(10)), None);
        assert_eq!(t.due_at(start + Duration::from_millis(999)), None);
        assert_eq!(t.due_at(start + Duration::from_secs(1)), Some(3));
        assert_eq!(t.due_at(start + Duration::from_secs(3)), Some(1));
    }
}
