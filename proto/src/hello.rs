//! The first frame on every connection: who the daemon is, what it serves and where its
//! sequence stands.

use crate::event::{ModelName, Provider};
use crate::label::InlineStr;
use crate::sampling::SamplingPolicy;

/// A daemon's readable name: `EXAI_DAEMON_NAME`, by default its host name and port.
pub type DaemonName = InlineStr<64>;

record! {
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct Hello {
        /// Random per daemon process; told apart from an earlier process of the same name by it.
        pub instance_id: InlineStr<40>,
        /// Labels the daemon's series in the agent (`daemon`): stable across restarts.
        pub name: DaemonName,
        pub pid: u32,
        /// The daemon's crate version.
        pub version: InlineStr<32>,
        pub started_at_unix_ms: u64,
        pub sampling: SamplingPolicy,
        /// Sequence number of the next event this connection will carry.
        pub next_seq: u64,
        /// Every event below this sequence number was acknowledged by an agent. Events in
        /// `acked_seq..next_seq` were written to an earlier connection and never confirmed:
        /// an agent that has not seen this daemon before counts them as lost.
        pub acked_seq: u64,
        /// The models the daemon serves now; later changes come as `Catalogue` events.
        pub models: Vec<ModelEntry>,
    }
}

record! {
    /// A model in the daemon's catalogue.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ModelEntry {
        pub provider: Provider,
        pub name: ModelName,
    }
}
