//! What the daemon tells the agent. Every event carries when it happened, the
//! correlation id of the request it belongs to (empty when none) and its sample weight:
//! an event sampled 1 in 10 stands for 10 occurrences.
//!
//! On the wire an event is its kind's tag (a byte) and a record: the time, correlation id
//! and weight, then the kind's fields. An agent skips a kind it does not know (see `wire`).

use crate::frame_error::FrameError;
use crate::heartbeat::Heartbeat;
use crate::hello::ModelEntry;
use crate::label::InlineStr;
use crate::wire::{Reader, Wire, Writer};

/// A request's correlation id: a W3C trace id (32 hex digits), a client's
/// `X-Correlation-ID`, or a UUID the daemon generated. Longer values are cut to 40
/// bytes: every event carries one, and the event's size is what recording costs.
pub type CorrelationId = InlineStr<40>;

/// A model name as the provider knows it (the longest today is 31 bytes). The agent keeps
/// the names a daemon announced in its catalogue as label values, up to a cap; this bounds
/// the event's size, not the label set.
pub type ModelName = InlineStr<48>;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Wall-clock time, microseconds since the Unix epoch (millisecond resolution: the
    /// daemon reads a coarse clock so that recording stays cheap).
    pub at_unix_us: u64,
    pub correlation: CorrelationId,
    /// How many occurrences this event stands for (the sampling rate when it was taken).
    pub weight: u32,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// One WebSocket message, in either direction.
    WsMessage { direction: Direction, bytes: u32 },
    /// An MCP request answered (or a notification handled).
    McpRequest {
        transport: Transport,
        method: McpMethod,
        tool: Tool,
        status: RequestStatus,
        duration_us: u64,
    },
    /// One model call, all attempts included.
    ProviderCall(ProviderCall),
    /// One conversation-storage operation.
    Storage {
        op: StorageOp,
        backend: StorageBackend,
        result: StorageResult,
        latency_us: u64,
    },
    /// One request to Supabase's REST API.
    Supabase {
        op: SupabaseOp,
        table: SupabaseTable,
        result: SupabaseResult,
        /// 0 when no HTTP response was received.
        http_status: u16,
        latency_us: u64,
        bytes: u32,
    },
    /// A client connection opened, closed or refused.
    Connection {
        transport: Transport,
        phase: ConnectionPhase,
        reason: RefusalReason,
    },
    /// Once a second: the daemon's exact running totals and its own state.
    Heartbeat(Box<Heartbeat>),
    /// The models the daemon serves changed (it also sends them in every Hello). The agent
    /// keeps these names as `model` label values.
    Catalogue { models: Vec<ModelEntry> },
}

record! {
    /// One model call, all attempts included.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct ProviderCall {
        pub provider: Provider,
        pub model: ModelName,
        pub status: CallStatus,
        pub latency_us: u64,
        /// Time to the first streamed token of any kind (reasoning included), for a
        /// streamed call that produced one.
        pub ttft_us: Option<u64>,
        /// Time to the first token of the answer itself; later than `ttft_us` when the
        /// model thought first.
        pub ttfa_us: Option<u64>,
        pub input_tokens: u32,
        pub output_tokens: u32,
        /// Of the output tokens, those spent reasoning (when the provider says).
        pub reasoning_tokens: u32,
        /// Of the input tokens, those served from the provider's cache (when it says).
        pub cached_tokens: u32,
        /// 1 for a call that succeeded at once; more when retries were needed.
        pub attempts: u8,
        /// Bytes of response body received.
        pub bytes: u32,
    }
}

label_enum! {
    /// The kind of an event: its tag on the wire, and a label.
    pub enum EventLabel {
        WsMessage => "ws_message",
        McpRequest => "mcp_request",
        ProviderCall => "provider_call",
        Storage => "storage",
        Supabase => "supabase",
        Connection => "connection",
        Heartbeat => "heartbeat",
        Catalogue => "catalogue",
        /// Never sent: what the agent counts a kind it does not know as.
        Unknown => "unknown",
    }
}

