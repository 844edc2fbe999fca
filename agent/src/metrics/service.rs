//! The service's metrics, in the seed's families so existing dashboards and alerts keep
//! working, plus time to first token, Supabase and the daemons' process figures.
//!
//! Counters move by the increase of each daemon's running totals between heartbeats, so
//! they are exact whatever the sampling, and they survive a daemon restart (a new
//! instance starts from zero and only its increases are added). Histograms are fed by
//! sampled events, weighted.

use super::instances::{Expired, OTHER};
use super::weighted::WeightedHistogramVec;
use super::{counter_vec, float_gauge_vec, gauge_vec};
use super::{CounterVec, FloatGauge, FloatGaugeVec, Gauge, GaugeVec, Registry};
use super::{
    MODEL_LATENCY_BUCKETS, REQUEST_BUCKETS, STORAGE_BUCKETS, SUPABASE_BUCKETS, TTFT_BUCKETS,
};
use crate::sink::{DaemonInfo, EventSink};
use exai_proto::heartbeat::Totals;
use exai_proto::{
    model_label, CallStatus, ConnectionPhase, Event, EventKind, Heartbeat, McpMethod,
    RequestStatus, StorageOp, StorageResult, SupabaseResult, Tool,
};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

pub struct ServiceMetrics {
    requests: CounterVec,
    request_duration: WeightedHistogramVec<2>,
    active_connections: Arc<Gauge>,
    in_flight: Arc<Gauge>,
    connections: CounterVec,
    ws_messages: CounterVec,
    ws_bytes: CounterVec,
    api_calls: CounterVec,
    api_latency: WeightedHistogramVec<2>,
    api_ttft: WeightedHistogramVec<2>,
    tokens: CounterVec,
    storage_ops: CounterVec,
    storage_latency: WeightedHistogramVec<2>,
    cache_hit_ratio: Arc<FloatGauge>,
    /// Conversation reads that found a thread, and that did not, since the agent started.
    reads: [AtomicU64; 2],
    supabase_ops: CounterVec,
    supabase_latency: WeightedHistogramVec<2>,
    spool_depth: GaugeVec,
    errors: CounterVec,
    memory: GaugeVec,
    cpu: FloatGaugeVec,
    disk: FloatGaugeVec,
    daemon_info: GaugeVec,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each daemon's gauges from its last heartbeat, by instance id.
    gauges: HashMap<String, DaemonGauges>,
}

#[derive(Default)]
struct DaemonGauges {
    connections: u32,
    in_flight: u32,
    connected: bool,
}

/// The process figures of the agent itself carry this `instance` label.
pub const AGENT_INSTANCE: &str = "agent";

