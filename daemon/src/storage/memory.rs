//! The embedded default: threads in process memory, with the same time to live as Redis,
//! a bound on how many are kept and a budget of bytes (`EXAI_MEMORY_STORE_MAX_BYTES`).
//! Past either bound whole threads go, the least recently written first: a thread's time
//! to live restarts with each write, so that is also the one closest to expiry.

use super::{ConversationStore, StorageError, StoreUsage, Thread};
use exai_proto::StorageBackend;
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes counted for a thread besides its text: the map entry, the index entry and the
/// strings' headers, roughly. Keeps a flood of tiny threads inside the budget too.
const THREAD_OVERHEAD: usize = 160;
/// Bytes counted for a turn besides its text.
const TURN_OVERHEAD: usize = 96;

pub struct MemoryStore {
    inner: Mutex<Inner>,
    ttl: Duration,
    /// Most threads kept.
    max_threads: usize,
    /// Most bytes of threads kept (their text and bookkeeping, as [`thread_bytes`] counts).
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    /// Shared, so that nothing is deep-copied while the lock is held.
    threads: HashMap<String, Entry>,
    /// Each thread's key by its last write: the first is the oldest.
    by_age: BTreeMap<u64, String>,
    /// Write counter: the age of the next write.
    next_write: u64,
    /// Bytes of every thread kept, as [`thread_bytes`] counts them.
    bytes: usize,
}

struct Entry {
    thread: Arc<Thread>,
    expires: Instant,
    written: u64,
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.threads.remove(id)?;
        self.by_age.remove(&entry.written);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Drops the oldest thread; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, id)) = self.by_age.pop_first() else {
            return false;
        };
        if let Some(entry) = self.threads.remove(&id) {
            self.bytes -= entry.bytes;
        }
        true
    }

    /// Drops threads past their time to live: the oldest writes expire first.
    fn expire(&mut self, now: Instant) {
        while let Some((&written, id)) = self.by_age.first_key_value() {
            if self.threads.get(id).is_some_and(|e| e.expires > now) {
                return;
            }
            let id = id.clone();
            self.by_age.remove(&written);
            if let Some(entry) = self.threads.remove(&id) {
                self.bytes -= entry.bytes;
            }
        }
    }
}

/// What a thread costs in the budget.
pub fn thread_bytes(id: &str, thread: &Thread) -> usize {
    THREAD_OVERHEAD
        + id.len()
        + thread
            .turns
            .iter()
            .map(|t| TURN_OVERHEAD + t.user.len() + t.assistant.len() + t.model.len())
            .sum::<usize>()
}

impl MemoryStore {
    pub fn new(ttl: Duration, max_threads: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            ttl,
            max_threads: max_threads.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of threads kept now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl ConversationStore for MemoryStore {
    fn backend(&self) -> StorageBackend {
        StorageBackend::Memory
    }

    fn usage(&self) -> Option<StoreUsage> {
        let inner = self.lock();
        Some(StoreUsage {
            threads: inner.threads.len(),
            max_threads: self.max_threads,
            bytes: inner.bytes,
            max_bytes: self.max_bytes,
        })
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StorageError>> {
        Box::pin(async move {
            let found = {
                let mut inner = self.lock();
                match inner.threads.get(id) {
                    Some(entry) if entry.expires > Instant::now() => Some(entry.thread.clone()),
                    Some(_) => {
                        inner.remove(id);
                        None
                    }
                    None => None,
                }
            };
            Ok(found.map(|thread| Thread::clone(&thread)))
        })
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        thread: &'a Thread,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let bytes = thread_bytes(id, thread);
            if bytes > self.max_bytes {
                // Kept, it would push out every other thread and still not fit: the
                // earlier turns go too, rather than standing for the whole thread.
                self.lock().remove(id);
                return Err(StorageError::TooLarge {
                    bytes,
                    max: self.max_bytes,
                });
            }
            let thread = Arc::new(thread.clone());
            let now = Instant::now();
            let replaced = {
                let mut inner = self.lock();
                let replaced = inner.remove(id);
                inner.expire(now);
                while inner.threads.len() >= self.max_threads
                    || inner.bytes + bytes > self.max_bytes
                {
                    if !inner.evict_oldest() {
                        break;
                    }
                }
                let written = inner.next_write;
                inner.next_write += 1;
                inner.by_age.insert(written, id.to_string());
                inner.bytes += bytes;
                inner.threads.insert(
                    id.to_string(),
                    Entry {
                        thread,
                        expires: now + self.ttl,
                        written,
                        bytes,
                    },
                );
                replaced
            };
            // The old version is freed outside the lock.
            drop(replaced);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Turn;

    fn thread(n: &str) -> Thread {
        Thread {
            turns: vec![Turn {
                user: n.into(),
                assistant: "a".into(),
                model: "m".into(),
                at_unix_ms: 0,
            }],
        }
    }

    fn sized(text_bytes: usize) -> Thread {
        Thread {
            turns: vec![Turn {
                user: "u".repeat(text_bytes),
                assistant: String::new(),
                model: String::new(),
                at_unix_ms: 0,
            }],
        }
    }

    #[tokio::test]
    async fn keeps_threads_until_they_expire_and_bounds_their_number() {
        let store = MemoryStore::new(Duration::from_secs(60), 2, usize::MAX);
        store.save("a", &thread("a")).await.unwrap();
        store.save("b", &thread("b")).await.unwrap();
        assert_eq!(store.load("a").await.unwrap(), Some(thread("a")));
        store.save("c", &thread("c")).await.unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.load("a").await.unwrap(),
            None,
            "the least recently written was evicted"
        );
        assert_eq!(store.load("c").await.unwrap(), Some(thread("c")));

        let short = MemoryStore::new(Duration::ZERO, 10, usize::MAX);
        short.save("x", &thread("x")).await.unwrap();
        assert_eq!(short.load("x").await.unwrap(), None);
        short.save("y", &thread("y")).await.unwrap();
        assert_eq!(short.len(), 1, "expired threads go at the next write");
    }

    #[tokio::test]
    async fn the_byte_budget_holds_and_whole_threads_go_oldest_first() {
        let one = thread_bytes("t0", &sized(1000));
        let store = MemoryStore::new(Duration::from_secs(60), 1000, 3 * one);
        for i in 0..10 {
            store.save(&format!("t{i}"), &sized(1000)).await.unwrap();
            assert!(store.bytes() <= 3 * one, "after {i}: {}", store.bytes());
        }
        assert_eq!(store.len(), 3);
        for gone in 0..7 {
            assert_eq!(store.load(&format!("t{gone}")).await.unwrap(), None);
        }
        for kept in 7..10 {
            assert!(store.load(&format!("t{kept}")).await.unwrap().is_some());
        }
        // Rewriting a thread makes it the youngest.
        store.save("t7", &sized(1000)).await.unwrap();
        store.save("t10", &sized(1000)).await.unwrap();
        assert!(store.load("t7").await.unwrap().is_some());
        assert_eq!(store.load("t8").await.unwrap(), None);

        // A thread that alone is over the budget is refused, and its old turns dropped.
        let err = store.save("t9", &sized(4 * one)).await.unwrap_err();
        assert!(matches!(err, StorageError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("EXAI_MEMORY_STORE_MAX_BYTES"),
            "{err}"
        );
        assert_eq!(store.load("t9").await.unwrap(), None);
        let usage = store.usage().unwrap();
        let kept = thread_bytes("t7", &sized(1000)) + thread_bytes("t10", &sized(1000));
        assert_eq!((usage.threads, usage.bytes), (2, kept));
    }
}
