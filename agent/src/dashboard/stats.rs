//! What the dashboard's numbers are made of. Counts come from the registry of daemons
//! (each daemon's running totals: exact); latencies and byte counts of model and Supabase
//! calls from sampled events, weighted (estimates). Sampled events are fed on the ingest
//! path one batch at a time; the figures are read once a second by the dashboard's ticker.

use super::events::{provider_service, Candidates};
use super::latency::LatencySketch;
use crate::daemons::figures::Figures;
use crate::daemons::Summary;
use exai_proto::{CallStatus, Event, EventKind, Provider};
use serde_json::{json, Value};

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

pub struct Aggregate {
    /// The figures at the last tick, for this interval's rates.
    last: Option<Figures>,
    /// Bytes of model and Supabase responses: weighted sums of sampled events.
    sampled_bytes: [f64; 5],
    request_latency: LatencySketch,
    latency: [LatencySketch; 5],
    pub candidates: Candidates,
}

impl Aggregate {
    pub fn new(candidates_per_priority: usize) -> Self {
        Self {
            last: None,
            sampled_bytes: [0.0; 5],
            request_latency: LatencySketch::default(),
            latency: Default::default(),
            candidates: Candidates::new(candidates_per_priority),
        }
    }

    pub fn events(&mut self, events: &[Event]) {
        for event in events {
            self.event(event);
            self.candidates.offer(event);
        }
    }

