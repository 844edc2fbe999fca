//! A steady load of chats over WebSocket sessions until it is stopped, counting every chat
//! sent and every one that failed: an error result, or no answer at all.

use crate::mcp::{self, RawWs};
use serde_json::json;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct ChatLoad {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    workers: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    /// What went wrong, one line per failed chat.
    failures: Mutex<Vec<String>>,
}

#[derive(Debug)]
pub struct LoadResult {
    pub sent: u64,
    pub failed: u64,
    pub failures: Vec<String>,
}

impl ChatLoad {
    /// `sessions` WebSocket sessions on `url`, each sending one chat after another; every
    /// prompt asks fake-llm to take `latency_ms` over its answer.
    pub fn start(url: &str, sessions: usize, latency_ms: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let workers = (0..sessions)
            .map(|session| {
                let (url, stop, counts) = (url.to_string(), stop.clone(), counts.clone());
                std::thread::spawn(move || chat_until(&url, session, latency_ms, &stop, &counts))
            })
            .collect();
        Self {
            stop,
            counts,
            workers,
        }
    }

    /// Chats answered so far.
    pub fn answered(&self) -> u64 {
        self.counts.answered.load(Relaxed)
    }

    /// Stops after the chats in flight and returns what was sent and what failed.
    pub fn stop(self) -> LoadResult {
        self.stop.store(true, Relaxed);
        for worker in self.workers {
            worker.join().expect("a load worker");
        }
        let sent = self.counts.sent.load(Relaxed);
        LoadResult {
            sent,
            failed: sent - self.counts.answered.load(Relaxed),
            failures: std::mem::take(&mut self.counts.failures.lock().unwrap()),
        }
    }
}

fn chat_until(url: &str, session: usize, latency_ms: u64, stop: &AtomicBool, counts: &Counts) {
    let mut ws: Option<RawWs> = None;
    let mut n = 0;
    while !stop.load(Relaxed) {
        counts.sent.fetch_add(1, Relaxed);
        n += 1;
        let prompt = format!("load-{session}-{n} [latency:{latency_ms}]");
        // The harness's client panics when the connection fails; here that is a failed
        // chat to count, then a new session.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let ws = ws.get_or_insert_with(|| {
                let mut ws = mcp::connect(url, &[]).expect("WebSocket upgrade");
                ws.initialize("2025-11-25");
                ws
            });
            ws.call_tool("chat", json!({ "prompt": prompt }))
        }));
        match outcome {
            Ok(response) if response["result"]["isError"] == false => {
                counts.answered.fetch_add(1, Relaxed);
            }
            Ok(response) => counts
                .failures
                .lock()
                .unwrap()
                .push(format!("{prompt}: {response}")),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                counts
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("{prompt}: {why}"));
                ws = None;
                // A daemon that refuses connections is not hammered in a tight loop.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
