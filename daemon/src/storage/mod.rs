//! Conversation threads, keyed by `continuation_id`. The in-memory store is the embedded
//! default; Redis (when `REDIS_URL` is set) is another implementation of the same trait.
//!
//! A turn joins its conversation by an append that is atomic in the backend, never by
//! reading the thread, adding to it and writing it back: two chats continuing one
//! conversation at once (on one daemon or several sharing Redis) both keep their turn.
//! A turn Redis cannot take goes to the [`journal`] on disk and joins its conversation
//! when Redis answers again.

pub mod journal;
pub mod memory;
pub mod redis;

pub use journal::Journal;

use exai_proto::{StorageBackend, StorageErrorKind};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// One exchange of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub user: String,
    pub assistant: String,
    pub model: String,
    pub at_unix_ms: u64,
}

/// A conversation: its turns, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    pub turns: Vec<Turn>,
}

impl Thread {
    /// Appends a turn, dropping the oldest ones beyond `max_turns`.
    pub fn push(&mut self, turn: Turn, max_turns: usize) {
        self.turns.push(turn);
        let excess = self.turns.len().saturating_sub(max_turns.max(1));
        self.turns.drain(..excess);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// `message` says it in a person's words; `cause`, when there is one, is the error.
    #[error("{backend} storage unavailable: {message}")]
    Unavailable {
        backend: StorageBackend,
        /// What the failure was, for the heartbeat's view of storage.
        kind: StorageErrorKind,
        message: String,
        #[source]
        cause: Option<crate::cause::Cause>,
    },
    #[error("{backend} storage did not answer within {millis} ms")]
    Timeout {
        backend: StorageBackend,
        millis: u64,
    },
    #[error("stored thread {what} is unreadable")]
    Corrupt {
        what: String,
        #[source]
        cause: crate::cause::Cause,
    },
    #[error("the conversation is {bytes} bytes, more than the in-memory store keeps ({max}, EXAI_MEMORY_STORE_MAX_BYTES)")]
    TooLarge { bytes: usize, max: usize },
}

/// How full a bounded store is, for the `status` tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUsage {
    pub threads: usize,
    pub max_threads: usize,
    pub bytes: usize,
    pub max_bytes: usize,
}

impl StorageError {
    /// Whether the backend may take the same write later (it was away or slow), so the
    /// turn is worth keeping for it; a refusal about the data itself is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable { .. } | StorageError::Timeout { .. }
        )
    }

    /// What the failure was, as the heartbeat reports it.
    pub fn kind(&self) -> StorageErrorKind {
        match self {
            StorageError::Unavailable { kind, .. } => *kind,
            StorageError::Timeout { .. } => StorageErrorKind::Timeout,
            StorageError::Corrupt { .. } | StorageError::TooLarge { .. } => StorageErrorKind::Other,
        }
    }
}

/// Whether a backend answers, for the `status` tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub reachable: bool,
    /// Why not, when it is not.
    pub error: Option<String>,
}

pub trait ConversationStore: Send + Sync {
    fn backend(&self) -> StorageBackend;

    /// What the store last learnt about its backend; memory always answers.
    fn health(&self) -> StoreHealth {
        StoreHealth {
            reachable: true,
            error: None,
        }
    }

    /// How full the store is, when the daemon bounds it (memory); `None` for Redis.
    fn usage(&self) -> Option<StoreUsage> {
        None
    }

    /// Where turns go that the backend could not take, to join their conversation when
    /// it answers again: Redis has one; memory cannot be away.
    fn journal(&self) -> Option<&Journal> {
        None
    }

    /// The conversation's turns, oldest first, in one round trip.
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StorageError>>;

    /// Adds `turn` after the conversation's others in one atomic step, keeps only its
    /// newest `max_turns`, and restarts its time to live. Concurrent appends to one
    /// conversation all land, in the order the backend receives them.
    fn append<'a>(
        &'a self,
        id: &'a str,
        turn: &'a Turn,
        max_turns: usize,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_turns_go_first() {
        let mut t = Thread::default();
        for i in 0..5 {
            let turn = Turn {
                user: format!("q{i}"),
                assistant: String::new(),
                model: "m".into(),
                at_unix_ms: i,
            };
            t.push(turn, 3);
        }
        let users: Vec<&str> = t.turns.iter().map(|t| t.user.as_str()).collect();
        assert_eq!(users, ["q2", "q3", "q4"]);
    }
}
