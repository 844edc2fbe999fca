//! The wire contract between `exai-daemon` and `exai-agent`.
//!
//! Event types, the Hello frame, the frame codec (length prefix + bincode), the
//! sampling policy and the protocol version. Every bincode call in the project lives
//! in this crate, so a change of wire format touches nothing else. No runtime and no
//! I/O: the daemon and the agent own their sockets.

#[macro_use]
mod label;

pub mod event;
pub mod frame;
pub mod heartbeat;
pub mod hello;
pub mod sampling;
pub mod settings;

pub use event::{
    model_label, CallStatus, ConnectionPhase, CorrelationId, Direction, Event, EventKind,
    EventLabel, McpMethod, ModelName, Provider, RefusalReason, RequestStatus, StorageBackend,
    StorageOp, StorageResult, SupabaseOp, SupabaseResult, SupabaseTable, Tool, Transport,
    KNOWN_MODELS,
};
pub use frame::{AckDecoder, DaemonFrame, FrameError, StreamDecoder};
pub use heartbeat::{DropCounts, DropReason, Heartbeat, PipeStats, ProcessStats, Totals};
pub use hello::Hello;
pub use label::InlineStr;
pub use sampling::{SampleClass, SamplingPolicy};

/// Version of the wire format. Bumped on any incompatible change; the agent refuses a
/// Hello that carries a version it does not speak.
pub const PROTOCOL_VERSION: u16 = 1;

/// Where the agent listens and the daemon connects unless `EXAI_EVENTS_SOCKET` says otherwise.
pub const DEFAULT_EVENTS_SOCKET: &str = "/tmp/exai/events.sock";
