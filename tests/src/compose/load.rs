//! A steady load of chats until it is stopped, counting every chat sent and every one that
//! failed (an error result, or no answer at all) with when it was sent: over WebSocket
//! sessions (2025-era), or as stateless 2026-07-28 requests over kept-alive HTTP
//! connections, as a client of a balanced fleet sends them.

use crate::http_mcp::KeepAlive;
use crate::mcp::{self, RawWs};
use serde_json::json;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct ChatLoad {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    workers: Vec<JoinHandle<()>>,
    started: Instant,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    /// One per failed chat.
    failures: Mutex<Vec<Failure>>,
}

/// A chat that failed: when it was sent, and what came back instead of an answer.
#[derive(Debug, Clone)]
pub struct Failure {
    pub sent_at: Instant,
    pub what: String,
}

#[derive(Debug)]
pub struct LoadResult {
    pub sent: u64,
    pub failed: u64,
    pub failures: Vec<Failure>,
    /// From the start to the last answer.
    pub took: Duration,
}

impl LoadResult {
    pub fn answered(&self) -> u64 {
        self.sent - self.failed
    }

    /// Chats answered per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.answered() as f64 / self.took.as_secs_f64().max(1e-3)
    }
}

/// How a worker sends its chats.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// One 2025-11-25 WebSocket session per worker, opened again after a failure.
    WebSocket,
    /// 2026-07-28 requests, no session, on one kept-alive HTTP connection per worker.
    Stateless,
}

impl ChatLoad {
    /// `sessions` WebSocket sessions on `url`, each sending one chat after another; every
    /// prompt asks fake-llm to take `latency_ms` over its answer.
    pub fn start(url: &str, sessions: usize, latency_ms: u64) -> Self {
        Self::spawn(Transport::WebSocket, url, sessions, latency_ms)
    }

    /// `clients` stateless (2026-07-28) clients of `http://127.0.0.1:PORT/mcp`, each on a
    /// kept-alive connection, each sending one chat after another.
    pub fn start_stateless(url: &str, clients: usize, latency_ms: u64) -> Self {
        Self::spawn(Transport::Stateless, url, clients, latency_ms)
    }

    fn spawn(transport: Transport, url: &str, workers: usize, latency_ms: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let workers = (0..workers)
            .map(|worker| {
                let (url, stop, counts) = (url.to_string(), stop.clone(), counts.clone());
                std::thread::spawn(move || {
                    let load = Worker {
                        url: &url,
                        worker,
                        latency_ms,
                        stop: &stop,
                        counts: &counts,
                    };
                    match transport {
                        Transport::WebSocket => load.websocket(),
                        Transport::Stateless => load.stateless(),
                    }
                })
            })
            .collect();
        Self {
            stop,
            counts,
            workers,
            started: Instant::now(),
        }
    }

    /// Chats answered so far.
    pub fn answered(&self) -> u64 {
        self.counts.answered.load(Relaxed)
    }

    /// Chats failed so far.
    pub fn failed(&self) -> u64 {
        self.counts.failures.lock().unwrap().len() as u64
    }

    /// Stops after the chats in flight and returns what was sent and what failed.
    pub fn stop(self) -> LoadResult {
        self.stop.store(true, Relaxed);
        for worker in self.workers {
            worker.join().expect("a load worker");
        }
        let took = self.started.elapsed();
        let sent = self.counts.sent.load(Relaxed);
        LoadResult {
            sent,
            failed: sent - self.counts.answered.load(Relaxed),
            failures: std::mem::take(&mut self.counts.failures.lock().unwrap()),
            took,
        }
    }
}

struct Worker<'a> {
    url: &'a str,
    worker: usize,
    latency_ms: u64,
    stop: &'a AtomicBool,
    counts: &'a Counts,
}

impl Worker<'_> {
    fn prompt(&self, n: u64) -> String {
        format!("load-{}-{n} [latency:{}]", self.worker, self.latency_ms)
    }

    fn failed(&self, sent_at: Instant, what: String) {
        self.counts
            .failures
            .lock()
            .unwrap()
            .push(Failure { sent_at, what });
    }

    fn websocket(&self) {
        let mut ws: Option<RawWs> = None;
        let mut n = 0;
        while !self.stop.load(Relaxed) {
            self.counts.sent.fetch_add(1, Relaxed);
            n += 1;
            let prompt = self.prompt(n);
            let sent_at = Instant::now();
            // The harness's client panics when the connection fails; here that is a failed
            // chat to count, then a new session.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let ws = ws.get_or_insert_with(|| {
                    let mut ws = mcp::connect(self.url, &[]).expect("WebSocket upgrade");
                    ws.initialize("2025-11-25");
                    ws
                });
                ws.call_tool("chat", json!({ "prompt": prompt }))
            }));
            match outcome {
                Ok(response) if response["result"]["isError"] == false => {
                    self.counts.answered.fetch_add(1, Relaxed);
                }
                Ok(response) => self.failed(sent_at, format!("{prompt}: {response}")),
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    self.failed(sent_at, format!("{prompt}: {why}"));
                    ws = None;
                    // A daemon that refuses connections is not hammered in a tight loop.
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn stateless(&self) {
        let port = self
            .url
            .trim_start_matches("http://")
            .split(['/', ':'])
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url));
        let mut connection = KeepAlive::new(port);
        let mut n = 0;
        while !self.stop.load(Relaxed) {
            self.counts.sent.fetch_add(1, Relaxed);
            n += 1;
            let prompt = self.prompt(n);
            let sent_at = Instant::now();
            match connection.call_tool(n, "chat", json!({ "prompt": prompt })) {
                Ok(answer)
                    if answer.status == 200
                        && answer
                            .message()
                            .is_some_and(|m| m["result"]["isError"] == false) =>
                {
                    self.counts.answered.fetch_add(1, Relaxed);
                }
                Ok(answer) => self.failed(
                    sent_at,
                    format!("{prompt}: HTTP {} {:.200}", answer.status, answer.body),
                ),
                Err(why) => {
                    self.failed(sent_at, format!("{prompt}: {why}"));
                    // Not a tight loop against a balancer that is not there.
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}
