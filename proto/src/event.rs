//! What the daemon tells the agent. Every event carries when it happened, the
//! correlation id of the request it belongs to (empty when none) and its sample weight:
//! an event sampled 1 in 10 stands for 10 occurrences.

use crate::heartbeat::Heartbeat;
use crate::label::InlineStr;
use bincode::{Decode, Encode};

/// A request's correlation id: a W3C trace id (32 hex digits), a client's
/// `X-Correlation-ID`, or a UUID the daemon generated. Longer values are cut to 40
/// bytes: every event carries one, and the event's size is what recording costs.
pub type CorrelationId = InlineStr<40>;

/// A model name as the provider knows it (the longest today is 21 bytes). The agent folds
/// names outside its vocabulary into `other`, so this bounds the event size, not the
/// label set.
pub type ModelName = InlineStr<32>;

/// The model names the agent keeps as label values; any other name is folded into
/// `other`, so a daemon newer than its agent (or a bad peer) cannot grow the label set.
/// The daemon's model table is checked against this list by a unit test.
pub const KNOWN_MODELS: &[&str] = &[
    "kimi-k2-0905-preview",
    "kimi-k2-turbo-preview",
    "kimi-thinking-preview",
    "moonshot-v1-8k",
    "moonshot-v1-32k",
    "moonshot-v1-128k",
    "glm-4.6",
    "glm-4.5",
    "glm-4.5-air",
    "glm-4.5-flash",
];

/// `name` as a bounded label value: itself when known, else `other`.
pub fn model_label(name: &str) -> &'static str {
    KNOWN_MODELS
        .iter()
        .copied()
        .find(|known| *known == name)
        .unwrap_or("other")
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Event {
    /// Wall-clock time, microseconds since the Unix epoch (millisecond resolution: the
    /// daemon reads a coarse clock so that recording stays cheap).
    pub at_unix_us: u64,
    pub correlation: CorrelationId,
    /// How many occurrences this event stands for (the sampling rate when it was taken).
    pub weight: u32,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
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
    ProviderCall {
        provider: Provider,
        model: ModelName,
        status: CallStatus,
        latency_us: u64,
        /// Time to first token for a streamed call that produced one.
        ttft_us: Option<u64>,
        input_tokens: u32,
        output_tokens: u32,
        /// 1 for a call that succeeded at once; more when retries were needed.
        attempts: u8,
        /// Bytes of response body received.
        bytes: u32,
    },
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
}

label_enum! {
    /// The kind of an event, as a label.
    pub enum EventLabel {
        WsMessage => "ws_message",
        McpRequest => "mcp_request",
        ProviderCall => "provider_call",
        Storage => "storage",
        Supabase => "supabase",
        Connection => "connection",
        Heartbeat => "heartbeat",
    }
}

impl EventKind {
    pub fn label(&self) -> EventLabel {
        match self {
            EventKind::WsMessage { .. } => EventLabel::WsMessage,
            EventKind::McpRequest { .. } => EventLabel::McpRequest,
            EventKind::ProviderCall { .. } => EventLabel::ProviderCall,
            EventKind::Storage { .. } => EventLabel::Storage,
            EventKind::Supabase { .. } => EventLabel::Supabase,
            EventKind::Connection { .. } => EventLabel::Connection,
            EventKind::Heartbeat(_) => EventLabel::Heartbeat,
        }
    }
}

label_enum! {
    pub enum Direction { Inbound => "in", Outbound => "out" }
}

label_enum! {
    /// How a client reached the daemon (the stdio bridge arrives over WebSocket).
    pub enum Transport { WebSocket => "websocket", Http => "http" }
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
        /// Anything else, answered with -32601 or ignored.
        Other => "other",
    }
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
    }
}

label_enum! {
    pub enum RequestStatus {
        Success => "success",
        /// Answered with a JSON-RPC error.
        Error => "error",
        /// A tool result with `isError: true`.
        ToolError => "tool_error",
        Cancelled => "cancelled",
    }
}

label_enum! {
    pub enum Provider { Kimi => "kimi", Glm => "glm" }
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
    }
}

label_enum! {
    pub enum StorageOp { Get => "get", Set => "set", Delete => "delete" }
}

label_enum! {
    pub enum StorageBackend { Memory => "memory", Redis => "redis" }
}

label_enum! {
    pub enum StorageResult {
        Hit => "hit",
        Miss => "miss",
        Ok => "ok",
        Error => "error",
        Timeout => "timeout",
    }
}

label_enum! {
    pub enum SupabaseOp { Upsert => "upsert", Select => "select" }
}

label_enum! {
    pub enum SupabaseTable { Conversations => "conversations", Messages => "messages" }
}

label_enum! {
    pub enum SupabaseResult {
        Ok => "ok",
        /// A failure worth retrying (5xx, 429, timeout, connection refused).
        Retry => "retry",
        /// A failure retrying cannot fix (401, 403, 4xx).
        Rejected => "rejected",
    }
}

label_enum! {
    pub enum ConnectionPhase { Opened => "opened", Closed => "closed", Refused => "refused" }
}

label_enum! {
    pub enum RefusalReason {
        /// Not a refusal.
        None => "none",
        Unauthorized => "unauthorized",
        ForbiddenOrigin => "forbidden_origin",
        TooManyConnections => "too_many_connections",
        BadRequest => "bad_request",
    }
}
