//! The embedded default: threads in process memory, with the same time to live as Redis
//! and a bound on how many are kept.

use super::{ConversationStore, StorageError, Thread};
use exai_proto::StorageBackend;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct MemoryStore {
    /// Shared, so that nothing is deep-copied while the lock is held.
    threads: Mutex<HashMap<String, (Arc<Thread>, Instant)>>,
    ttl: Duration,
    /// Most threads kept; past it the one closest to expiry goes.
    max_threads: usize,
}

impl MemoryStore {
    pub fn new(ttl: Duration, max_threads: usize) -> Self {
        Self {
            threads: Mutex::new(HashMap::new()),
            ttl,
            max_threads: max_threads.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.threads.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ConversationStore for MemoryStore {
    fn backend(&self) -> StorageBackend {
        StorageBackend::Memory
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StorageError>> {
        Box::pin(async move {
            let found = {
                let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
                match threads.get(id) {
                    Some((thread, expires)) if *expires > Instant::now() => Some(thread.clone()),
                    Some(_) => {
                        threads.remove(id);
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
            let thread = Arc::new(thread.clone());
            let now = Instant::now();
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            if threads.len() >= self.max_threads && !threads.contains_key(id) {
                evict(&mut threads, now, self.max_threads);
            }
            threads.insert(id.to_string(), (thread, now + self.ttl));
            Ok(())
        })
    }
}

/// Makes room in one pass: drops expired threads, then, if still full, the tenth closest
/// to expiry. Evicting in batches keeps a full store's cost per save amortised, instead
/// of a scan of every thread on every save.
fn evict(threads: &mut HashMap<String, (Arc<Thread>, Instant)>, now: Instant, max_threads: usize) {
    threads.retain(|_, (_, expires)| *expires > now);
    if threads.len() < max_threads {
        return;
    }
    let batch = (max_threads / 10).max(1);
    let mut expiries: Vec<Instant> = threads.values().map(|(_, e)| *e).collect();
    let (_, cutoff, _) = expiries.select_nth_unstable(batch - 1);
    let cutoff = *cutoff;
    let mut removed = 0;
    threads.retain(|_, (_, expires)| {
        let keep = *expires > cutoff || removed >= batch;
        removed += usize::from(!keep);
        keep
    });
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

    #[tokio::test]
    async fn keeps_threads_until_they_expire_and_bounds_their_number() {
        let store = MemoryStore::new(Duration::from_secs(60), 2);
        store.save("a", &thread("a")).await.unwrap();
        store.save("b", &thread("b")).await.unwrap();
        assert_eq!(store.load("a").await.unwrap(), Some(thread("a")));
        store.save("c", &thread("c")).await.unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.load("a").await.unwrap(),
            None,
            "the one closest to expiry was evicted"
        );
        assert_eq!(store.load("c").await.unwrap(), Some(thread("c")));

        // A full store evicts a tenth at a time, closest to expiry first.
        let store = MemoryStore::new(Duration::from_secs(60), 100);
        for i in 0..100 {
            store.save(&format!("t{i}"), &thread("x")).await.unwrap();
        }
        store.save("new", &thread("x")).await.unwrap();
        assert_eq!(store.len(), 91);
        assert_eq!(store.load("t9").await.unwrap(), None);
        assert!(store.load("t10").await.unwrap().is_some());

        let short = MemoryStore::new(Duration::ZERO, 10);
        short.save("x", &thread("x")).await.unwrap();
        assert_eq!(short.load("x").await.unwrap(), None);
    }
}
