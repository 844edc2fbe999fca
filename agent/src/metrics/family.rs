//! Metric families that write themselves straight into the Prometheus text format.
//!
//! The prometheus crate answers a scrape by `Registry::gather`: every collector copies
//! every series into protobuf-shaped structs (a `Vec` and two `String`s per label), the
//! registry sorts them, `TextEncoder` formats each value as a float, and the copy is
//! freed. At 10,000 series that was ~1 µs a series, over the 10 ms budget for a scrape,
//! and each series also carried its own copy of the family's name and help text.
//!
//! Here a series is its label pairs, rendered once when it is created (`a="x",b="y"`,
//! names in alphabetical order as the crate writes them), and an atomic value. A scrape
//! walks each family in label order under a read lock and writes bytes; the text is the
//! crate's, line for line (a test in this file checks it against `TextEncoder`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

/// What a registry holds: anything that can write its families as text.
pub trait Render: Send + Sync {
    /// The family's name, which orders the output.
    fn name(&self) -> &str;
    /// Appends `# HELP`, `# TYPE` and every sample; nothing when there is no series.
    fn render(&self, out: &mut Vec<u8>);
}

/// The families `/metrics` shows, in name order.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<Vec<Arc<dyn Render>>>>,
    /// The size of the last scrape's text, to size the next one's buffer.
    last_len: Arc<AtomicU64>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a family (a clone of it; clones share their series) and gives it back.
    ///
    /// # Panics
    /// If a family of that name is registered already: a programming error.
    pub fn register<F: Render + Clone + 'static>(&self, family: F) -> F {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let at = match families.binary_search_by(|f| f.name().cmp(family.name())) {
            Ok(_) => panic!("metric {} registered twice", family.name()),
            Err(at) => at,
        };
        families.insert(at, Arc::new(family.clone()));
        family
    }

    /// The text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let families: Vec<Arc<dyn Render>> = self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = Vec::with_capacity(self.last_len.load(Relaxed) as usize + 4096);
        for family in &families {
            family.render(&mut out);
        }
        self.last_len.store(out.len() as u64, Relaxed);
        out
    }

    /// A counter without labels, registered.
    pub fn counter(&self, name: &str, help: &str) -> Arc<Counter> {
        self.register(Family::new(name, help, &[]))
            .with_label_values(&[])
    }

    /// A gauge without labels, registered.
    pub fn gauge(&self, name: &str, help: &str) -> Arc<Gauge> {
        self.register(Family::new(name, help, &[]))
            .with_label_values(&[])
    }

    /// A float gauge without labels, registered.
    pub fn float_gauge(&self, name: &str, help: &str) -> Arc<FloatGauge> {
        self.register(Family::new(name, help, &[]))
            .with_label_values(&[])
    }
}

/// The value of one series.
pub trait Value: Default + Send + Sync + 'static {
    /// `counter` or `gauge`.
    const TYPE: &'static str;
    fn write(&self, out: &mut Vec<u8>);
}

/// A count that only goes up (but for a reset, when the process it counts restarted).
/// Additions saturate: counts that come from a daemon are not trusted not to overflow.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        if n == 0 {
            return;
        }
        let _ = self
            .0
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_add(n)));
    }

    /// Sets the count: a daemon's running total, or zero when the daemon restarted.
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Value for Counter {
    const TYPE: &'static str = "counter";

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa::Buffer::new().format(self.get()).as_bytes());
    }
}

/// A whole number that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

impl Value for Gauge {
    const TYPE: &'static str = "gauge";

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa::Buffer::new().format(self.get()).as_bytes());
    }
}

/// A measurement (a ratio, a percentage).
#[derive(Debug)]
pub struct FloatGauge(AtomicU64);

impl Default for FloatGauge {
    fn default() -> Self {
        Self(AtomicU64::new(0f64.to_bits()))
    }
}

impl FloatGauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

impl Value for FloatGauge {
    const TYPE: &'static str = "gauge";

    fn write(&self, out: &mut Vec<u8>) {
        write_float(out, self.get());
    }
}

/// A float as the text format spells it: `+Inf`, `-Inf`, `NaN`, or Rust's shortest
/// round-tripping decimal (`0.25`, `3`), as the prometheus crate writes it.
pub fn write_float(out: &mut Vec<u8>, v: f64) {
    use std::io::Write;
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        // NaN is written `NaN`, as the format wants.
        let _ = write!(out, "{v}");
    }
}

/// A family of series with the same name and label names; clones share the series.
pub struct Family<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for Family<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<V> {
    name: String,
    /// `# HELP … \n# TYPE … \n`, written once.
    header: Vec<u8>,
    labels: LabelNames,
    /// Keyed by the rendered label pairs.
    series: RwLock<BTreeMap<Box<str>, Arc<V>>>,
}

/// A family's label names, and how its label values become the rendered key of a series.
pub(crate) struct LabelNames {
    /// The positions of the label values, in the order their names are written.
    order: Vec<usize>,
    /// The label names, in that order.
    names: Vec<String>,
}

