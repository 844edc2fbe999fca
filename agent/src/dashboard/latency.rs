//! Percentiles of one second's sampled latencies, weighted: log-spaced buckets 4 % wide
//! from 10 µs to 10 minutes, so adding a sample is an index computation and a sum.

const MIN_MS: f64 = 0.01;
const GROWTH: f64 = 1.04;
const BUCKETS: usize = 460;

#[derive(Clone)]
pub struct LatencySketch {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

/// p50, p95 and p99, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl LatencySketch {
    pub fn add(&mut self, ms: f64, weight: u32) {
        if !ms.is_finite() || weight == 0 {
            return;
        }
        let i = if ms <= MIN_MS {
            0
        } else {
            (((ms / MIN_MS).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
        };
        self.counts[i] += u64::from(weight);
        self.total += u64::from(weight);
    }

    /// `None` when nothing was added.
    pub fn percentiles(&self) -> Option<Percentiles> {
        (self.total > 0).then(|| Percentiles {
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
        })
    }

    /// The upper edge of the bucket holding the `q` quantile, rounded to 0.01 ms.
    fn quantile(&self, q: f64) -> f64 {
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let upper = MIN_MS * GROWTH.powi(i as i32 + 1);
                return (upper * 100.0).round() / 100.0;
            }
        }
        0.0
    }

    pub fn clear(&mut self) {
        if self.total > 0 {
            self.counts.fill(0);
            self.total = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_percentiles_within_a_bucket() {
        let mut s = LatencySketch::default();
        assert_eq!(s.percentiles(), None);
        // 90 fast samples (as 9 events of weight 10) and 10 slow ones.
        for _ in 0..9 {
            s.add(1.0, 10);
        }
        for _ in 0..10 {
            s.add(500.0, 1);
        }
        let p = s.percentiles().unwrap();
        assert!((1.0..=1.05).contains(&p.p50), "{p:?}");
        assert!((500.0..=521.0).contains(&p.p95), "{p:?}");
        assert!((500.0..=521.0).contains(&p.p99), "{p:?}");
        s.clear();
        assert_eq!(s.percentiles(), None);
        s.add(f64::NAN, 1);
        s.add(1e12, 1);
        assert!(
            s.percentiles().unwrap().p50 > 500_000.0,
            "huge values land in the last bucket"
        );
    }
}
