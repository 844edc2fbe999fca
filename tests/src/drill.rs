//! A sustained chat load for fault drills: sessions that each call `chat` at a steady
//! pace over WebSocket, reconnect when their daemon goes away, and record every call —
//! when it was sent, how long it took, whether it failed and what it said — so that a
//! drill can compare the calls before a fault with those during it, and print a row.

use crate::mcp::{self, RawWs};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One chat as the client saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it was sent.
    pub sent: Instant,
    pub latency: Duration,
    /// The error (a broken connection, or a result marked `isError`), if it failed.
    pub error: Option<String>,
    /// The tool result (`structuredContent`, `_meta`, …) when it answered.
    pub result: Value,
}

/// What one session asks: its prompt for the `n`th call and the arguments around it.
pub type Arguments = Arc<dyn Fn(usize, usize, Option<&Value>) -> Value + Send + Sync>;

pub struct ChatLoad {
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    workers: Vec<JoinHandle<()>>,
}

impl ChatLoad {
    /// `sessions` sessions on `url`, each calling `chat` every `interval`, with the
    /// arguments `arguments(session, n, previous result)` gives.
    pub fn start(url: &str, sessions: usize, interval: Duration, arguments: Arguments) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..sessions)
            .map(|session| {
                let (url, stop, calls, arguments) = (
                    url.to_string(),
                    stop.clone(),
                    calls.clone(),
                    arguments.clone(),
                );
                std::thread::spawn(move || {
                    let mut ws: Option<RawWs> = None;
                    let mut previous: Option<Value> = None;
                    let mut due = Instant::now();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if ws.is_none() {
                            ws = open(&url);
                            if ws.is_none() {
                                // The daemon is away: try again shortly, as a client would.
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                        }
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        due += interval;
                        let sent = Instant::now();
                        let args = arguments(session, n, previous.as_ref());
                        n += 1;
                        let answer = ws.as_mut().map(|ws| {
                            ws.try_request("tools/call", json!({"name": "chat", "arguments": args}))
                        });
                        let latency = sent.elapsed();
                        let call = match answer {
                            Some(Ok(response)) => {
                                let result = &response["result"];
                                let error = if result["isError"] == false {
                                    None
                                } else if result.is_null() {
                                    Some(response["error"].to_string())
                                } else {
                                    Some(crate::mcp::result_text(&response))
                                };
                                let result = result.clone();
                                previous = Some(result.clone());
                                Call {
                                    sent,
                                    latency,
                                    error,
                                    result,
                                }
                            }
                            _ => {
                                ws = None;
                                Call {
                                    sent,
                                    latency,
                                    error: Some("the connection broke".into()),
                                    result: Value::Null,
                                }
                            }
                        };
                        calls.lock().unwrap().push(call);
                    }
                })
            })
            .collect();
        Self {
            stop,
            calls,
            workers,
        }
    }

    /// Calls finished so far.
    pub fn finished(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Waits until `more` calls beyond those finished now have finished.
    pub fn wait_calls(&self, more: usize) {
        let target = self.finished() + more;
        crate::wait_for(&format!("{more} more chats"), crate::PATIENCE * 3, || {
            (self.finished() >= target).then_some(())
        });
    }

    /// Calls sent in `[from, to)`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.sent >= from && c.sent < to)
            .cloned()
            .collect()
    }

    /// Stops every session after its call in flight; returns every call.
    pub fn stop(self) -> Vec<Call> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.join().expect("a load session panicked");
        }
        Arc::try_unwrap(self.calls)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|arc| arc.lock().unwrap().clone())
    }
}

fn open(url: &str) -> Option<RawWs> {
    let mut ws = mcp::try_connect(url, &[]).ok()?;
    let answer = ws.try_request(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "exai-drill", "version": "0"}}),
    );
    answer.ok()?;
    ws.notify("notifications/initialized", json!({}));
    Some(ws)
}

/// The 99th percentile of the calls' latencies, in ms (0 for none).
pub fn p99_ms(calls: &[Call]) -> f64 {
    let mut ms: Vec<f64> = calls
        .iter()
        .map(|c| c.latency.as_secs_f64() * 1e3)
        .collect();
    if ms.is_empty() {
        return 0.0;
    }
    ms.sort_by(f64::total_cmp);
    let rank = ((ms.len() as f64) * 0.99).ceil() as usize;
    ms[rank.clamp(1, ms.len()) - 1]
}

pub fn failed(calls: &[Call]) -> usize {
    calls.iter().filter(|c| c.error.is_some()).count()
}

/// One row of the fault table.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: String,
    pub sent: usize,
    pub failed: usize,
    pub p99_before_ms: f64,
    pub p99_during_ms: f64,
    pub recovery: String,
    pub lost: String,
}

/// The fault table in Markdown, as BENCHMARKS.md shows it.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| fault | chats sent | chats failed | p99 before (ms) | p99 during (ms) | during / before | time to recover | data lost |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
    );
    for r in rows {
        let ratio = match r.p99_before_ms > 0.0 {
            true => format!("{:.2}", r.p99_during_ms / r.p99_before_ms),
            false => "—".into(),
        };
        let before = match r.p99_before_ms > 0.0 {
            true => format!("{:.1}", r.p99_before_ms),
            false => "—".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} |\n",
            r.fault, r.sent, r.failed, before, r.p99_during_ms, ratio, r.recovery, r.lost
        ));
    }
    out
}
