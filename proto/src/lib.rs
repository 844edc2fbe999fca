//! The wire contract between `exai-daemon` and `exai-agent`.
//!
//! Event types, the Hello frame, the frame codec (length prefix + records of bincode
//! primitives), the sampling policy and the protocol version. Every bincode call in the
//! project lives in this crate, so a change of wire format touches nothing else. No
//! runtime and no I/O: the daemon and the agent own their sockets.
//!
//! The compatibility rule — what a daemon and an agent of different versions may differ
//! in without a new protocol version — is in [`wire`].

#[macro_use]
pub mod wire;
#[macro_use]
mod label;

pub mod event;
/// Frames of a newer daemon, for the compatibility tests (feature `fixture`).
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
pub mod frame;
pub mod frame_error;
pub mod heartbeat;
pub mod hello;
pub mod sampling;

pub use event::{
    CallStatus, ConnectionPhase, CorrelationId, Direction, Event, EventKind, EventLabel, McpMethod,
    ModelName, Provider, ProviderCall, RefusalReason, RequestStatus, StorageBackend, StorageOp,
    StorageResult, SupabaseOp, SupabaseResult, SupabaseTable, Tool, Transport,
};
pub use frame::{AckDecoder, Batch, BatchEncoder, DaemonFrame, FrameError, StreamDecoder};
pub use heartbeat::{
    DropCounts, DropReason, Heartbeat, PipeStats, ProcessStats, StorageErrorKind, StorageView,
    SupabaseView, Totals,
};
pub use hello::{DaemonName, Hello, ModelEntry};
pub use label::InlineStr;
pub use sampling::{SampleClass, SamplingPolicy};
pub use wire::Unknown;

/// Version of the wire format. Bumped only on a change the rule in [`wire`] does not
/// allow; the agent refuses a Hello that carries a version it does not speak. Version 2:
/// records and tagged events that a peer of another version can read.
pub const PROTOCOL_VERSION: u16 = 2;

/// Where the agent listens and the daemon connects unless `EXAI_EVENTS_SOCKET` says otherwise.
pub const DEFAULT_EVENTS_SOCKET: &str = "/tmp/exai/events.sock";
