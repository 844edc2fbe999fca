//! Events as the dashboard shows them: a rate-limited live stream that keeps the most
//! telling events (failures first, then model calls, requests, storage), and a ring of
//! recent request events that a client can search by correlation id, so one request can
//! be found even when the stream shows a sliver of a busy second.

use exai_proto::{
    CallStatus, Event, EventKind, McpMethod, Provider, RequestStatus, StorageResult, SupabaseResult,
};
use serde::Serialize;
use std::collections::VecDeque;

/// One row of the recent-events table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    pub at_ms: u64,
    pub service: &'static str,
    pub kind: &'static str,
    pub correlation_id: String,
    pub status: &'static str,
    pub latency_ms: Option<f64>,
    pub summary: String,
}

fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// The dashboard service an event belongs to.
pub fn service(kind: &EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::WsMessage { .. } | EventKind::McpRequest { .. } => "websocket",
        EventKind::Connection { .. } => "websocket",
        EventKind::ProviderCall(call) => provider_service(call.provider)?,
        EventKind::Storage { .. } => "storage",
        EventKind::Supabase { .. } => "supabase",
        EventKind::Heartbeat(_) | EventKind::Catalogue { .. } => return None,
    })
}

/// The card of a provider; none for one this agent does not know.
pub fn provider_service(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Kimi => Some("kimi"),
        Provider::Glm => Some("glm"),
        Provider::Other => None,
    }
}

/// Whether the event reports a failure.
pub fn failed(kind: &EventKind) -> bool {
    match kind {
        EventKind::McpRequest { status, .. } => {
            matches!(status, RequestStatus::Error | RequestStatus::ToolError)
        }
        EventKind::ProviderCall(call) => {
            !matches!(call.status, CallStatus::Success | CallStatus::Cancelled)
        }
        EventKind::Storage { result, .. } => {
            matches!(result, StorageResult::Error | StorageResult::Timeout)
        }
        EventKind::Supabase { result, .. } => *result != SupabaseResult::Ok,
        EventKind::Connection { phase, .. } => *phase == exai_proto::ConnectionPhase::Refused,
        _ => false,
    }
}

impl EventView {
    pub fn of(event: &Event) -> Option<Self> {
        let service = service(&event.kind)?;
        let (status, latency_ms, summary) = match &event.kind {
            EventKind::WsMessage { direction, bytes } => {
                ("ok", None, format!("message {direction}, {bytes} bytes"))
            }
            EventKind::McpRequest {
                transport,
                method,
                tool,
                status,
                duration_us,
            } => {
                let what = match method {
                    McpMethod::ToolsCall => format!("tools/call {tool}"),
                    other => other.as_str().to_string(),
                };
                (
                    status.as_str(),
                    Some(ms(*duration_us)),
                    format!("{what} over {transport}: {status}"),
                )
            }
            EventKind::ProviderCall(call) => {
                let status = call.status;
                let mut summary = format!("{}: {status}", call.model.as_str());
                if status == CallStatus::Success {
                    summary += &format!(", {} → {} tokens", call.input_tokens, call.output_tokens);
                    if call.reasoning_tokens > 0 {
                        summary += &format!(" ({} reasoning)", call.reasoning_tokens);
                    }
                }
                match (call.ttft_us, call.ttfa_us) {
                    (Some(first), Some(answer)) if answer > first => {
                        summary += &format!(
                            ", thought {} ms, first answer token {} ms",
                            ms(first),
                            ms(answer)
                        )
                    }
                    (Some(first), _) => summary += &format!(", first token {} ms", ms(first)),
                    _ => {}
                }
                if call.attempts > 1 {
                    summary += &format!(", {} attempts", call.attempts);
                }
                let latency = (status == CallStatus::Success).then(|| ms(call.latency_us));
                (status.as_str(), latency, summary)
            }
            EventKind::Storage {
                op,
                backend,
                result,
                latency_us,
            } => (
                result.as_str(),
                Some(ms(*latency_us)),
                format!("{op} on {backend}: {result}"),
            ),
            EventKind::Supabase {
                op,
                table,
                result,
                http_status,
                latency_us,
                ..
            } => (
                result.as_str(),
                (*http_status != 0).then(|| ms(*latency_us)),
                match http_status {
                    0 => format!("{op} {table}: no answer"),
                    code => format!("{op} {table}: HTTP {code}"),
                },
            ),
            EventKind::Connection {
                transport,
                phase,
                reason,
            } => (
                phase.as_str(),
                None,
                match reason {
                    exai_proto::RefusalReason::None => format!("{transport} connection {phase}"),
                    r => format!("{transport} connection {phase}: {r}"),
                },
            ),
            EventKind::Heartbeat(_) | EventKind::Catalogue { .. } => return None,
        };
        Some(Self {
            at_ms: event.at_unix_us / 1000,
            service,
            kind: event.kind.label().as_str(),
            correlation_id: event.correlation.as_str().to_string(),
            status,
            latency_ms,
            summary,
        })
    }
}

/// How much an event deserves a place in the rate-limited stream; lower goes first.
fn priority(kind: &EventKind) -> usize {
    if failed(kind) {
        return 0;
    }
    match kind {
        EventKind::ProviderCall(_) | EventKind::Supabase { .. } => 1,
        EventKind::McpRequest { .. } | EventKind::Connection { .. } => 2,
        EventKind::Storage { .. } => 3,
        _ => 4,
    }
}

