//! Everything `/metrics` shows. Counts are exact: they come from the running totals in
//! the daemons' heartbeats. Distributions (latencies, time to first token) are built
//! from sampled events, each weighted by its sampling rate: estimates, documented as such.

pub mod deltas;
pub mod family;
pub mod instances;
pub mod pipe;
pub mod service;
pub mod weighted;

pub use family::{Counter, FloatGauge, Gauge, Registry};

/// A family of counters, by label values.
pub type CounterVec = family::Family<Counter>;
/// A family of whole-number gauges, by label values.
pub type GaugeVec = family::Family<Gauge>;
/// A family of float gauges, by label values.
pub type FloatGaugeVec = family::Family<FloatGauge>;

/// Buckets for MCP request durations: a `version` call takes a millisecond, a `chat`
/// call as long as the model (minutes, at worst).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Buckets for a whole model call, retries included, up to the 300 s call timeout.
pub const MODEL_LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0,
];

/// Buckets for time to first token.
pub const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets for conversation storage: Redis answers in well under a millisecond.
pub const STORAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets for Supabase REST calls.
pub const SUPABASE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub(crate) fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> CounterVec {
    registry.register(CounterVec::new(name, help, labels))
}

pub(crate) fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registry.register(GaugeVec::new(name, help, labels))
}

pub(crate) fn float_gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> FloatGaugeVec {
    registry.register(FloatGaugeVec::new(name, help, labels))
}
