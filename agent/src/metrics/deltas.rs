//! Heartbeats carry running totals since each daemon started; consumers want increases.
//! This remembers what each daemon's totals last read and gives the increase, so the
//! sums stay exact across reconnects and restarts (a restarted daemon is a new instance
//! whose totals start from zero).

use exai_proto::heartbeat::{
    ConnectionTotal, ProviderTotal, RequestTotal, StorageTotal, SupabaseTotal, Totals, WsTotal,
};
use exai_proto::{model_label, ModelName, KNOWN_MODELS};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A running total, identified by its kind and label values. Models are keyed by the
/// index of the label they fold into ([`model_index`]): a key of a few bytes instead of
/// a 33-byte name keeps each daemon's map small (hundreds of entries per daemon).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    WsMessages(u8),
    WsBytes(u8),
    Requests(u8, u8, u8, u8),
    Calls(u8, u8, u8),
    InputTokens(u8, u8, u8),
    OutputTokens(u8, u8, u8),
    Storage(u8, u8, u8),
    Supabase(u8, u8, u8),
    Connections(u8, u8, u8),
}

#[derive(Default)]
pub struct RunningTotals {
    last: HashMap<String, HashMap<Key, u64>>,
    /// Daemons whose totals were forgotten (gone past their time to live), newest last:
    /// if one comes back, its next heartbeat is a new baseline, not an increase from zero.
    forgotten: VecDeque<String>,
}

/// How many forgotten daemons are remembered as such.
const FORGOTTEN: usize = 4096;

impl RunningTotals {
    /// The increase of every total since `instance_id`'s previous heartbeat, in the same
    /// shape; entries that did not grow are left out.
    pub fn increase(&mut self, instance_id: &str, now: &Totals) -> Totals {
        let returning = !self.last.contains_key(instance_id)
            && match self.forgotten.iter().position(|id| id == instance_id) {
                Some(i) => self.forgotten.remove(i).is_some(),
                None => false,
            };
        let seen = match self.last.get_mut(instance_id) {
            Some(seen) => seen,
            None => self.last.entry(instance_id.to_string()).or_default(),
        };
        let out = Self::grown(seen, now);
        if returning {
            // Counted before it was forgotten: this heartbeat only sets the baseline.
            return Totals::default();
        }
        out
    }

    fn grown(seen: &mut HashMap<Key, u64>, now: &Totals) -> Totals {
        let mut out = Totals::default();
        for w in &now.ws_messages {
            let d = w.direction as u8;
            let messages = grew(seen, Key::WsMessages(d), w.messages);
            let bytes = grew(seen, Key::WsBytes(d), w.bytes);
            if messages + bytes > 0 {
                out.ws_messages.push(WsTotal {
                    messages,
                    bytes,
                    ..*w
                });
            }
        }
        for r in &now.requests {
            let key = Key::Requests(
                r.transport as u8,
                r.method as u8,
                r.tool as u8,
                r.status as u8,
            );
            let count = grew(seen, key, r.count);
            if count > 0 {
                out.requests.push(RequestTotal { count, ..*r });
            }
        }
        // Keyed by the label the model folds into, so a peer naming endless models
        // cannot grow this map; names that fold together are summed first.
        let mut calls: Vec<ProviderTotal> = Vec::with_capacity(now.provider_calls.len());
        for c in &now.provider_calls {
            let model = ModelName::new(model_label(c.model.as_str()));
            match calls
                .iter_mut()
                .find(|k| k.provider == c.provider && k.model == model && k.status == c.status)
            {
                Some(k) => {
                    k.calls = k.calls.saturating_add(c.calls);
                    k.input_tokens = k.input_tokens.saturating_add(c.input_tokens);
                    k.output_tokens = k.output_tokens.saturating_add(c.output_tokens);
                }
                None => calls.push(ProviderTotal { model, ..*c }),
            }
        }
        for c in &calls {
            let (p, m, s) = (c.provider as u8, model_index(&c.model), c.status as u8);
            let n = grew(seen, Key::Calls(p, m, s), c.calls);
            let input_tokens = grew(seen, Key::InputTokens(p, m, s), c.input_tokens);
            let output_tokens = grew(seen, Key::OutputTokens(p, m, s), c.output_tokens);
            if n + input_tokens + output_tokens > 0 {
                out.provider_calls.push(ProviderTotal {
                    calls: n,
                    input_tokens,
                    output_tokens,
                    ..*c
                });
            }
        }
        for s in &now.storage {
            let key = Key::Storage(s.op as u8, s.backend as u8, s.result as u8);
            let count = grew(seen, key, s.count);
            if count > 0 {
                out.storage.push(StorageTotal { count, ..*s });
            }
        }
        for s in &now.supabase {
            let key = Key::Supabase(s.op as u8, s.table as u8, s.result as u8);
            let count = grew(seen, key, s.count);
            if count > 0 {
                out.supabase.push(SupabaseTotal { count, ..*s });
            }
        }
        for c in &now.connections {
            let key = Key::Connections(c.transport as u8, c.phase as u8, c.reason as u8);
            let count = grew(seen, key, c.count);
            if count > 0 {
                out.connections.push(ConnectionTotal { count, ..*c });
            }
        }
        out
    }

    /// Drops what is remembered of a daemon gone for good.
    pub fn forget(&mut self, instance_id: &str) {
        if self.last.remove(instance_id).is_some() {
            if self.forgotten.len() == FORGOTTEN {
                self.forgotten.pop_front();
            }
            self.forgotten.push_back(instance_id.to_string());
        }
    }
}

/// The position of a folded model label in `KNOWN_MODELS`; `other` comes after them.
fn model_index(folded: &ModelName) -> u8 {
    let at = KNOWN_MODELS.iter().position(|m| *m == folded.as_str());
    at.unwrap_or(KNOWN_MODELS.len()) as u8
}

/// The increase of a running total since it was last seen.
fn grew<K: Hash + Eq>(counts: &mut HashMap<K, u64>, key: K, now: u64) -> u64 {
    let before = counts.insert(key, now).unwrap_or(0);
    now.saturating_sub(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exai_proto::{McpMethod, RequestStatus, Tool, Transport};

    fn requests(count: u64) -> Totals {
        Totals {
            requests: vec![RequestTotal {
                transport: Transport::WebSocket,
                method: McpMethod::Ping,
                tool: Tool::None,
                status: RequestStatus::Success,
                count,
            }],
            ..Totals::default()
        }
    }

    #[test]
    fn gives_increases_per_instance() {
        let mut totals = RunningTotals::default();
        assert_eq!(totals.increase("a", &requests(5)).requests[0].count, 5);
        assert_eq!(totals.increase("a", &requests(7)).requests[0].count, 2);
        assert!(totals.increase("a", &requests(7)).requests.is_empty());
        assert_eq!(totals.increase("b", &requests(3)).requests[0].count, 3);
        totals.forget("a");
        assert!(
            totals.increase("a", &requests(9)).requests.is_empty(),
            "a forgotten daemon that returns sets a baseline"
        );
        assert_eq!(totals.increase("a", &requests(10)).requests[0].count, 1);
    }
}
