//! A histogram that takes weighted observations. The daemon samples most events (one
//! WebSocket request in ten, say) and each sampled event carries its weight, so one
//! observation stands for `weight` occurrences. The prometheus crate's histogram only
//! counts one at a time; this one adds the weight in O(1), and renders as an ordinary
//! Prometheus histogram. Its distributions are estimates; the exact counts are the
//! `_total` counters, which come from the daemon's heartbeats.

use super::family::{has_pair, header, pair, push_pair, write_float, LabelNames, Render};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};

/// One labelled series: cumulative-free bucket counts, total count and sum. A caller that
/// observes it often keeps the handle instead of looking it up by label each time.
pub struct HistogramSeries {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum as `f64` bits, updated by compare-and-swap.
    sum_bits: AtomicU64,
}

impl HistogramSeries {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records `weight` occurrences of `value` (in seconds).
    pub fn observe(&self, value: f64, weight: u32) {
        if weight == 0 || !value.is_finite() {
            return;
        }
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        let weight = u64::from(weight);
        let add = |counter: &AtomicU64| {
            let _ = counter.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_add(weight)));
        };
        add(&self.buckets[bucket]);
        add(&self.count);
        let add = value * weight as f64;
        let _ = self.sum_bits.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + add).to_bits())
        });
    }
}

/// A histogram family. Clones share the series: one is registered, another observes.
#[derive(Clone)]
pub struct WeightedHistogramVec {
    inner: Arc<Family>,
}

struct Family {
    name: String,
    header: Vec<u8>,
    labels: LabelNames,
    bounds: &'static [f64],
    /// Each bound as an `le` pair: `le="0.25"`.
    le: Vec<String>,
    /// Keyed by the rendered label pairs, so a scrape writes them in a stable order.
    series: RwLock<BTreeMap<Box<str>, Arc<HistogramSeries>>>,
}

impl WeightedHistogramVec {
    pub fn new(name: &str, help: &str, labels: &[&str], bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        let le = |bound: String| {
            let mut pair = String::new();
            push_pair(&mut pair, "le", &bound);
            pair
        };
        Self {
            inner: Arc::new(Family {
                name: name.into(),
                header: header(name, help, "histogram"),
                labels: LabelNames::new(name, labels),
                bounds,
                le: bounds
                    .iter()
                    .map(|b| le(b.to_string()))
                    .chain([le("+Inf".into())])
                    .collect(),
                series: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// The series with these label values (in declaration order), created if new.
    pub fn series(&self, values: &[&str]) -> Arc<HistogramSeries> {
        let family = &self.inner;
        let key = family.labels.key(&family.name, values);
        if let Some(found) = family
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key.as_str())
        {
            return found.clone();
        }
        family
            .series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.into_boxed_str())
            .or_insert_with(|| Arc::new(HistogramSeries::new(family.bounds)))
            .clone()
    }

    /// Records `weight` occurrences of `value` under these label values.
    pub fn observe(&self, values: &[&str], value: f64, weight: u32) {
        if weight > 0 && value.is_finite() {
            self.series(values).observe(value, weight);
        }
    }

    /// Removes every series whose `label` is `value`.
    pub fn remove_matching(&self, label: &str, value: &str) {
        let pair = pair(label, value);
        self.inner
            .series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| !has_pair(key, &pair));
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

impl Render for WeightedHistogramVec {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn render(&self, out: &mut Vec<u8>) {
        let family = &self.inner;
        let series = family.series.read().unwrap_or_else(|e| e.into_inner());
        if series.is_empty() {
            return;
        }
        out.extend_from_slice(&family.header);
        let name = family.name.as_bytes();
        for (labels, s) in series.iter() {
            let mut cumulative: u64 = 0;
            for (n, le) in s.buckets.iter().zip(&family.le) {
                cumulative = cumulative.saturating_add(n.load(Relaxed));
                sample_start(out, name, b"_bucket", labels, le);
                out.extend_from_slice(itoa::Buffer::new().format(cumulative).as_bytes());
                out.push(b'\n');
            }
            // Read after the buckets, so `count` is never below the last bucket.
            let count = s.count.load(Relaxed).max(cumulative);
            sample_start(out, name, b"_sum", labels, "");
            write_float(out, f64::from_bits(s.sum_bits.load(Relaxed)));
            out.push(b'\n');
            sample_start(out, name, b"_count", labels, "");
            out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
            out.push(b'\n');
        }
    }
}

/// Writes `name_suffix{labels,extra} `, ready for the value.
fn sample_start(out: &mut Vec<u8>, name: &[u8], suffix: &[u8], labels: &str, extra: &str) {
    out.extend_from_slice(name);
    out.extend_from_slice(suffix);
    if !labels.is_empty() || !extra.is_empty() {
        out.push(b'{');
        out.extend_from_slice(labels.as_bytes());
        if !labels.is_empty() && !extra.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(extra.as_bytes());
        out.push(b'}');
    }
    out.push(b' ');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;

    #[test]
    fn a_weighted_observation_counts_as_many() {
        let h = WeightedHistogramVec::new("t_seconds", "test", &["kind"], &[0.1, 1.0]);
        h.observe(&["a"], 0.05, 10);
        h.series(&["a"]).observe(0.5, 1);
        h.observe(&["a"], 5.0, 2);
        h.observe(&["b"], f64::NAN, 3);
        let registry = Registry::new();
        registry.register(h.clone());
        let text = String::from_utf8(registry.render()).unwrap();
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
        h.remove_matching("kind", "a");
        assert!(h.is_empty());
    }

    /// Observed one at a time, it writes what the prometheus crate's histogram writes.
    #[test]
    fn writes_what_the_prometheus_crate_writes() {
        use prometheus::{Encoder, TextEncoder};
        const BOUNDS: &[f64] = &[0.0005, 0.01, 0.25, 1.0, 300.0];
        let ours = WeightedHistogramVec::new("t_seconds", "Latency.", &["zone", "kind"], BOUNDS);
        let theirs = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("t_seconds", "Latency.").buckets(BOUNDS.to_vec()),
            &["zone", "kind"],
        )
        .unwrap();
        for (i, value) in [0.0001, 0.0005, 0.003, 0.2, 0.9, 1.0, 42.0, 301.0]
            .iter()
            .enumerate()
        {
            let labels = [["eu", "chat"], ["us", "version"]][i % 2];
            ours.observe(&labels, *value, 1);
            theirs.with_label_values(&labels).observe(*value);
        }
        let registry = Registry::new();
        registry.register(ours);
        let their_registry = prometheus::Registry::new();
        their_registry.register(Box::new(theirs)).unwrap();
        let mut expected = Vec::new();
        TextEncoder::new()
            .encode(&their_registry.gather(), &mut expected)
            .unwrap();
        assert_eq!(
            String::from_utf8(registry.render()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }
}