impl ServiceMetrics {
    pub fn new(registry: &Registry) -> Self {
        let h = |name, help, labels, bounds| {
            registry.register(WeightedHistogramVec::new(name, help, labels, bounds))
        };
        Self {
            requests: counter_vec(registry, "mcp_requests_total", "MCP requests answered, exact (from the daemons' running totals). method and endpoint as the seed spelled them: call_tool and the tool's name, list_tools, initialize, ...; transport: websocket or http.", &["method", "endpoint", "status", "transport"]),
            request_duration: h("mcp_request_duration_seconds", "MCP request duration; an estimate from sampled requests, each weighted by its sampling rate.", ["method", "endpoint"], REQUEST_BUCKETS),
            active_connections: registry.gauge("mcp_active_connections", "Client connections open now, summed over connected daemons."),
            in_flight: registry.gauge("mcp_inflight_calls", "Model calls under way now, summed over connected daemons."),
            connections: counter_vec(registry, "mcp_connections_total", "Client connections opened, closed and refused, exact.", &["endpoint", "phase", "reason"]),
            ws_messages: counter_vec(registry, "mcp_websocket_messages_total", "WebSocket messages, exact.", &["direction"]),
            ws_bytes: counter_vec(registry, "mcp_websocket_bytes_total", "WebSocket message bytes, exact.", &["direction"]),
            api_calls: counter_vec(registry, "mcp_api_calls_total", "Model calls, retries included in one call, exact. Unknown model names fold into `other`.", &["provider", "model", "status"]),
            api_latency: h("mcp_api_latency_seconds", "Whole model call latency, retries included; an estimate from sampled calls.", ["provider", "model"], MODEL_LATENCY_BUCKETS),
            api_ttft: h("mcp_api_time_to_first_token_seconds", "Time to the first streamed token; an estimate from sampled calls.", ["provider", "model"], TTFT_BUCKETS),
            tokens: counter_vec(registry, "mcp_tokens_total", "Tokens used, from the providers' usage figures, exact.", &["provider", "model", "type"]),
            storage_ops: counter_vec(registry, "mcp_storage_operations_total", "Conversation-storage operations, exact.", &["operation", "backend", "result"]),
            storage_latency: h("mcp_storage_latency_seconds", "Conversation-storage latency; an estimate from sampled operations.", ["operation", "backend"], STORAGE_BUCKETS),
            cache_hit_ratio: {
                let g = registry.float_gauge("mcp_cache_hit_ratio", "Share of conversation reads that found a thread, since the agent started (NaN before the first).");
                g.set(f64::NAN);
                g
            },
            reads: [AtomicU64::new(0), AtomicU64::new(0)],
            supabase_ops: counter_vec(registry, "mcp_supabase_operations_total", "Supabase REST requests, exact.", &["operation", "table", "result"]),
            supabase_latency: h("mcp_supabase_latency_seconds", "Supabase REST request latency; an estimate from sampled requests.", ["operation", "table"], SUPABASE_BUCKETS),
            spool_depth: gauge_vec(registry, "mcp_supabase_spool_depth", "Records waiting in a daemon's Supabase spool.", &["instance"]),
            errors: counter_vec(registry, "mcp_errors_total", "Errors by component and kind, exact.", &["component", "error_type"]),
            memory: gauge_vec(registry, "mcp_memory_usage_bytes", "Resident memory of each process.", &["component", "instance"]),
            cpu: float_gauge_vec(registry, "mcp_cpu_usage_percent", "CPU use of each process, in percent of one core.", &["component", "instance"]),
            disk: float_gauge_vec(registry, "mcp_disk_usage_percent", "Use of the filesystem holding the checked path, in percent (from the health checks).", &["path"]),
            daemon_info: gauge_vec(registry, "exai_daemon_info", "1 while a daemon of this version is connected, 0 after.", &["instance", "version"]),
            state: Mutex::new(State::default()),
        }
    }

    /// The agent's own memory and CPU, told apart from the daemons' by `component`.
    pub fn agent_process(&self, rss_bytes: u64, cpu_percent: f32) {
        self.memory
            .with_label_values(&["agent", AGENT_INSTANCE])
            .set(rss_bytes as i64);
        self.cpu
            .with_label_values(&["agent", AGENT_INSTANCE])
            .set(f64::from(cpu_percent));
    }

    pub fn disk_usage(&self, path: &str, percent: f64) {
        self.disk.with_label_values(&[path]).set(percent);
    }

    /// Removes the series of daemons that went away long ago.
    pub fn forget(&self, expired: &[Expired]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for gone in expired {
            state.gauges.remove(&gone.instance_id);
            if gone.label == OTHER {
                continue;
            }
            let _ = self.spool_depth.remove_label_values(&[&gone.label]);
            let _ = self.memory.remove_label_values(&["daemon", &gone.label]);
            let _ = self.cpu.remove_label_values(&["daemon", &gone.label]);
        }
        // Info series carry a version label too: drop each expired instance's, whatever
        // its version.
        for gone in expired.iter().filter(|e| e.label != OTHER) {
            self.daemon_info.remove_matching("instance", &gone.label);
        }
    }

    fn heartbeat(&self, daemon: &DaemonInfo, hb: &Heartbeat) {
        self.memory
            .with_label_values(&["daemon", &daemon.label])
            .set(i64::try_from(hb.process.rss_bytes).unwrap_or(i64::MAX));
        self.cpu
            .with_label_values(&["daemon", &daemon.label])
            .set(f64::from(hb.process.cpu_percent));
        self.spool_depth
            .with_label_values(&[&daemon.label])
            .set(i64::try_from(hb.spool_depth).unwrap_or(i64::MAX));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.gauges.insert(
            daemon.instance_id.clone(),
            DaemonGauges {
                connections: hb.connections,
                in_flight: hb.in_flight,
                connected: true,
            },
        );
        self.set_sums(&state.gauges);
    }

