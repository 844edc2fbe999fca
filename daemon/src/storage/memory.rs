//! The embedded default: threads in process memory, with the same time to live as Redis,
//! a bound on how many are kept and a budget of bytes (`EXAI_MEMORY_STORE_MAX_BYTES`).
//! Past either bound whole threads go, the least recently written first: a thread's time
//! to live restarts with each write, so that is also the one closest to expiry.
//!
//! A turn is appended under the store's lock, so concurrent chats continuing one
//! conversation each keep their turn, in the order they took the lock.

use super::{ConversationStore, StorageError, StoreUsage, Thread, Turn};
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

    fn append<'a>(
        &'a self,
        id: &'a str,
        turn: &'a Turn,
        max_turns: usize,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            // Copied before the lock is taken: the lock only moves pointers and counts.
            let turn = turn.clone();
            let now = Instant::now();
            let mut inner = self.lock();
            let (mut thread, expired) = match inner.remove(id) {
                Some(entry) if entry.expires > now => (entry.thread, None),
                other => (Arc::default(), other),
            };
            // Deep-copies only when a reader is copying this thread out at this moment.
            Arc::make_mut(&mut thread).push(turn, max_turns);
            let bytes = thread_bytes(id, &thread);
            if bytes > self.max_bytes {
                // Kept, it would push out every other thread and still not fit: the
                // earlier turns go too, rather than standing for the whole thread.
                drop(inner);
                drop((thread, expired));
                return Err(StorageError::TooLarge {
                    bytes,
                    max: self.max_bytes,
                });
            }
            inner.expire(now);
            while inner.threads.len() >= self.max_threads || inner.bytes + bytes > self.max_bytes {
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
            drop(inner);
            // An expired thread is freed outside the lock.
            drop(expired);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TURNS: usize = 20;

    fn turn(user: &str) -> Turn {
        Turn {
            user: user.into(),
            assistant: "a".into(),
            model: "m".into(),
            at_unix_ms: 0,
        }
    }

    fn thread(users: &[&str]) -> Thread {
        Thread {
            turns: users.iter().map(|u| turn(u)).collect(),
        }
    }

    fn sized(text_bytes: usize) -> Turn {
        Turn {
            user: "u".repeat(text_bytes),
            assistant: String::new(),
            model: String::new(),
            at_unix_ms: 0,
        }
    }

    fn one_turn_bytes(id: &str, text_bytes: usize) -> usize {
        thread_bytes(
            id,
            &Thread {
                turns: vec![sized(text_bytes)],
            },
        )
    }

    #[tokio::test]
    async fn keeps_threads_until_they_expire_and_bounds_their_number() {
        let store = MemoryStore::new(Duration::from_secs(60), 2, usize::MAX);
        store.append("a", &turn("a"), TURNS).await.unwrap();
        store.append("b", &turn("b"), TURNS).await.unwrap();
        assert_eq!(store.load("a").await.unwrap(), Some(thread(&["a"])));
        store.append("c", &turn("c"), TURNS).await.unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.load("a").await.unwrap(),
            None,
            "the least recently written was evicted"
        );
        assert_eq!(store.load("c").await.unwrap(), Some(thread(&["c"])));

        let short = MemoryStore::new(Duration::ZERO, 10, usize::MAX);
        short.append("x", &turn("x"), TURNS).await.unwrap();
        assert_eq!(short.load("x").await.unwrap(), None);
        short.append("x", &turn("x2"), TURNS).await.unwrap();
        assert_eq!(
            short.load("x").await.unwrap(),
            None,
            "an expired thread starts again"
        );
        short.append("y", &turn("y"), TURNS).await.unwrap();
        assert_eq!(short.len(), 1, "expired threads go at the next write");
    }

    #[tokio::test]
    async fn appends_follow_the_turns_before_them_and_trimming_keeps_the_newest() {
        let store = MemoryStore::new(Duration::from_secs(60), 10, usize::MAX);
        for i in 0..5 {
            store.append("t", &turn(&format!("q{i}")), 3).await.unwrap();
        }
        assert_eq!(
            store.load("t").await.unwrap(),
            Some(thread(&["q2", "q3", "q4"]))
        );
        let usage = store.usage().unwrap();
        assert_eq!(usage.bytes, thread_bytes("t", &thread(&["q2", "q3", "q4"])));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_tasks_appending_to_one_conversation_keep_every_turn() {
        let store = Arc::new(MemoryStore::new(Duration::from_secs(60), 10, usize::MAX));
        let tasks: Vec<_> = (0..64)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        let user = format!("task {task} turn {i}");
                        store.append("shared", &turn(&user), 10_000).await.unwrap();
                        // Readers copying the thread out meanwhile must not cost a turn.
                        if i % 7 == 0 {
                            store.load("shared").await.unwrap();
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let turns = store.load("shared").await.unwrap().unwrap().turns;
        assert_eq!(turns.len(), 64 * 50);
        let kept: std::collections::HashSet<&str> = turns.iter().map(|t| t.user.as_str()).collect();
        assert_eq!(kept.len(), 64 * 50, "every turn once");
        // Each task's own turns stay in the order it appended them.
        for task in 0..64 {
            let prefix = format!("task {task} turn ");
            let order: Vec<usize> = turns
                .iter()
                .filter_map(|t| t.user.strip_prefix(&prefix))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(order, (0..50).collect::<Vec<_>>(), "task {task}");
        }
        assert_eq!(
            store.bytes(),
            thread_bytes("shared", &Thread { turns }),
            "the byte count follows the appends"
        );
    }

    #[tokio::test]
    async fn the_byte_budget_holds_and_whole_threads_go_oldest_first() {
        let one = one_turn_bytes("t0", 1000);
        let store = MemoryStore::new(Duration::from_secs(60), 1000, 3 * one);
        for i in 0..10 {
            store
                .append(&format!("t{i}"), &sized(1000), TURNS)
                .await
                .unwrap();
            assert!(store.bytes() <= 3 * one, "after {i}: {}", store.bytes());
        }
        assert_eq!(store.len(), 3);
        for gone in 0..7 {
            assert_eq!(store.load(&format!("t{gone}")).await.unwrap(), None);
        }
        for kept in 7..10 {
            assert!(store.load(&format!("t{kept}")).await.unwrap().is_some());
        }
        // Appending to a thread makes it the youngest; its second turn makes it larger, so
        // the oldest other thread goes to make room.
        store.append("t7", &sized(10), TURNS).await.unwrap();
        assert!(store.load("t7").await.unwrap().is_some());
        assert_eq!(store.load("t8").await.unwrap(), None);
        assert!(store.bytes() <= 3 * one, "{}", store.bytes());

        // A thread that alone is over the budget is refused, and its old turns dropped.
        let err = store
            .append("t7", &sized(4 * one), TURNS)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("EXAI_MEMORY_STORE_MAX_BYTES"),
            "{err}"
        );
        assert_eq!(store.load("t7").await.unwrap(), None);
        let usage = store.usage().unwrap();
        let kept = store
            .load("t9")
            .await
            .unwrap()
            .map_or(0, |t| thread_bytes("t9", &t));
        assert_eq!((usage.threads, usage.bytes), (1, kept));
    }
}
