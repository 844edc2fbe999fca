//! The first frame on every connection: who the daemon is and where its sequence stands.

use crate::label::InlineStr;
use crate::sampling::SamplingPolicy;
use bincode::{Decode, Encode};

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Hello {
    /// Random per daemon process; labels that daemon's series in the agent.
    pub instance_id: InlineStr<40>,
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
}