impl LabelNames {
    /// # Panics
    /// On a label name the text format does not allow: a programming error.
    pub(crate) fn new(family: &str, labels: &[&str]) -> Self {
        for label in labels {
            assert!(
                valid_name(label, false) && !label.starts_with("__") && *label != "le",
                "invalid label name {label:?} in {family}"
            );
        }
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by_key(|i| labels[*i]);
        assert!(
            order.windows(2).all(|w| labels[w[0]] != labels[w[1]]),
            "duplicate label name in {family}"
        );
        Self {
            names: order.iter().map(|i| labels[*i].to_string()).collect(),
            order,
        }
    }

    /// `a="x",b="y"`: the values (in declaration order) under their names, sorted.
    ///
    /// # Panics
    /// If the number of values is not the number of labels: a programming error.
    pub(crate) fn key(&self, family: &str, values: &[&str]) -> String {
        assert_eq!(
            values.len(),
            self.order.len(),
            "{family} takes {} label values",
            self.order.len()
        );
        let mut key = String::with_capacity(
            values.iter().map(|v| v.len() + 4).sum::<usize>()
                + self.names.iter().map(String::len).sum::<usize>(),
        );
        for (name, at) in self.names.iter().zip(&self.order) {
            if !key.is_empty() {
                key.push(',');
            }
            push_pair(&mut key, name, values[*at]);
        }
        key
    }
}

