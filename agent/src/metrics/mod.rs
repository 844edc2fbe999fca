//! Everything `/metrics` shows. Each daemon's series carry its name as the `daemon`
//! label. Counters are the daemon's exact running totals from its heartbeats, exported as
//! they are: a restarted daemon's counters start again from zero, which Prometheus reads
//! as a counter reset. Distributions (latencies, time to first token) are built from
//! sampled events, each weighted by its sampling rate: estimates, documented as such.
//!
//! The families are declared here; which series a daemon has is its record's business
//! (`crate::daemons`), which creates them as it goes and removes them when it expires.

pub mod family;
pub mod weighted;

pub use family::{Counter, FloatGauge, Gauge, Registry};
use weighted::WeightedHistogramVec;

/// A family of counters, by label values.
pub type CounterVec = family::Family<Counter>;
/// A family of whole-number gauges, by label values.
pub type GaugeVec = family::Family<Gauge>;
/// A family of float gauges, by label values.
pub type FloatGaugeVec = family::Family<FloatGauge>;

/// The label every per-daemon series carries.
pub const DAEMON: &str = "daemon";

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

/// Buckets for time to first token; a thinking model can take a minute or more before
/// its first answer token.
pub const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets for conversation storage: Redis answers in well under a millisecond.
pub const STORAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets for Supabase REST calls.
pub const SUPABASE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every family, registered once at start.
pub struct Families {
    // Exact, from each daemon's running totals.
    pub requests: CounterVec,
    pub connections: CounterVec,
    pub ws_messages: CounterVec,
    pub ws_bytes: CounterVec,
    pub api_calls: CounterVec,
    pub tokens: CounterVec,
    pub storage_ops: CounterVec,
    pub supabase_ops: CounterVec,
    pub errors: CounterVec,
    pub spool_refused: CounterVec,
    pub spool_write_timeouts: CounterVec,
    pub dead_letters: CounterVec,
    pub spool_damaged: CounterVec,
    pub pipe_dropped: CounterVec,
    // Counted by the agent.
    pub pipe_received: CounterVec,
    pub pipe_lost: CounterVec,
    pub pipe_unknown: CounterVec,
    // A daemon's state, from its last heartbeat.
    pub active_connections: GaugeVec,
    pub in_flight: GaugeVec,
    pub spool_depth: GaugeVec,
    pub spool_bytes: GaugeVec,
    pub storage_up: GaugeVec,
    pub supabase_up: GaugeVec,
    pub cache_hit_ratio: FloatGaugeVec,
    pub memory: GaugeVec,
    pub cpu: FloatGaugeVec,
    pub pipe_connected: GaugeVec,
    pub queue_depth: GaugeVec,
    pub queue_capacity: GaugeVec,
    pub daemon_info: GaugeVec,
    // Estimates from sampled events.
    pub request_duration: WeightedHistogramVec,
    pub api_latency: WeightedHistogramVec,
    pub api_ttft: WeightedHistogramVec,
    pub api_ttfa: WeightedHistogramVec,
    pub storage_latency: WeightedHistogramVec,
    pub supabase_latency: WeightedHistogramVec,
    // The agent's own.
    pub disk: FloatGaugeVec,
    pub frames_rejected: CounterVec,
    pub pipe_connections: std::sync::Arc<Counter>,
}

/// Reasons a pipe connection is closed, listed at zero from the start so that rates work.
pub const REJECTIONS: &[&str] = &[
    "bad_length",
    "bad_magic",
    "bad_version",
    "bad_payload",
    "bad_sequence",
    "duplicate_instance",
    "no_hello",
    "bad_instance",
    "too_many_connections",
];

/// The process figures of the agent itself carry this `component`, and an empty `daemon`.
pub const AGENT_COMPONENT: &str = "agent";