    fn event(&mut self, event: &Event) {
        let w = event.weight;
        match &event.kind {
            EventKind::McpRequest { duration_us, .. } => {
                let ms = *duration_us as f64 / 1000.0;
                self.request_latency.add(ms, w);
                self.latency[Service::WebSocket as usize].add(ms, w);
            }
            EventKind::ProviderCall(call) => {
                let Some(service) = provider_service(call.provider) else {
                    return;
                };
                let i = index_of(service);
                if call.status == CallStatus::Success {
                    self.latency[i].add(call.latency_us as f64 / 1000.0, w);
                }
                self.sampled_bytes[i] += f64::from(call.bytes) * f64::from(w);
            }
            EventKind::Storage { latency_us, .. } => {
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
            EventKind::WsMessage { .. }
            | EventKind::Connection { .. }
            | EventKind::Heartbeat(_)
            | EventKind::Catalogue { .. } => {}
        }
    }

    /// The stats object for the interval of `seconds` that just ended, and a fresh
    /// interval. Rates are the growth of the totals since the last tick; a total that
    /// fell (a daemon restarted before its first heartbeat was counted) gives 0.
    pub fn tick(&mut self, seconds: f64, summary: &Summary, dashboard: Value) -> Value {
        let f = &summary.figures;
        let last = self.last.take().unwrap_or_else(|| f.clone());
        let grew = |now: u64, before: u64| now.saturating_sub(before);
        let per_s = |n: u64| (n as f64 / seconds.max(0.001) * 10.0).round() / 10.0;
        let provider = |p: Provider| p.index();
        let counts: [(u64, u64, u64, u64); 5] = [
            (f.ws_messages, f.ws_errors, last.ws_messages, f.ws_bytes),
            (f.storage, f.storage_errors, last.storage, 0),
            (f.supabase, f.supabase_errors, last.supabase, 0),
            (
                f.calls[provider(Provider::Kimi)],
                f.call_errors[provider(Provider::Kimi)],
                last.calls[provider(Provider::Kimi)],
                0,
            ),
            (
                f.calls[provider(Provider::Glm)],
                f.call_errors[provider(Provider::Glm)],
                last.calls[provider(Provider::Glm)],
                0,
            ),
        ];
        let services: serde_json::Map<String, Value> = SERVICES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (events, errors, before, ws_bytes) = counts[i];
                let bytes = match i {
                    0 => Some(ws_bytes),
                    1 => None,
                    _ => Some(self.sampled_bytes[i].round() as u64),
                };
                let mut card = json!({
                    "events": events,
                    "errors": errors,
                    "per_s": per_s(grew(events, before)),
                    "bytes": bytes,
                    "latency_ms": self.latency[i].percentiles(),
                });
                match i {
                    1 => card["backend"] = json!(f.backend.map(|b| b.as_str())),
                    2 => card["spool_depth"] = json!(summary.spool_depth),
                    _ => {}
                }
                (name.to_string(), card)
            })
            .collect();
        let daemons: Vec<Value> = summary
            .daemons
            .iter()
            .map(|d| {
                json!({
                    "daemon": d.name,
                    "instance_id": d.instance_id,
                    "connected": d.connected,
                    "last_event_age_s": (d.last_event_age.as_secs_f64() * 10.0).round() / 10.0,
                })
            })
            .collect();
        let interval_requests = grew(f.requests, last.requests);
        let interval_errors = grew(f.request_errors, last.request_errors);
        let stats = json!({
            "at_ms": crate::unix_ms(),
            "requests": {
                "total": f.requests,
                "per_s": per_s(interval_requests),
                "errors_total": f.request_errors,
                "errors_per_s": per_s(interval_errors),
                "error_rate": if interval_requests > 0 {
                    (interval_errors.min(interval_requests)) as f64 / interval_requests as f64
                } else {
                    0.0
                },
            },
            "latency_ms": self.request_latency.percentiles(),
            "services": services,
            "tokens": f.tokens.iter().map(|((provider, model), [input, output, reasoning, cached])| json!({
                "provider": provider.as_str(), "model": model, "input": input, "output": output,
                "reasoning": reasoning, "cached": cached,
            })).collect::<Vec<_>>(),
            "pipe": {
                "received": f.received,
                "lost": f.lost,
                "ingest_per_s": per_s(grew(f.received, last.received)),
                "dropped": {
                    "queue_full": f.dropped.queue_full,
                    "write_error": f.dropped.write_error,
                    "disconnected": f.dropped.disconnected,
                },
                "daemons": daemons,
            },
            "daemon": {
                "connections": summary.connections,
                "in_flight": summary.in_flight,
                "rss_bytes": summary.rss_bytes,
                "cpu_percent": (summary.cpu_percent * 10.0).round() / 10.0,
            },
            "dashboard": dashboard,
        });
        self.last = Some(f.clone());
        self.request_latency.clear();
        self.latency.iter_mut().for_each(LatencySketch::clear);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests: u64, errors: u64) -> Summary {
        let mut figures = Figures {
            requests,
            request_errors: errors,
            ws_errors: errors,
            ..Figures::default()
        };
        figures.calls[Provider::Kimi.index()] = requests;
        figures.tokens.insert(
            (Provider::Kimi, "moonshot-v1-8k".into()),
            [2 * requests, 3 * requests, 0, 0],
        );
        Summary {
            figures,
            connections: 3,
            ..Summary::default()
        }
    }

    #[test]
    fn totals_rates_and_cards_from_the_summary() {
        let mut a = Aggregate::new(8);
        a.tick(1.0, &summary(10, 1), json!({}));
        let s = a.tick(2.0, &summary(30, 3), json!({"clients": 0}));
        assert_eq!(s["requests"]["total"], 30);
        assert_eq!(s["requests"]["per_s"], 10.0);
        assert_eq!(s["requests"]["errors_total"], 3);
        assert_eq!(s["requests"]["error_rate"], 0.1);
        assert_eq!(s["services"]["kimi"]["events"], 30);
        assert_eq!(s["services"]["websocket"]["errors"], 3);
        assert_eq!(s["tokens"][0]["model"], "moonshot-v1-8k");
        assert_eq!(s["tokens"][0]["output"], 90);
        assert_eq!(s["daemon"]["connections"], 3);
        assert_eq!(s["services"]["storage"]["backend"], Value::Null);
        // A fresh interval: totals stay, rates restart; a total that fell gives 0.
        let s = a.tick(1.0, &summary(30, 3), json!({}));
        assert_eq!(
            (
                s["requests"]["total"].clone(),
                s["requests"]["per_s"].clone()
            ),
            (json!(30), json!(0.0))
        );
        let s = a.tick(1.0, &summary(5, 0), json!({}));
        assert_eq!(s["requests"]["per_s"], 0.0);
    }
}
