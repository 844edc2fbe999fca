//! The embedded default: threads in process memory, with the same time to live as Redis
//! and a bound on how many are kept.

use super::{ConversationStore, StorageError, Thread};
use exai_proto::StorageBackend;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct MemoryStore {
    threads: Mutex<HashMap<String, (Thread, Instant)>>,
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
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            match threads.get(id) {
                Some((thread, expires)) if *expires > Instant::now() => Ok(Some(thread.clone())),
                Some(_) => {
                    threads.remove(id);
                    Ok(None)
                }
                None => Ok(None),
            }
        })
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        thread: &'a Thread,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            if threads.len() >= self.max_threads && !threads.contains_key(id) {
                threads.retain(|_, (_, expires)| *expires > now);
                if threads.len() >= self.max_threads {
                    let soonest = threads
                        .iter()
                        .min_by_key(|(_, (_, e))| *e)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = soonest {
                        threads.remove(&k);
                    }
                }
            }
            threads.insert(id.to_string(), (thread.clone(), now + self.ttl));
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

        let short = MemoryStore::new(Duration::ZERO, 10);
        short.save("x", &thread("x")).await.unwrap();
        assert_eq!(short.load("x").await.unwrap(), None);
    }
}