impl<V: Value> Family<V> {
    /// # Panics
    /// On a name or label name the text format does not allow: a programming error.
    pub fn new(name: &str, help: &str, labels: &[&str]) -> Self {
        assert!(valid_name(name, true), "invalid metric name {name:?}");
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                header: header(name, help, V::TYPE),
                labels: LabelNames::new(name, labels),
                series: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// The series with these label values (in the order the labels were declared),
    /// created at zero if new.
    ///
    /// # Panics
    /// If the number of values is not the number of labels: a programming error.
    pub fn with_label_values(&self, values: &[&str]) -> Arc<V> {
        let key = self.key(values);
        if let Some(found) = self.read().get(key.as_str()) {
            return found.clone();
        }
        self.write()
            .entry(key.into_boxed_str())
            .or_default()
            .clone()
    }

    /// Removes the series with exactly these label values; whether there was one.
    pub fn remove_label_values(&self, values: &[&str]) -> bool {
        let key = self.key(values);
        self.write().remove(key.as_str()).is_some()
    }

    /// Removes every series whose `label` is `value`.
    pub fn remove_matching(&self, label: &str, value: &str) {
        let pair = pair(label, value);
        self.write().retain(|key, _| !has_pair(key, &pair));
    }

    /// Calls `f` with each series' value whose `label` is `value` (every series with
    /// `None`).
    pub fn for_each_matching(&self, only: Option<(&str, &str)>, mut f: impl FnMut(&V)) {
        let pair = only.map(|(label, value)| pair(label, value));
        for (key, v) in self.read().iter() {
            if pair.as_ref().is_none_or(|p| has_pair(key, p)) {
                f(v);
            }
        }
    }

    /// How many series there are.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, values: &[&str]) -> String {
        self.inner.labels.key(&self.inner.name, values)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Box<str>, Arc<V>>> {
        self.inner.series.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Box<str>, Arc<V>>> {
        self.inner.series.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<V: Value> Render for Family<V> {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn render(&self, out: &mut Vec<u8>) {
        let series = self.read();
        if series.is_empty() {
            return;
        }
        out.extend_from_slice(&self.inner.header);
        let name = self.inner.name.as_bytes();
        for (labels, value) in series.iter() {
            out.extend_from_slice(name);
            if !labels.is_empty() {
                out.push(b'{');
                out.extend_from_slice(labels.as_bytes());
                out.push(b'}');
            }
            out.push(b' ');
            value.write(out);
            out.push(b'\n');
        }
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
pub fn header(name: &str, help: &str, kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() * 2 + help.len() + kind.len() + 16);
    if !help.is_empty() {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        escape_into(&mut out, help, false);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
    out
}

/// Appends `name="value"`, the value escaped.
pub fn push_pair(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(crate) fn pair(label: &str, value: &str) -> String {
    let mut p = String::with_capacity(label.len() + value.len() + 3);
    push_pair(&mut p, label, value);
    p
}

/// Whether rendered label pairs contain `pair` as one of them. A value's own `"` is
/// always escaped (`\"`), so `="` only ever starts a value: a match that begins the key
/// or follows a `,` is a whole pair.
pub(crate) fn has_pair(key: &str, pair: &str) -> bool {
    key.match_indices(pair).any(|(at, _)| {
        (at == 0 || key.as_bytes()[at - 1] == b',')
            && matches!(key.as_bytes().get(at + pair.len()), None | Some(b','))
    })
}

/// Escapes help text (`\` and newline) or a label value (also `"`).
fn escape_into(out: &mut Vec<u8>, text: &str, quotes: bool) {
    for b in text.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quotes => out.extend_from_slice(b"\\\""),
            b => out.push(b),
        }
    }
}

/// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or label name (no `:`).
fn valid_name(name: &str, colons: bool) -> bool {
    let ok = |b: u8, first: bool| {
        b.is_ascii_alphabetic()
            || b == b'_'
            || (colons && b == b':')
            || (!first && b.is_ascii_digit())
    };
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| ok(b, true)) && bytes.all(|b| ok(b, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn text(registry: &Registry) -> String {
        String::from_utf8(registry.render()).unwrap()
    }

    /// The same series through the prometheus crate and through these families give the
    /// same text, line for line.
    #[test]
    fn writes_what_the_prometheus_crate_writes() {
        let theirs = prometheus::Registry::new();
        let ours = Registry::new();
        let help = "Requests, with a \\ backslash\nand a newline.";
        let labels = ["zone", "method", "a_code"];
        let their_counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new("t_requests_total", help),
            &labels,
        )
        .unwrap();
        theirs.register(Box::new(their_counter.clone())).unwrap();
        let our_counter: Family<Counter> =
            ours.register(Family::new("t_requests_total", help, &labels));
        let their_gauge =
            prometheus::GaugeVec::new(prometheus::Opts::new("t_ratio", "A ratio."), &["path"])
                .unwrap();
        theirs.register(Box::new(their_gauge.clone())).unwrap();
        let our_gauge: Family<FloatGauge> =
            ours.register(Family::new("t_ratio", "A ratio.", &["path"]));
        let their_single = prometheus::IntGauge::new("t_clients", "Clients.").unwrap();
        theirs.register(Box::new(their_single.clone())).unwrap();
        let our_single = ours.gauge("t_clients", "Clients.");
        // Never touched: neither writes anything for it.
        theirs
            .register(Box::new(
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new("t_unused_total", "x"),
                    &["a"],
                )
                .unwrap(),
            ))
            .unwrap();
        ours.register(Family::<Counter>::new("t_unused_total", "x", &["a"]));

        for (values, n) in [
            (["eu", "get", "200"], 3),
            (["us \"east\"", "post", "500"], 1),
            (["back\\slash\nline", "get", "404"], 7),
            (["ünïcode", "put", "201"], u64::from(u32::MAX) * 4),
        ] {
            their_counter.with_label_values(&values).inc_by(n);
            our_counter.with_label_values(&values).inc_by(n);
        }
        for (path, v) in [
            ("/", 41.5),
            ("/var", 0.0),
            ("/nan", f64::NAN),
            ("/big", 1e21),
            ("/tiny", 1.5e-7),
            ("/inf", f64::INFINITY),
        ] {
            their_gauge.with_label_values(&[path]).set(v);
            our_gauge.with_label_values(&[path]).set(v);
        }
        their_single.set(-12);
        our_single.set(-12);

        let mut expected = Vec::new();
        TextEncoder::new()
            .encode(&theirs.gather(), &mut expected)
            .unwrap();
        let expected = String::from_utf8(expected)
            .unwrap()
            // The crate writes Rust's `inf`; the text format says `+Inf`.
            .replace(" inf\n", " +Inf\n");
        let sorted = |s: &str| {
            let mut lines: Vec<String> = s.lines().map(String::from).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&text(&ours)), sorted(&expected));
        assert!(!text(&ours).contains("t_unused_total"));
    }

    #[test]
    fn series_are_found_removed_and_summed_by_label() {
        let family: Family<Counter> = Family::new("t_total", "t", &["instance", "kind"]);
        family.with_label_values(&["a", "x"]).inc_by(2);
        family.with_label_values(&["a", "y"]).inc_by(3);
        family.with_label_values(&["ab", "x"]).inc_by(5);
        family.with_label_values(&["b", "a"]).inc_by(7);
        // The same handle again.
        family.with_label_values(&["a", "x"]).inc();
        let sum = |only| {
            let mut n = 0;
            family.for_each_matching(only, |c| n += c.get());
            n
        };
        assert_eq!(sum(None), 18);
        assert_eq!(sum(Some(("instance", "a"))), 6);
        assert_eq!(sum(Some(("kind", "x"))), 8, "a value is matched whole");
        assert_eq!(sum(Some(("kind", "a"))), 7, "and under its own label only");
        family.remove_matching("instance", "a");
        assert_eq!(family.len(), 2);
        assert!(family.remove_label_values(&["b", "a"]));
        assert!(!family.remove_label_values(&["b", "a"]));
        assert_eq!(sum(None), 5);
    }

    #[test]
    fn a_value_that_looks_like_another_pair_is_not_matched_as_one() {
        let family: Family<Counter> = Family::new("t_total", "t", &["a", "b"]);
        family.with_label_values(&["x\",b=\"y", "z"]).inc();
        let mut n = 0;
        family.for_each_matching(Some(("b", "y")), |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_name_is_registered_once() {
        let registry = Registry::new();
        registry.counter("t_total", "t");
        registry.gauge("t_total", "t");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("mcp_requests_total", true));
        assert!(valid_name("a:b", true));
        assert!(!valid_name("a:b", false));
        assert!(!valid_name("1abc", true));
        assert!(!valid_name("", true));
        assert!(!valid_name("a-b", true));
    }
}
