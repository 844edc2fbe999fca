//! The heartbeat: sent once a second, it carries what sampling cannot give — exact
//! running totals since the daemon started — and the daemon's own state, including how
//! it sees its dependencies (so the agent needs no credentials to report them).

use crate::event::{
    CallStatus, ConnectionPhase, Direction, McpMethod, ModelName, Provider, RefusalReason,
    RequestStatus, StorageBackend, StorageOp, StorageResult, SupabaseOp, SupabaseResult,
    SupabaseTable, Tool, Transport,
};

record! {
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct Heartbeat {
        pub uptime_ms: u64,
        pub process: ProcessStats,
        /// Client sessions open now: WebSocket connections and Streamable HTTP sessions.
        pub connections: u32,
        /// Model calls under way now.
        pub in_flight: u32,
        pub pipe: PipeStats,
        pub totals: Totals,
        /// Conversation storage, as the daemon sees it.
        pub storage: StorageView,
        /// Supabase persistence, as the daemon sees it.
        pub supabase: SupabaseView,
    }
}

record! {
    #[derive(Debug, Clone, Copy, PartialEq, Default)]
    pub struct ProcessStats {
        pub rss_bytes: u64,
        /// CPU used since the previous heartbeat, in percent of one core.
        pub cpu_percent: f32,
    }
}

record! {
    /// The daemon's side of the pipe.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct PipeStats {
        pub queue_depth: u32,
        pub queue_capacity: u32,
        /// Events the writer has taken from the queue since start.
        pub accepted: u64,
        pub dropped: DropCounts,
    }
}

label_enum! {
    /// Why the daemon dropped a sampled event instead of delivering it.
    pub enum DropReason {
        /// The bounded queue was full at `record`.
        QueueFull => "queue_full",
        /// Writing the batch to the socket failed.
        WriteError => "write_error",
        /// No agent was connected when the batch was ready.
        Disconnected => "disconnected",
    }
}

record! {
    /// Events dropped by the daemon since start, by reason.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DropCounts {
        pub queue_full: u64,
        pub write_error: u64,
        pub disconnected: u64,
    }
}

impl DropCounts {
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.queue_full,
            DropReason::WriteError => self.write_error,
            DropReason::Disconnected => self.disconnected,
        }
    }

    pub fn total(&self) -> u64 {
        self.queue_full
            .saturating_add(self.write_error)
            .saturating_add(self.disconnected)
    }
}

label_enum! {
    /// What the last failed conversation-storage operation ran into.
    pub enum StorageErrorKind {
        /// No failure since the last success.
        None => "none",
        Timeout => "timeout",
        ConnectionRefused => "connection_refused",
        Connection => "connection",
        Auth => "auth",
        Other => "other",
    }
    fallback Other
}

record! {
    /// Conversation storage as the daemon sees it: the result of its own operations and,
    /// while the backend is down, of its reconnect probe.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct StorageView {
        pub backend: StorageBackend,
        /// Whether the last operation or probe got an answer.
        pub reachable: bool,
        pub last_error: StorageErrorKind,
        /// Latency of the last operation or probe that got an answer.
        pub latency_us: u64,
        /// Milliseconds since the last operation or probe; `u64::MAX` before the first.
        pub checked_ms_ago: u64,
    }
}

record! {
    /// Supabase persistence as the daemon sees it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct SupabaseView {
        pub enabled: bool,
        /// The last upload's outcome; `None` before the first.
        pub last_upload: Option<SupabaseResult>,
        /// Its HTTP status; 0 when none was received.
        pub last_http_status: u16,
        /// Milliseconds since the last upload attempt; `u64::MAX` before the first.
        pub last_upload_ms_ago: u64,
        /// Turns waiting in the spool.
        pub spool_depth: u64,
        pub spool_bytes: u64,
        /// Turns not persisted because the spool was full, since start.
        pub refused_turns: u64,
        /// Turns whose spool write did not finish within its time limit, since start
        /// (written later, when the disk answers).
        pub write_timeouts: u64,
        /// Rows Supabase refused for good and set aside in the dead-letter file, since start.
        pub dead_letters: u64,
        /// Damaged spool records skipped, since start.
        pub damaged_records: u64,
    }
}

record! {
    /// Exact counts since the daemon started. Only non-zero entries are sent.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Totals {
        pub ws_messages: Vec<WsTotal>,
        pub requests: Vec<RequestTotal>,
        pub provider_calls: Vec<ProviderTotal>,
        pub storage: Vec<StorageTotal>,
        pub supabase: Vec<SupabaseTotal>,
        pub connections: Vec<ConnectionTotal>,
    }
}

impl Totals {
    /// Whether no total is listed at all.
    pub fn is_empty(&self) -> bool {
        self.ws_messages.is_empty()
            && self.requests.is_empty()
            && self.provider_calls.is_empty()
            && self.storage.is_empty()
            && self.supabase.is_empty()
            && self.connections.is_empty()
    }
}

record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct WsTotal {
        pub direction: Direction,
        pub messages: u64,
        pub bytes: u64,
    }
}

record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct RequestTotal {
        pub transport: Transport,
        pub method: McpMethod,
        pub tool: Tool,
        pub status: RequestStatus,
        pub count: u64,
    }
}

record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ProviderTotal {
        pub provider: Provider,
        pub model: ModelName,
        pub status: CallStatus,
        pub calls: u64,
        pub input_tokens: u64,
        pub output_tokens: u64,
        /// Of the output tokens, those spent reasoning.
        pub reasoning_tokens: u64,
        /// Of the input tokens, those served from the provider's cache.
        pub cached_tokens: u64,
    }
}

record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct StorageTotal {
        pub op: StorageOp,
        pub backend: StorageBackend,
        pub result: StorageResult,
        pub count: u64,
    }
}

record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct SupabaseTotal {
        pub op: SupabaseOp,
        pub table: SupabaseTable,
        pub result: SupabaseResult,
        pub count: u64,
    }
}

record! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ConnectionTotal {
        pub transport: Transport,
        pub phase: ConnectionPhase,
        pub reason: RefusalReason,
        pub count: u64,
    }
}