impl EventKind {
    pub fn label(&self) -> EventLabel {
        match self {
            EventKind::WsMessage { .. } => EventLabel::WsMessage,
            EventKind::McpRequest { .. } => EventLabel::McpRequest,
            EventKind::ProviderCall(_) => EventLabel::ProviderCall,
            EventKind::Storage { .. } => EventLabel::Storage,
            EventKind::Supabase { .. } => EventLabel::Supabase,
            EventKind::Connection { .. } => EventLabel::Connection,
            EventKind::Heartbeat(_) => EventLabel::Heartbeat,
            EventKind::Catalogue { .. } => EventLabel::Catalogue,
        }
    }
}

impl Event {
    /// Appends the event: its tag, then its record.
    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.primitive(self.kind.label().index() as u8);
        w.record(|w| {
            self.at_unix_us.write(w);
            self.correlation.write(w);
            self.weight.write(w);
            match &self.kind {
                EventKind::WsMessage { direction, bytes } => {
                    direction.write(w);
                    bytes.write(w);
                }
                EventKind::McpRequest {
                    transport,
                    method,
                    tool,
                    status,
                    duration_us,
                } => {
                    transport.write(w);
                    method.write(w);
                    tool.write(w);
                    status.write(w);
                    duration_us.write(w);
                }
                EventKind::ProviderCall(call) => call.write_fields(w),
                EventKind::Storage {
                    op,
                    backend,
                    result,
                    latency_us,
                } => {
                    op.write(w);
                    backend.write(w);
                    result.write(w);
                    latency_us.write(w);
                }
                EventKind::Supabase {
                    op,
                    table,
                    result,
                    http_status,
                    latency_us,
                    bytes,
                } => {
                    op.write(w);
                    table.write(w);
                    result.write(w);
                    http_status.write(w);
                    latency_us.write(w);
                    bytes.write(w);
                }
                EventKind::Connection {
                    transport,
                    phase,
                    reason,
                } => {
                    transport.write(w);
                    phase.write(w);
                    reason.write(w);
                }
                EventKind::Heartbeat(hb) => hb.write_fields(w),
                EventKind::Catalogue { models } => models.write(w),
            }
        });
    }

    /// Reads one event; `None` for a kind this side does not know (skipped, counted).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Option<Event>, FrameError> {
        let tag: u8 = r.primitive()?;
        let label = match EventLabel::from_index(usize::from(tag)) {
            Some(label) if label != EventLabel::Unknown => label,
            _ => {
                r.skip_record()?;
                r.unknown.event_kinds = r.unknown.event_kinds.saturating_add(1);
                return Ok(None);
            }
        };
        r.record(|r| {
            let at_unix_us = r.field()?;
            let correlation = r.field()?;
            let weight = r.field()?;
            let kind = match label {
                EventLabel::WsMessage => EventKind::WsMessage {
                    direction: r.field()?,
                    bytes: r.field()?,
                },
                EventLabel::McpRequest => EventKind::McpRequest {
                    transport: r.field()?,
                    method: r.field()?,
                    tool: r.field()?,
                    status: r.field()?,
                    duration_us: r.field()?,
                },
                EventLabel::ProviderCall => EventKind::ProviderCall(ProviderCall::read_fields(r)?),
                EventLabel::Storage => EventKind::Storage {
                    op: r.field()?,
                    backend: r.field()?,
                    result: r.field()?,
                    latency_us: r.field()?,
                },
                EventLabel::Supabase => EventKind::Supabase {
                    op: r.field()?,
                    table: r.field()?,
                    result: r.field()?,
                    http_status: r.field()?,
                    latency_us: r.field()?,
                    bytes: r.field()?,
                },
                EventLabel::Connection => EventKind::Connection {
                    transport: r.field()?,
                    phase: r.field()?,
                    reason: r.field()?,
                },
                EventLabel::Heartbeat => EventKind::Heartbeat(Box::new(Heartbeat::read_fields(r)?)),
                EventLabel::Catalogue => EventKind::Catalogue { models: r.field()? },
                EventLabel::Unknown => unreachable!("refused above"),
            };
            Ok(Some(Event {
                at_unix_us,
                correlation,
                weight,
                kind,
            }))
        })
    }
}

