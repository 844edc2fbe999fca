//! What the dashboard's numbers are made of. Counts come from the daemons' running
//! totals (exact); latencies and byte counts of model and Supabase calls from sampled
//! events, weighted (estimates). Fed on the ingest path one batch at a time; read once a
//! second by the dashboard's ticker.

use super::events::{provider_service, Candidates};
use super::latency::LatencySketch;
use exai_proto::heartbeat::Totals;
use exai_proto::{
    model_label, CallStatus, ConnectionPhase, Event, EventKind, Heartbeat, RequestStatus,
    StorageResult, SupabaseResult,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// The services with a card, in the order of [`Service`]'s discriminants.
pub const SERVICES: [&str; 5] = ["websocket", "storage", "supabase", "kimi", "glm"];

#[derive(Clone, Copy)]
enum Service {
    WebSocket = 0,
    Storage = 1,
    Supabase = 2,
}

fn index_of(name: &str) -> usize {
    SERVICES.iter().position(|s| *s == name).unwrap_or(0)
}

#[derive(Default, Clone, Copy)]
struct Counts {
    events: u64,
    errors: u64,
    bytes: u64,
}

/// A connected (or recently connected) daemon's latest figures.
struct DaemonState {
    connected: bool,
    last_event: Instant,
    heartbeat: Option<Figures>,
}

/// What the stats take from a daemon's last heartbeat (not the heartbeat itself: its
/// running totals are hundreds of entries, and there may be hundreds of daemons).
#[derive(Clone, Copy)]
struct Figures {
    spool_depth: u64,
    connections: u32,
    in_flight: u32,
    rss_bytes: u64,
    cpu_percent: f32,
}

impl Figures {
    fn of(hb: &Heartbeat) -> Self {
        Self {
            spool_depth: hb.spool_depth,
            connections: hb.connections,
            in_flight: hb.in_flight,
            rss_bytes: hb.process.rss_bytes,
            cpu_percent: hb.process.cpu_percent,
        }
    }
}

pub struct Aggregate {
    /// Since the agent started.
    requests: u64,
    request_errors: u64,
    services: [Counts; 5],
    /// Bytes of model and Supabase responses: weighted sums of sampled events.
    sampled_bytes: [f64; 5],
    tokens: BTreeMap<(&'static str, &'static str), (u64, u64)>,
    backend: Option<&'static str>,
    /// This interval.
    interval_requests: u64,
    interval_errors: u64,
    interval_events: [u64; 5],
    request_latency: LatencySketch,
    latency: [LatencySketch; 5],
    received: u64,
    interval_received: u64,
    daemons: HashMap<String, DaemonState>,
    pub candidates: Candidates,
}

impl Aggregate {
    pub fn new(candidates_per_priority: usize) -> Self {
        Self {
            requests: 0,
            request_errors: 0,
            services: [Counts::default(); 5],
            sampled_bytes: [0.0; 5],
            tokens: BTreeMap::new(),
            backend: None,
            interval_requests: 0,
            interval_errors: 0,
            interval_events: [0; 5],
            request_latency: LatencySketch::default(),
            latency: Default::default(),
            received: 0,
            interval_received: 0,
            daemons: HashMap::new(),
            candidates: Candidates::new(candidates_per_priority),
        }
    }

    pub fn daemon_connected(&mut self, instance_id: &str) {
        self.daemons.insert(
            instance_id.to_string(),
            DaemonState {
                connected: true,
                last_event: Instant::now(),
                heartbeat: None,
            },
        );
    }

    pub fn daemon_disconnected(&mut self, instance_id: &str) {
        if let Some(d) = self.daemons.get_mut(instance_id) {
            d.connected = false;
        }
    }

    /// Forgets a daemon gone for good.
    pub fn forget(&mut self, instance_id: &str) {
        self.daemons.remove(instance_id);
    }

    pub fn events(&mut self, instance_id: &str, events: &[Event]) {
        self.received += events.len() as u64;
        self.interval_received += events.len() as u64;
        for event in events {
            self.event(instance_id, event);
            self.candidates.offer(event);
        }
        if let Some(d) = self.daemons.get_mut(instance_id) {
            d.last_event = Instant::now();
        }
    }

    fn event(&mut self, instance_id: &str, event: &Event) {
        let w = event.weight;
        match &event.kind {
            EventKind::Heartbeat(hb) => {
                if let Some(d) = self.daemons.get_mut(instance_id) {
                    d.heartbeat = Some(Figures::of(hb));
                }
            }
            EventKind::McpRequest { duration_us, .. } => {
                let ms = *duration_us as f64 / 1000.0;
                self.request_latency.add(ms, w);
                self.latency[Service::WebSocket as usize].add(ms, w);
            }
            EventKind::ProviderCall {
                provider,
                status,
                latency_us,
                bytes,
                ..
            } => {
                let i = index_of(provider_service(*provider));
                if *status == CallStatus::Success {
                    self.latency[i].add(*latency_us as f64 / 1000.0, w);
                }
                self.sampled_bytes[i] += f64::from(*bytes) * f64::from(w);
            }
            EventKind::Storage {
                backend,
                latency_us,
                ..
            } => {
                self.backend = Some(backend.as_str());
                self.latency[Service::Storage as usize].add(*latency_us as f64 / 1000.0, w);
            }
            EventKind::Supabase {
                http_status,
                latency_us,
                bytes,
                ..
            } => {
                let i = Service::Supabase as usize;
                if *http_status != 0 {
                    self.latency[i].add(*latency_us as f64 / 1000.0, w);
                }
                self.sampled_bytes[i] += f64::from(*bytes) * f64::from(w);
            }
            EventKind::WsMessage { .. } | EventKind::Connection { .. } => {}
        }
    }

    /// Adds the increase of a daemon's running totals.
    pub fn add(&mut self, t: &Totals) {
        let ws = Service::WebSocket as usize;
        for m in &t.ws_messages {
            self.count(ws, m.messages, 0);
            self.services[ws].bytes += m.bytes;
        }
        for r in &t.requests {
            let failed = matches!(r.status, RequestStatus::Error | RequestStatus::ToolError);
            self.requests += r.count;
            self.interval_requests += r.count;
            if failed {
                self.request_errors += r.count;
                self.interval_errors += r.count;
                self.services[ws].errors += r.count;
            }
        }
        for c in &t.connections {
            if c.phase == ConnectionPhase::Refused {
                self.services[ws].errors += c.count;
            }
        }
        for c in &t.provider_calls {
            let failed = !matches!(c.status, CallStatus::Success | CallStatus::Cancelled);
            let i = index_of(provider_service(c.provider));
            self.count(i, c.calls, if failed { c.calls } else { 0 });
            let row = self
                .tokens
                .entry((c.provider.as_str(), model_label(c.model.as_str())))
                .or_default();
            row.0 += c.input_tokens;
            row.1 += c.output_tokens;
        }
        for s in &t.storage {
            let failed = matches!(s.result, StorageResult::Error | StorageResult::Timeout);
            self.count(
                Service::Storage as usize,
                s.count,
                if failed { s.count } else { 0 },
            );
            self.backend = Some(s.backend.as_str());
        }
        for s in &t.supabase {
            let failed = s.result != SupabaseResult::Ok;
            self.count(
                Service::Supabase as usize,
                s.count,
                if failed { s.count } else { 0 },
            );
        }
    }

    fn count(&mut self, service: usize, events: u64, errors: u64) {
        self.services[service].events += events;
        self.services[service].errors += errors;
        self.interval_events[service] += events;
    }

    /// The stats object for the interval of `seconds` that just ended, and a fresh
    /// interval. `pipe` is the agent's own view of the pipe (received, lost, dropped).
    pub fn tick(&mut self, seconds: f64, pipe: Value, dashboard: Value) -> Value {
        let per_s = |n: u64| (n as f64 / seconds.max(0.001) * 10.0).round() / 10.0;
        let now = Instant::now();
        let live = || self.daemons.values().filter(|d| d.connected);
        let beats = || live().filter_map(|d| d.heartbeat);
        let services: serde_json::Map<String, Value> = SERVICES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let c = self.services[i];
                let bytes = match i {
                    0 => Some(c.bytes),
                    1 => None,
                    _ => Some(self.sampled_bytes[i].round() as u64),
                };
                let mut card = json!({
                    "events": c.events,
                    "errors": c.errors,
                    "per_s": per_s(self.interval_events[i]),
                    "bytes": bytes,
                    "latency_ms": self.latency[i].percentiles(),
                });
                match i {
                    1 => card["backend"] = json!(self.backend),
                    2 => card["spool_depth"] = json!(beats().map(|h| h.spool_depth).sum::<u64>()),
                    _ => {}
                }
                (name.to_string(), card)
            })
            .collect();
        let mut daemons: Vec<Value> = self
            .daemons
            .iter()
            .map(|(id, d)| {
                json!({
                    "instance": id,
                    "connected": d.connected,
                    "last_event_age_s": (now.duration_since(d.last_event).as_secs_f64() * 10.0).round() / 10.0,
                })
            })
            .collect();
        daemons.sort_by(|a, b| a["instance"].as_str().cmp(&b["instance"].as_str()));
        let mut pipe = pipe;
        pipe["ingest_per_s"] = json!(per_s(self.interval_received));
        pipe["daemons"] = Value::Array(daemons);
        let stats = json!({
            "at_ms": crate::unix_ms(),
            "requests": {
                "total": self.requests,
                "per_s": per_s(self.interval_requests),
                "errors_total": self.request_errors,
                "errors_per_s": per_s(self.interval_errors),
                "error_rate": if self.interval_requests > 0 {
                    self.interval_errors as f64 / self.interval_requests as f64
                } else {
                    0.0
                },
            },
            "latency_ms": self.request_latency.percentiles(),
            "services": services,
            "tokens": self.tokens.iter().map(|((provider, model), (input, output))| json!({
                "provider": provider, "model": model, "input": input, "output": output,
            })).collect::<Vec<_>>(),
            "pipe": pipe,
            "daemon": {
                "connections": beats().map(|h| u64::from(h.connections)).sum::<u64>(),
                "in_flight": beats().map(|h| u64::from(h.in_flight)).sum::<u64>(),
                "rss_bytes": beats().map(|h| h.rss_bytes).sum::<u64>(),
                "cpu_percent": (beats().map(|h| f64::from(h.cpu_percent)).sum::<f64>() * 10.0).round() / 10.0,
            },
            "dashboard": dashboard,
        });
        self.interval_requests = 0;
        self.interval_errors = 0;
        self.interval_events = [0; 5];
        self.interval_received = 0;
        self.request_latency.clear();
        self.latency.iter_mut().for_each(LatencySketch::clear);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exai_proto::heartbeat::{ProviderTotal, RequestTotal};
    use exai_proto::{McpMethod, ModelName, Provider, Tool, Transport};

    fn beat(requests: u64, errors: u64) -> Event {
        let mut hb = Heartbeat {
            connections: 3,
            ..Heartbeat::default()
        };
        for (status, count) in [
            (RequestStatus::Success, requests - errors),
            (RequestStatus::Error, errors),
        ] {
            hb.totals.requests.push(RequestTotal {
                transport: Transport::WebSocket,
                method: McpMethod::ToolsCall,
                tool: Tool::Chat,
                status,
                count,
            });
        }
        hb.totals.provider_calls.push(ProviderTotal {
            provider: Provider::Kimi,
            model: ModelName::new("moonshot-v1-8k"),
            status: CallStatus::Success,
            calls: requests,
            input_tokens: 2 * requests,
            output_tokens: 3 * requests,
        });
        crate::testing::heartbeat(hb)
    }

    #[test]
    fn totals_rates_and_cards_from_heartbeats() {
        let mut a = Aggregate::new(8);
        let mut totals = crate::metrics::deltas::RunningTotals::default();
        let mut feed = |a: &mut Aggregate, beat: Event| {
            a.events("d1", std::slice::from_ref(&beat));
            if let EventKind::Heartbeat(hb) = &beat.kind {
                a.add(&totals.increase("d1", &hb.totals));
            }
        };
        a.daemon_connected("d1");
        feed(&mut a, beat(10, 1));
        feed(&mut a, beat(30, 3));
        let s = a.tick(2.0, json!({"received": 2}), json!({"clients": 0}));
        assert_eq!(s["requests"]["total"], 30);
        assert_eq!(s["requests"]["per_s"], 15.0);
        assert_eq!(s["requests"]["errors_total"], 3);
        assert_eq!(s["requests"]["error_rate"], 0.1);
        assert_eq!(s["services"]["kimi"]["events"], 30);
        assert_eq!(s["services"]["websocket"]["errors"], 3);
        assert_eq!(s["tokens"][0]["model"], "moonshot-v1-8k");
        assert_eq!(s["tokens"][0]["output"], 90);
        assert_eq!(s["daemon"]["connections"], 3);
        assert_eq!(s["pipe"]["daemons"][0]["connected"], true);
        assert_eq!(s["services"]["storage"]["backend"], Value::Null);
        // A fresh interval: totals stay, rates restart.
        let s = a.tick(1.0, json!({}), json!({}));
        assert_eq!(
            (
                s["requests"]["total"].clone(),
                s["requests"]["per_s"].clone()
            ),
            (json!(30), json!(0.0))
        );
        a.daemon_disconnected("d1");
        let s = a.tick(1.0, json!({}), json!({}));
        assert_eq!(
            s["daemon"]["connections"], 0,
            "only connected daemons count"
        );
    }
}
