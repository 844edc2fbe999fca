//! The heartbeat: sent once a second, it carries what sampling cannot give — exact
//! running totals since the daemon started — and the daemon's own state.

use crate::event::CallStatus;
use crate::event::{
    ConnectionPhase, Direction, McpMethod, ModelName, Provider, RefusalReason, RequestStatus,
    StorageBackend, StorageOp, StorageResult, SupabaseOp, SupabaseResult, SupabaseTable, Tool,
    Transport,
};
use bincode::{Decode, Encode};

#[derive(Debug, Clone, PartialEq, Default, Encode, Decode)]
pub struct Heartbeat {
    pub uptime_ms: u64,
    pub process: ProcessStats,
    /// Client connections open now.
    pub connections: u32,
    /// Model calls under way now.
    pub in_flight: u32,
    pub pipe: PipeStats,
    /// Records waiting in the Supabase spool (0 when Supabase is off).
    pub spool_depth: u64,
    pub totals: Totals,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Encode, Decode)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    /// CPU used since the previous heartbeat, in percent of one core.
    pub cpu_percent: f32,
}

/// The daemon's side of the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct PipeStats {
    pub queue_depth: u32,
    pub queue_capacity: u32,
    /// Events the writer has taken from the queue since start.
    pub accepted: u64,
    pub dropped: DropCounts,
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

/// Events dropped by the daemon since start, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct DropCounts {
    pub queue_full: u64,
    pub write_error: u64,
    pub disconnected: u64,
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
        self.queue_full + self.write_error + self.disconnected
    }
}

/// Exact counts since the daemon started. Only non-zero entries are sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct Totals {
    pub ws_messages: Vec<WsTotal>,
    pub requests: Vec<RequestTotal>,
    pub provider_calls: Vec<ProviderTotal>,
    pub storage: Vec<StorageTotal>,
    pub supabase: Vec<SupabaseTotal>,
    pub connections: Vec<ConnectionTotal>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct WsTotal {
    pub direction: Direction,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct RequestTotal {
    pub transport: Transport,
    pub method: McpMethod,
    pub tool: Tool,
    pub status: RequestStatus,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct ProviderTotal {
    pub provider: Provider,
    pub model: ModelName,
    pub status: CallStatus,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct StorageTotal {
    pub op: StorageOp,
    pub backend: StorageBackend,
    pub result: StorageResult,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct SupabaseTotal {
    pub op: SupabaseOp,
    pub table: SupabaseTable,
    pub result: SupabaseResult,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct ConnectionTotal {
    pub transport: Transport,
    pub phase: ConnectionPhase,
    pub reason: RefusalReason,
    pub count: u64,
}