label_enum! {
    pub enum Direction { Inbound => "in", Outbound => "out", Other => "other" }
    fallback Other
}

label_enum! {
    /// How a client reached the daemon (the stdio bridge arrives over WebSocket).
    pub enum Transport { WebSocket => "websocket", Http => "http", Other => "other" }
    fallback Other
}

label_enum! {
    pub enum McpMethod {
        Initialize => "initialize",
        Initialized => "notifications/initialized",
        Ping => "ping",
        ToolsList => "tools/list",
        ToolsCall => "tools/call",
        LoggingSetLevel => "logging/setLevel",
        Cancelled => "notifications/cancelled",
        /// Anything else, answered with -32601 or ignored; also a method a newer daemon
        /// knows and this side does not.
        Other => "other",
        TasksGet => "tasks/get",
        TasksResult => "tasks/result",
        TasksList => "tasks/list",
        TasksCancel => "tasks/cancel",
    }
    fallback Other
}

label_enum! {
    pub enum Tool {
        /// The request was not a tool call.
        None => "none",
        Chat => "chat",
        ListModels => "listmodels",
        Version => "version",
        Status => "status",
        /// A tool name the daemon does not have.
        Unknown => "unknown",
        /// A tool of a newer daemon that this side does not know.
        Other => "other",
    }
    fallback Other
}

label_enum! {
    pub enum RequestStatus {
        Success => "success",
        /// Answered with a JSON-RPC error.
        Error => "error",
        /// A tool result with `isError: true`.
        ToolError => "tool_error",
        Cancelled => "cancelled",
        Other => "other",
    }
    fallback Other
}

label_enum! {
    pub enum Provider { Kimi => "kimi", Glm => "glm", Other => "other" }
    fallback Other
}

label_enum! {
    pub enum CallStatus {
        Success => "success",
        RateLimited => "rate_limited",
        ServerError => "server_error",
        ClientError => "client_error",
        Timeout => "timeout",
        ConnectError => "connect_error",
        BrokenStream => "broken_stream",
        Cancelled => "cancelled",
        Other => "other",
        /// The provider does not know the model asked for.
        ModelNotFound => "model_not_found",
    }
    fallback Other
}

label_enum! {
    pub enum StorageOp { Get => "get", Set => "set", Delete => "delete", Other => "other" }
    fallback Other
}

label_enum! {
    pub enum StorageBackend { Memory => "memory", Redis => "redis", Other => "other" }
    fallback Other
}

label_enum! {
    pub enum StorageResult {
        Hit => "hit",
        Miss => "miss",
        Ok => "ok",
        Error => "error",
        Timeout => "timeout",
        Other => "other",
    }
    fallback Other
}

label_enum! {
    pub enum SupabaseOp { Upsert => "upsert", Select => "select", Other => "other" }
    fallback Other
}

label_enum! {
    pub enum SupabaseTable {
        Conversations => "conversations",
        Messages => "messages",
        Other => "other",
    }
    fallback Other
}

label_enum! {
    pub enum SupabaseResult {
        Ok => "ok",
        /// A failure worth retrying (5xx, 429, timeout, connection refused).
        Retry => "retry",
        /// A failure retrying cannot fix (401, 403, 4xx).
        Rejected => "rejected",
        Other => "other",
    }
    fallback Other
}

label_enum! {
    pub enum ConnectionPhase {
        Opened => "opened",
        Closed => "closed",
        Refused => "refused",
        Other => "other",
    }
    fallback Other
}

label_enum! {
    pub enum RefusalReason {
        /// Not a refusal.
        None => "none",
        Unauthorized => "unauthorized",
        ForbiddenOrigin => "forbidden_origin",
        TooManyConnections => "too_many_connections",
        BadRequest => "bad_request",
        Other => "other",
        /// Headers or body not received within their deadline.
        Timeout => "timeout",
        /// The cap on Streamable HTTP sessions was reached.
        TooManySessions => "too_many_sessions",
    }
    fallback Other
}