    /// Gauges summed over the connected daemons.
    fn set_sums(&self, all: &HashMap<String, DaemonGauges>) {
        let live = all.values().filter(|l| l.connected);
        let (connections, in_flight) = live.fold((0i64, 0i64), |(c, f), l| {
            (c + i64::from(l.connections), f + i64::from(l.in_flight))
        });
        self.active_connections.set(connections);
        self.in_flight.set(in_flight);
    }

    /// Adds the increase of a daemon's running totals to the counters.
    fn add(&self, t: &Totals) {
        for w in &t.ws_messages {
            let d = w.direction.as_str();
            inc(&self.ws_messages, &[d], w.messages);
            inc(&self.ws_bytes, &[d], w.bytes);
        }
        for r in &t.requests {
            let status = r.status.as_str();
            let (method, endpoint) = seed_labels(r.method, r.tool);
            inc(
                &self.requests,
                &[method, endpoint, status, r.transport.as_str()],
                r.count,
            );
            if matches!(r.status, RequestStatus::Error | RequestStatus::ToolError) {
                inc(&self.errors, &["mcp", status], r.count);
            }
        }
        for c in &t.provider_calls {
            let (provider, model) = (c.provider.as_str(), model_label(c.model.as_str()));
            inc(
                &self.api_calls,
                &[provider, model, c.status.as_str()],
                c.calls,
            );
            if !matches!(c.status, CallStatus::Success | CallStatus::Cancelled) {
                inc(&self.errors, &[provider, c.status.as_str()], c.calls);
            }
            inc(&self.tokens, &[provider, model, "input"], c.input_tokens);
            inc(&self.tokens, &[provider, model, "output"], c.output_tokens);
        }
        for s in &t.storage {
            let result = s.result.as_str();
            inc(
                &self.storage_ops,
                &[s.op.as_str(), s.backend.as_str(), result],
                s.count,
            );
            if matches!(s.result, StorageResult::Error | StorageResult::Timeout) {
                inc(&self.errors, &["storage", result], s.count);
            }
            match (s.op, s.result) {
                (StorageOp::Get, StorageResult::Hit) => self.reads[0].fetch_add(s.count, Relaxed),
                (StorageOp::Get, StorageResult::Miss) => self.reads[1].fetch_add(s.count, Relaxed),
                _ => 0,
            };
        }
        let (hits, misses) = (self.reads[0].load(Relaxed), self.reads[1].load(Relaxed));
        if hits + misses > 0 {
            self.cache_hit_ratio
                .set(hits as f64 / (hits + misses) as f64);
        }
        for s in &t.supabase {
            let result = s.result.as_str();
            inc(
                &self.supabase_ops,
                &[s.op.as_str(), s.table.as_str(), result],
                s.count,
            );
            if s.result != SupabaseResult::Ok {
                inc(&self.errors, &["supabase", result], s.count);
            }
        }
        for c in &t.connections {
            inc(
                &self.connections,
                &[c.transport.as_str(), c.phase.as_str(), c.reason.as_str()],
                c.count,
            );
            if c.phase == ConnectionPhase::Refused {
                inc(
                    &self.errors,
                    &[c.transport.as_str(), c.reason.as_str()],
                    c.count,
                );
            }
        }
    }

    fn observe(&self, event: &Event) {
        let w = event.weight;
        match &event.kind {
            EventKind::McpRequest {
                method,
                tool,
                duration_us,
                ..
            } => self.request_duration.observe(
                seed_labels(*method, *tool).into(),
                seconds(*duration_us),
                w,
            ),
            EventKind::ProviderCall {
                provider,
                model,
                status: CallStatus::Success,
                latency_us,
                ttft_us,
                ..
            } => {
                let labels = [provider.as_str(), model_label(model.as_str())];
                self.api_latency.observe(labels, seconds(*latency_us), w);
                if let Some(ttft) = ttft_us {
                    self.api_ttft.observe(labels, seconds(*ttft), w);
                }
            }
            EventKind::Storage {
                op,
                backend,
                latency_us,
                ..
            } => self.storage_latency.observe(
                [op.as_str(), backend.as_str()],
                seconds(*latency_us),
                w,
            ),
            EventKind::Supabase {
                op,
                table,
                latency_us,
                http_status,
                ..
            } if *http_status != 0 => self.supabase_latency.observe(
                [op.as_str(), table.as_str()],
                seconds(*latency_us),
                w,
            ),
            _ => {}
        }
    }
}

