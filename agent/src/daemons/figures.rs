//! The few numbers the dashboard shows of a daemon, taken from its heartbeat's totals
//! (exact) and the agent's own tally of its pipe. Summed over daemons once a second.

use exai_proto::heartbeat::DropCounts;
use exai_proto::{Provider, StorageBackend};
use std::collections::BTreeMap;

/// Counts since a daemon process started (or, summed, over several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub requests: u64,
    /// Requests answered with an error or an `isError` result.
    pub request_errors: u64,
    pub ws_messages: u64,
    pub ws_bytes: u64,
    /// Request errors and refused connections: the "WebSocket" card's errors.
    pub ws_errors: u64,
    pub storage: u64,
    pub storage_errors: u64,
    pub supabase: u64,
    pub supabase_errors: u64,
    /// By provider index.
    pub calls: [u64; Provider::COUNT],
    pub call_errors: [u64; Provider::COUNT],
    /// Input, output, reasoning and cached tokens by provider and model label.
    pub tokens: BTreeMap<(Provider, String), [u64; 4]>,
    /// The storage backend last seen in use.
    pub backend: Option<StorageBackend>,
    /// Counted by the agent: events received and lost on the pipe.
    pub received: u64,
    pub lost: u64,
    /// From the daemon's heartbeat: events it dropped.
    pub dropped: DropCounts,
}

impl Figures {
    /// Adds `other` to these, saturating.
    pub fn add(&mut self, other: &Figures) {
        let sum = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        sum(&mut self.requests, other.requests);
        sum(&mut self.request_errors, other.request_errors);
        sum(&mut self.ws_messages, other.ws_messages);
        sum(&mut self.ws_bytes, other.ws_bytes);
        sum(&mut self.ws_errors, other.ws_errors);
        sum(&mut self.storage, other.storage);
        sum(&mut self.storage_errors, other.storage_errors);
        sum(&mut self.supabase, other.supabase);
        sum(&mut self.supabase_errors, other.supabase_errors);
        for i in 0..Provider::COUNT {
            sum(&mut self.calls[i], other.calls[i]);
            sum(&mut self.call_errors[i], other.call_errors[i]);
        }
        for (key, counts) in &other.tokens {
            let mine = self.tokens.entry(key.clone()).or_default();
            for (a, b) in mine.iter_mut().zip(counts) {
                sum(a, *b);
            }
        }
        if other.backend.is_some() {
            self.backend = other.backend;
        }
        sum(&mut self.received, other.received);
        sum(&mut self.lost, other.lost);
        sum(&mut self.dropped.queue_full, other.dropped.queue_full);
        sum(&mut self.dropped.write_error, other.dropped.write_error);
        sum(&mut self.dropped.disconnected, other.dropped.disconnected);
    }

    /// The counts that come from a daemon process's heartbeat, without the agent's tally
    /// of its pipe: what a new process of the same daemon starts again from zero.
    pub fn take_process_counts(&mut self) -> Figures {
        let pipe = (self.received, self.lost);
        let taken = std::mem::take(self);
        (self.received, self.lost) = pipe;
        Figures {
            received: 0,
            lost: 0,
            ..taken
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_saturate() {
        let mut a = Figures {
            requests: u64::MAX - 1,
            ..Figures::default()
        };
        a.tokens
            .insert((Provider::Glm, "m".into()), [u64::MAX, 1, 0, 0]);
        let mut b = a.clone();
        b.backend = Some(StorageBackend::Redis);
        a.add(&b);
        assert_eq!(a.requests, u64::MAX);
        assert_eq!(a.tokens[&(Provider::Glm, "m".into())], [u64::MAX, 2, 0, 0]);
        assert_eq!(a.backend, Some(StorageBackend::Redis));
    }

    #[test]
    fn a_new_process_keeps_the_pipe_tally() {
        let mut f = Figures {
            requests: 9,
            received: 40,
            lost: 2,
            ..Figures::default()
        };
        let old = f.take_process_counts();
        assert_eq!((old.requests, old.received), (9, 0));
        assert_eq!((f.requests, f.received, f.lost), (0, 40, 2));
    }
}
