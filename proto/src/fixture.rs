//! A stream as a daemon newer than this crate would write it, within the rule in `wire`:
//! a Hello with a field appended, an event kind this version does not know, label values
//! past the end of their enums, and fields appended to records. The compatibility tests of
//! this crate and the agent's end-to-end tests decode it.

use crate::event::{Direction, Event, EventKind, McpMethod, Transport};
use crate::frame::encode_frame;
use crate::heartbeat::{Heartbeat, RequestTotal, Totals};
use crate::hello::Hello;
use crate::wire::{Wire, Writer};
use crate::{frame, PROTOCOL_VERSION};

/// Tags and label indexes no version of this crate uses.
const NEW_EVENT_KIND: u8 = 200;
const NEW_TOOL: u32 = 42;
const NEW_STATUS: u32 = 17;

/// What the stream holds, as a reader of this version should find it.
pub struct NewerDaemon {
    /// The Hello, then one batch.
    pub wire: Vec<u8>,
    pub hello: Hello,
    /// The batch's events of known kinds, as this version reads them.
    pub known: Vec<Event>,
    /// Events in the batch, known or not.
    pub batch_len: u64,
    /// Events of unknown kinds in the batch.
    pub unknown_kinds: u32,
    /// Records in the batch carrying fields this version does not know.
    pub unknown_fields: u32,
    /// Label values in the batch this version does not know.
    pub unknown_labels: u32,
    /// Requests counted in the heartbeat's totals (under tool `other`, status `success`).
    pub heartbeat_requests: u64,
}

/// Something a newer daemon appends to a record.
fn appended(w: &mut Writer<'_>) {
    w.primitive(0xDEAD_BEEF_u64);
    w.bytes(b"a field this version does not know");
}

/// The stream of a daemon named `name` whose events start at `first_seq`.
pub fn newer_daemon(instance_id: &str, name: &str, first_seq: u64) -> NewerDaemon {
    let hello = Hello {
        instance_id: instance_id.into(),
        name: name.into(),
        pid: 4242,
        version: "99.0.0".into(),
        next_seq: first_seq,
        acked_seq: first_seq,
        ..Hello::default()
    };
    let mut wire = Vec::new();
    let _ = encode_frame(&mut wire, |w| {
        w.raw(&frame::MAGIC);
        w.raw(&PROTOCOL_VERSION.to_le_bytes());
        hello.write_fields(w);
        appended(w);
    });

    let heartbeat_requests = 7;
    let mut totals = Totals::default();
    totals.requests.push(RequestTotal {
        transport: Transport::WebSocket,
        method: McpMethod::ToolsCall,
        tool: crate::Tool::Other,
        status: crate::RequestStatus::Success,
        count: heartbeat_requests,
    });
    let heartbeat = Heartbeat {
        uptime_ms: 1000,
        connections: 1,
        ..Heartbeat::default()
    };
    let ws = Event {
        at_unix_us: 1,
        correlation: "corr-ws".into(),
        weight: 1,
        kind: EventKind::WsMessage {
            direction: Direction::Inbound,
            bytes: 12,
        },
    };
    let _ = encode_frame(&mut wire, |w| {
        w.primitive(first_seq);
        w.raw(&5u32.to_le_bytes());
        // A request for a tool and with a status this version does not know, and a field
        // appended to the event.
        w.primitive(crate::EventLabel::McpRequest.index() as u8);
        w.record(|w| {
            w.primitive(2u64);
            crate::CorrelationId::new("corr-new-tool").write(w);
            w.primitive(1u32);
            Transport::Http.write(w);
            McpMethod::ToolsCall.write(w);
            w.primitive(NEW_TOOL);
            w.primitive(NEW_STATUS);
            w.primitive(1500u64);
            appended(w);
        });
        // An event of a kind this version does not know.
        w.primitive(NEW_EVENT_KIND);
        w.record(|w| {
            w.primitive(3u64);
            appended(w);
        });
        // A heartbeat whose totals hold a tool this version does not know, with fields
        // appended to the heartbeat and to that total.
        w.primitive(crate::EventLabel::Heartbeat.index() as u8);
        w.record(|w| {
            w.primitive(4u64);
            crate::CorrelationId::empty().write(w);
            w.primitive(1u32);
            heartbeat.uptime_ms.write(w);
            heartbeat.process.write(w);
            heartbeat.connections.write(w);
            heartbeat.in_flight.write(w);
            heartbeat.pipe.write(w);
            w.record(|w| {
                Vec::<crate::heartbeat::WsTotal>::new().write(w);
                w.primitive(1u64);
                w.record(|w| {
                    Transport::WebSocket.write(w);
                    McpMethod::ToolsCall.write(w);
                    w.primitive(NEW_TOOL);
                    crate::RequestStatus::Success.write(w);
                    w.primitive(heartbeat_requests);
                    appended(w);
                });
            });
            heartbeat.storage.write(w);
            heartbeat.supabase.write(w);
            appended(w);
        });
        ws.write(w);
        w.primitive(NEW_EVENT_KIND + 1);
        w.record(appended);
    });

    let mut known_heartbeat = heartbeat;
    known_heartbeat.totals = totals;
    NewerDaemon {
        wire,
        hello,
        known: vec![
            Event {
                at_unix_us: 2,
                correlation: "corr-new-tool".into(),
                weight: 1,
                kind: EventKind::McpRequest {
                    transport: Transport::Http,
                    method: McpMethod::ToolsCall,
                    tool: crate::Tool::Other,
                    status: crate::RequestStatus::Other,
                    duration_us: 1500,
                },
            },
            Event {
                at_unix_us: 4,
                correlation: crate::CorrelationId::empty(),
                weight: 1,
                kind: EventKind::Heartbeat(Box::new(known_heartbeat)),
            },
            ws,
        ],
        batch_len: 5,
        unknown_kinds: 2,
        unknown_fields: 3,
        unknown_labels: 3,
        heartbeat_requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Batch, DaemonFrame, StreamDecoder};
    use crate::wire::Unknown;

    #[test]
    fn this_version_reads_a_newer_daemon_and_counts_what_it_skipped() {
        let newer = newer_daemon("d-1", "host:8079", 10);
        let mut decoder = StreamDecoder::new();
        decoder.feed(&newer.wire);
        assert_eq!(
            decoder.next_frame().unwrap(),
            Some(DaemonFrame::Hello {
                hello: newer.hello.clone(),
                unknown: Unknown {
                    fields: 1,
                    ..Unknown::default()
                }
            })
        );
        assert_eq!(
            decoder.next_frame().unwrap(),
            Some(DaemonFrame::Batch(Batch {
                first_seq: 10,
                events: newer.known.clone(),
                len: newer.batch_len,
                unknown: Unknown {
                    event_kinds: newer.unknown_kinds,
                    fields: newer.unknown_fields,
                    label_values: newer.unknown_labels,
                }
            }))
        );
        assert_eq!(decoder.next_frame().unwrap(), None);
    }
}