impl EventSink for ServiceMetrics {
    fn daemon_connected(&self, daemon: &DaemonInfo) {
        self.daemon_info
            .with_label_values(&[&daemon.label, &daemon.version])
            .set(1);
    }

    fn events(&self, daemon: &DaemonInfo, events: &[Event]) {
        for event in events {
            match &event.kind {
                EventKind::Heartbeat(hb) => self.heartbeat(daemon, hb),
                _ => self.observe(event),
            }
        }
    }

    fn totals_grew(&self, _daemon: &DaemonInfo, increase: &Totals) {
        self.add(increase);
    }

    fn daemon_disconnected(&self, daemon: &DaemonInfo) {
        self.daemon_info
            .with_label_values(&[&daemon.label, &daemon.version])
            .set(0);
        // Its process and spool are gone: their gauges would only mislead a sum.
        if daemon.label != OTHER {
            let _ = self.memory.remove_label_values(&["daemon", &daemon.label]);
            let _ = self.cpu.remove_label_values(&["daemon", &daemon.label]);
            let _ = self.spool_depth.remove_label_values(&[&daemon.label]);
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(gauges) = state.gauges.get_mut(&daemon.instance_id) {
            gauges.connected = false;
        }
        self.set_sums(&state.gauges);
    }
}

/// `method` and `endpoint` as the seed's dashboards query them:
/// `{method="call_tool",endpoint="chat"}`; requests that are not tool calls carry their
/// method as the endpoint.
fn seed_labels(method: McpMethod, tool: Tool) -> (&'static str, &'static str) {
    let seed_method = match method {
        McpMethod::ToolsCall => "call_tool",
        McpMethod::ToolsList => "list_tools",
        McpMethod::Initialize => "initialize",
        McpMethod::Initialized => "initialized",
        McpMethod::Ping => "ping",
        McpMethod::LoggingSetLevel => "set_level",
        McpMethod::Cancelled => "cancelled",
        McpMethod::Other => "other",
    };
    match tool {
        Tool::None => (seed_method, seed_method),
        tool => (seed_method, tool.as_str()),
    }
}

fn inc(family: &CounterVec, labels: &[&str], n: u64) {
    if n > 0 {
        family.with_label_values(labels).inc_by(n);
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::daemon;
    use exai_proto::heartbeat::{ProviderTotal, RequestTotal};
    use exai_proto::{McpMethod, ModelName, Provider, Tool, Transport};

    fn heartbeat(requests: u64, model: &str, calls: u64) -> Event {
        let mut hb = Heartbeat::default();
        hb.totals.requests.push(RequestTotal {
            transport: Transport::WebSocket,
            method: McpMethod::ToolsCall,
            tool: Tool::Version,
            status: RequestStatus::Success,
            count: requests,
        });
        hb.totals.provider_calls.push(ProviderTotal {
            provider: Provider::Glm,
            model: ModelName::new(model),
            status: CallStatus::Success,
            calls,
            input_tokens: calls * 3,
            output_tokens: calls * 5,
        });
        crate::testing::heartbeat(hb)
    }

    fn render(registry: &Registry) -> String {
        String::from_utf8(registry.render()).unwrap()
    }

    #[test]
    fn counters_add_the_increase_of_running_totals_across_restarts() {
        let registry = Registry::new();
        let metrics = crate::sink::Increases::new(ServiceMetrics::new(&registry));
        let (first, second) = (daemon("a"), daemon("b"));
        metrics.events(&first, &[heartbeat(5, "glm-4.5", 1)]);
        metrics.events(&first, &[heartbeat(12, "glm-4.5", 2)]);
        // The same totals again add nothing.
        metrics.events(&first, &[heartbeat(12, "glm-4.5", 2)]);
        // A restarted daemon is a new instance whose totals start from zero.
        metrics.events(&second, &[heartbeat(3, "gpt-9-ultra", 4)]);
        let text = render(&registry);
        for line in [
            "mcp_requests_total{endpoint=\"version\",method=\"call_tool\",status=\"success\",transport=\"websocket\"} 15",
            "mcp_api_calls_total{model=\"glm-4.5\",provider=\"glm\",status=\"success\"} 2",
            "mcp_api_calls_total{model=\"other\",provider=\"glm\",status=\"success\"} 4",
            "mcp_tokens_total{model=\"other\",provider=\"glm\",type=\"output\"} 20",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("gpt-9"), "unknown models fold into other");
    }
}
