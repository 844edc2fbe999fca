//! A histogram that takes weighted observations. The daemon samples most events (one
//! WebSocket request in ten, say) and each sampled event carries its weight, so one
//! observation stands for `weight` occurrences. The prometheus crate's histogram only
//! counts one at a time; this one adds the weight in O(1), and renders as an ordinary
//! Prometheus histogram. Its distributions are estimates; the exact counts are the
//! `_total` counters, which come from the daemon's heartbeats.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};

/// One labelled series: cumulative-free bucket counts, total count and sum.
struct Series {
    /// Per bucket (not cumulative), plus one for `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum as `f64` bits, updated by compare-and-swap.
    sum_bits: AtomicU64,
}

impl Series {
    fn new(bounds: usize) -> Self {
        Self {
            buckets: (0..=bounds).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }
}

/// A histogram family whose label values come from closed vocabularies (`&'static str`),
/// so the number of series is bounded by construction. Clones share the series: one is
/// registered, another observes.
#[derive(Clone)]
pub struct WeightedHistogramVec<const N: usize> {
    inner: Arc<Family<N>>,
}

struct Family<const N: usize> {
    desc: Desc,
    labels: [&'static str; N],
    bounds: &'static [f64],
    series: RwLock<HashMap<[&'static str; N], Arc<Series>>>,
}

impl<const N: usize> WeightedHistogramVec<N> {
    pub fn new(name: &str, help: &str, labels: [&'static str; N], bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        let desc = Desc::new(
            name.into(),
            help.into(),
            labels.iter().map(|l| l.to_string()).collect(),
            HashMap::new(),
        )
        .expect("valid metric definition");
        Self {
            inner: Arc::new(Family {
                desc,
                labels,
                bounds,
                series: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Records `weight` occurrences of `value` (in seconds).
    pub fn observe(&self, values: [&'static str; N], value: f64, weight: u32) {
        if weight == 0 || !value.is_finite() {
            return;
        }
        let series = self.series(values);
        let bucket = self.inner.bounds.partition_point(|bound| *bound < value);
        let weight = u64::from(weight);
        series.buckets[bucket].fetch_add(weight, Relaxed);
        series.count.fetch_add(weight, Relaxed);
        let add = value * weight as f64;
        let _ = series.sum_bits.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + add).to_bits())
        });
    }

    fn series(&self, values: [&'static str; N]) -> Arc<Series> {
        let family = &self.inner;
        if let Some(found) = family
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&values)
        {
            return found.clone();
        }
        family
            .series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(values)
            .or_insert_with(|| Arc::new(Series::new(family.bounds.len())))
            .clone()
    }

    /// Number of label sets seen.
    pub fn len(&self) -> usize {
        self.inner
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<const N: usize> Collector for WeightedHistogramVec<N> {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.inner.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let family = &self.inner;
        let mut series: Vec<([&'static str; N], Arc<Series>)> = family
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(values, s)| (*values, s.clone()))
            .collect();
        // A stable order, so that scrapes diff cleanly.
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut metrics = Vec::with_capacity(series.len());
        for (values, s) in &series {
            let mut cumulative = 0;
            let buckets = family
                .bounds
                .iter()
                .zip(s.buckets.iter())
                .map(|(bound, n)| {
                    cumulative += n.load(Relaxed);
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(*bound);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            let mut h = proto::Histogram::default();
            h.set_bucket(buckets);
            // Read after the buckets, so `count` is never below the last bucket.
            h.set_sample_count(s.count.load(Relaxed).max(cumulative));
            h.set_sample_sum(f64::from_bits(s.sum_bits.load(Relaxed)));
            let mut m = proto::Metric::default();
            m.set_label(
                family
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name(name.to_string());
                        pair.set_value(value.to_string());
                        pair
                    })
                    .collect(),
            );
            m.set_histogram(h);
            metrics.push(m);
        }
        let mut out = MetricFamily::default();
        out.set_name(family.desc.fq_name.clone());
        out.set_help(family.desc.help.clone());
        out.set_field_type(MetricType::HISTOGRAM);
        out.set_metric(metrics);
        vec![out]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};

    #[test]
    fn a_weighted_observation_counts_as_many() {
        let h = WeightedHistogramVec::new("t_seconds", "test", ["kind"], &[0.1, 1.0]);
        h.observe(["a"], 0.05, 10);
        h.observe(["a"], 0.5, 1);
        h.observe(["a"], 5.0, 2);
        h.observe(["b"], f64::NAN, 3);
        let registry = Registry::default();
        registry.register(Box::new(h)).unwrap();
        let mut out = Vec::default();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in [
            "# TYPE t_seconds histogram",
            "t_seconds_bucket{kind=\"a\",le=\"0.1\"} 10",
            "t_seconds_bucket{kind=\"a\",le=\"1\"} 11",
            "t_seconds_bucket{kind=\"a\",le=\"+Inf\"} 13",
            "t_seconds_sum{kind=\"a\"} 11",
            "t_seconds_count{kind=\"a\"} 13",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("kind=\"b\""), "a NaN is not recorded");
    }
}