impl Families {
    pub fn new(registry: &Registry) -> Self {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            registry.register(CounterVec::new(name, help, labels))
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            registry.register(GaugeVec::new(name, help, labels))
        };
        let floats = |name: &str, help: &str, labels: &[&str]| {
            registry.register(FloatGaugeVec::new(name, help, labels))
        };
        let histogram = |name: &str, help: &str, labels: &[&str], bounds| {
            registry.register(WeightedHistogramVec::new(name, help, labels, bounds))
        };
        let build = gauges(
            "exai_build_info",
            "Build of this agent; always 1.",
            &["component", "version"],
        );
        build.with_label_values(&["agent", crate::VERSION]).set(1);
        let frames_rejected = counters(
            "exai_pipe_frames_rejected_total",
            "Event-pipe connections closed or refused, by reason.",
            &["reason"],
        );
        for reason in REJECTIONS {
            frames_rejected.with_label_values(&[reason]);
        }
        let d = DAEMON;
        Self {
            requests: counters("mcp_requests_total", "MCP requests answered: the daemon's exact count since it started. method and endpoint as the seed spelled them (call_tool and the tool's name, list_tools, initialize, ...); transport websocket or http.", &[d, "method", "endpoint", "status", "transport"]),
            connections: counters("mcp_connections_total", "Client connections opened, closed and refused, exact.", &[d, "endpoint", "phase", "reason"]),
            ws_messages: counters("mcp_websocket_messages_total", "WebSocket messages, exact.", &[d, "direction"]),
            ws_bytes: counters("mcp_websocket_bytes_total", "WebSocket message bytes, exact.", &[d, "direction"]),
            api_calls: counters("mcp_api_calls_total", "Model calls, retries included in one call, exact. Models outside the daemon's announced catalogue (or past the agent's cap) are `other`.", &[d, "provider", "model", "status"]),
            tokens: counters("mcp_tokens_total", "Tokens, from the providers' usage figures, exact: input, output, reasoning (part of output) and cached (part of input).", &[d, "provider", "model", "type"]),
            storage_ops: counters("mcp_storage_operations_total", "Conversation-storage operations, exact.", &[d, "operation", "backend", "result"]),
            supabase_ops: counters("mcp_supabase_operations_total", "Supabase REST requests, exact.", &[d, "operation", "table", "result"]),
            errors: counters("mcp_errors_total", "Errors by component and kind, exact.", &[d, "component", "error_type"]),
            spool_refused: counters("mcp_supabase_spool_refused_total", "Turns not persisted because the daemon's spool was full.", &[d]),
            spool_write_timeouts: counters("mcp_supabase_spool_write_timeouts_total", "Turns whose spool write did not finish in its time limit (written later, when the disk answered).", &[d]),
            dead_letters: counters("mcp_supabase_dead_letters_total", "Rows Supabase refused for good, set aside in the daemon's dead-letter file.", &[d]),
            spool_damaged: counters("mcp_supabase_spool_damaged_records_total", "Damaged spool records the daemon skipped.", &[d]),
            pipe_dropped: counters("exai_pipe_daemon_dropped_events_total", "Events the daemon dropped before they reached the pipe, by reason (from its heartbeats).", &[d, "reason"]),
            pipe_received: counters("exai_pipe_events_received_total", "Events received from a daemon, by kind (`unknown`: a kind this agent does not know).", &[d, "kind"]),
            pipe_lost: counters("exai_pipe_events_lost_total", "Events a daemon wrote that never arrived or were never confirmed, from sequence gaps.", &[d]),
            pipe_unknown: counters("exai_pipe_unknown_total", "Parts of a newer daemon's frames this agent skipped: event kinds, fields, label values (read as `other`).", &[d, "what"]),
            active_connections: gauges("mcp_active_connections", "Client sessions open now: WebSocket connections and Streamable HTTP sessions.", &[d]),
            in_flight: gauges("mcp_inflight_calls", "Model calls under way now.", &[d]),
            spool_depth: gauges("mcp_supabase_spool_depth", "Turns waiting in the daemon's Supabase spool.", &[d]),
            spool_bytes: gauges("mcp_supabase_spool_bytes", "Bytes of the daemon's Supabase spool.", &[d]),
            storage_up: gauges("mcp_storage_up", "1 when the daemon's conversation storage answers (its last operation or probe), else 0.", &[d, "backend"]),
            supabase_up: gauges("mcp_supabase_up", "1 unless the daemon's last Supabase upload failed; only when Supabase is on.", &[d]),
            cache_hit_ratio: floats("mcp_cache_hit_ratio", "Share of the daemon's conversation reads that found a thread, since it started (NaN before the first).", &[d]),
            memory: gauges("mcp_memory_usage_bytes", "Resident memory of each process.", &["component", d]),
            cpu: floats("mcp_cpu_usage_percent", "CPU use of each process, in percent of one core.", &["component", d]),
            pipe_connected: gauges("exai_pipe_daemon_connected", "1 while the daemon is connected; 0 after, until its series expire.", &[d]),
            queue_depth: gauges("exai_pipe_daemon_queue_depth", "Events waiting in the daemon's queue.", &[d]),
            queue_capacity: gauges("exai_pipe_daemon_queue_capacity", "Capacity of the daemon's event queue.", &[d]),
            daemon_info: gauges("exai_daemon_info", "1 while a daemon process of this instance id and version is connected, 0 after.", &[d, "instance_id", "version"]),
            request_duration: histogram("mcp_request_duration_seconds", "MCP request duration; an estimate from sampled requests, each weighted by its sampling rate.", &[d, "method", "endpoint"], REQUEST_BUCKETS),
            api_latency: histogram("mcp_api_latency_seconds", "Whole model call latency, retries included; an estimate from sampled calls.", &[d, "provider", "model"], MODEL_LATENCY_BUCKETS),
            api_ttft: histogram("mcp_api_time_to_first_token_seconds", "Time to the first streamed token of any kind, reasoning included; an estimate from sampled calls.", &[d, "provider", "model"], TTFT_BUCKETS),
            api_ttfa: histogram("mcp_api_time_to_first_answer_token_seconds", "Time to the first token of the answer itself (after any reasoning); an estimate from sampled calls.", &[d, "provider", "model"], TTFT_BUCKETS),
            storage_latency: histogram("mcp_storage_latency_seconds", "Conversation-storage latency; an estimate from sampled operations.", &[d, "operation", "backend"], STORAGE_BUCKETS),
            supabase_latency: histogram("mcp_supabase_latency_seconds", "Supabase REST request latency; an estimate from sampled requests.", &[d, "operation", "table"], SUPABASE_BUCKETS),
            disk: floats("mcp_disk_usage_percent", "Use of the filesystem holding the checked path, in percent (from the agent's checks).", &["path"]),
            frames_rejected,
            pipe_connections: registry.counter("exai_pipe_connections_total", "Event-pipe connections accepted."),
        }
    }

    /// The agent's own memory and CPU, told apart from the daemons' by `component`.
    pub fn agent_process(&self, rss_bytes: u64, cpu_percent: f32) {
        self.memory
            .with_label_values(&[AGENT_COMPONENT, ""])
            .set(i64::try_from(rss_bytes).unwrap_or(i64::MAX));
        self.cpu
            .with_label_values(&[AGENT_COMPONENT, ""])
            .set(f64::from(cpu_percent));
    }

    /// Removes the gauges that describe a running daemon process: gone, they would only
    /// mislead a sum. Its counters and `exai_pipe_daemon_connected` (at 0) stay.
    pub fn daemon_gone(&self, label: &str) {
        for family in [
            &self.active_connections,
            &self.in_flight,
            &self.spool_depth,
            &self.spool_bytes,
            &self.supabase_up,
            &self.queue_depth,
            &self.queue_capacity,
        ] {
            family.remove_label_values(&[label]);
        }
        self.storage_up.remove_matching(DAEMON, label);
        self.memory.remove_label_values(&["daemon", label]);
        self.cpu.remove_label_values(&["daemon", label]);
        self.cache_hit_ratio.remove_label_values(&[label]);
    }

    /// Removes every series of a daemon whose record expired.
    pub fn forget(&self, label: &str) {
        self.daemon_gone(label);
        for family in [
            &self.requests,
            &self.connections,
            &self.ws_messages,
            &self.ws_bytes,
            &self.api_calls,
            &self.tokens,
            &self.storage_ops,
            &self.supabase_ops,
            &self.errors,
            &self.spool_refused,
            &self.spool_write_timeouts,
            &self.dead_letters,
            &self.spool_damaged,
            &self.pipe_dropped,
            &self.pipe_received,
            &self.pipe_lost,
            &self.pipe_unknown,
        ] {
            family.remove_matching(DAEMON, label);
        }
        for family in [&self.pipe_connected, &self.daemon_info] {
            family.remove_matching(DAEMON, label);
        }
        for family in [
            &self.request_duration,
            &self.api_latency,
            &self.api_ttft,
            &self.api_ttfa,
            &self.storage_latency,
            &self.supabase_latency,
        ] {
            family.remove_matching(DAEMON, label);
        }
    }

    pub fn frame_rejected(&self, reason: &str) {
        self.frames_rejected.with_label_values(&[reason]).inc();
    }
}