const PRIORITIES: usize = 5;

/// The candidates for the next events frame: the newest few of each priority.
pub struct Candidates {
    by_priority: [VecDeque<Event>; PRIORITIES],
    /// Most kept per priority between two frames.
    keep: usize,
    /// Events offered since the last frame.
    offered: u64,
}

impl Candidates {
    pub fn new(keep: usize) -> Self {
        Self {
            by_priority: Default::default(),
            keep: keep.max(1),
            offered: 0,
        }
    }

    pub fn offer(&mut self, event: &Event) {
        if matches!(
            event.kind,
            EventKind::Heartbeat(_) | EventKind::Catalogue { .. }
        ) {
            return;
        }
        self.offered += 1;
        let queue = &mut self.by_priority[priority(&event.kind)];
        if queue.len() == self.keep {
            queue.pop_front();
        }
        queue.push_back(event.clone());
    }

    /// Up to `quota` events, most telling first, shown oldest first; and how many of
    /// those offered were left out.
    pub fn take(&mut self, quota: usize) -> (Vec<EventView>, u64) {
        let mut picked: Vec<Event> = Vec::with_capacity(quota);
        for queue in &mut self.by_priority {
            let room = quota - picked.len();
            let skip = queue.len().saturating_sub(room);
            picked.extend(queue.drain(..).skip(skip));
        }
        picked.sort_by_key(|e| e.at_unix_us);
        let suppressed = self.offered.saturating_sub(picked.len() as u64);
        self.offered = 0;
        (
            picked.iter().filter_map(EventView::of).collect(),
            suppressed,
        )
    }
}

/// Recent events that belong to a request, for search by correlation id.
pub struct RecentRequests {
    ring: VecDeque<Event>,
    capacity: usize,
}

impl RecentRequests {
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, event: &Event) {
        // WebSocket messages outnumber everything else and add nothing to a search.
        if event.correlation.is_empty()
            || matches!(
                event.kind,
                EventKind::Heartbeat(_) | EventKind::Catalogue { .. } | EventKind::WsMessage { .. }
            )
        {
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(event.clone());
    }

    /// Events whose correlation id contains `needle` (ASCII case-insensitive), newest
    /// last.
    pub fn search(&self, needle: &str, limit: usize) -> Vec<EventView> {
        let needle = needle.trim().as_bytes();
        if needle.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<EventView> = self
            .ring
            .iter()
            .rev()
            .filter(|e| {
                e.correlation
                    .as_str()
                    .as_bytes()
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle))
            })
            .take(limit)
            .filter_map(EventView::of)
            .collect();
        found.reverse();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exai_proto::{Direction, ModelName, Tool, Transport};

    fn event(kind: EventKind, correlation: &str, at: u64) -> Event {
        Event {
            at_unix_us: at,
            correlation: correlation.into(),
            weight: 1,
            kind,
        }
    }

    fn call(status: CallStatus) -> EventKind {
        EventKind::ProviderCall(exai_proto::ProviderCall {
            provider: Provider::Glm,
            model: ModelName::new("glm-4.5"),
            status,
            latency_us: 1500,
            ttft_us: Some(300),
            ttfa_us: Some(300),
            input_tokens: 3,
            output_tokens: 5,
            attempts: 1,
            bytes: 10,
            ..Default::default()
        })
    }

    fn message() -> EventKind {
        EventKind::WsMessage {
            direction: Direction::Inbound,
            bytes: 10,
        }
    }

    #[test]
    fn the_stream_keeps_failures_and_model_calls_over_messages() {
        let mut c = Candidates::new(8);
        for i in 0..100 {
            c.offer(&event(message(), "", i));
        }
        c.offer(&event(call(CallStatus::Success), "ok", 200));
        c.offer(&event(call(CallStatus::ServerError), "bad", 100));
        let (views, suppressed) = c.take(3);
        assert_eq!(suppressed, 99);
        let ids: Vec<&str> = views.iter().map(|v| v.correlation_id.as_str()).collect();
        assert_eq!(ids, ["", "bad", "ok"]);
        assert_eq!(views[1].status, "server_error");
        assert_eq!(views[2].latency_ms, Some(1.5));
        assert_eq!(c.take(3), (Vec::new(), 0));
    }

    #[test]
    fn search_finds_a_request_by_part_of_its_correlation_id() {
        let mut r = RecentRequests::new(3);
        let request = EventKind::McpRequest {
            transport: Transport::WebSocket,
            method: McpMethod::ToolsCall,
            tool: Tool::Chat,
            status: RequestStatus::Success,
            duration_us: 2000,
        };
        r.push(&event(request.clone(), "abc-111", 1));
        r.push(&event(message(), "abc-111", 2));
        r.push(&event(call(CallStatus::Success), "ABC-111", 3));
        r.push(&event(request.clone(), "zzz", 4));
        let found = r.search("abc", 10);
        assert_eq!(found.len(), 2, "messages are not kept");
        assert_eq!(found[0].summary, "tools/call chat over websocket: success");
        r.push(&event(request.clone(), "late", 5));
        assert_eq!(r.search("abc-111", 10).len(), 1, "the oldest fell out");
        r.push(&event(request, "later", 6));
        assert!(r.search("abc-111", 10).is_empty());
        assert!(r.search("  ", 10).is_empty());
    }
}
