//! What the fake received, for `/_requests` and `/_stats` and for in-process tests.

use super::fault::FaultKind;
use hyper::body::Bytes;
use hyper::HeaderMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Requests kept; older ones are dropped first.
pub const LOG_CAPACITY: usize = 10_000;

/// Bodies larger than this are logged as `null` (with their size), so a full log of
/// large prompts cannot hold gigabytes.
const LOG_BODY_LIMIT: usize = 256 * 1024;

/// One chat-completions request as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedRequest {
    pub path: String,
    pub headers: ReceivedHeaders,
    /// The parsed JSON body; `null` when it did not parse or was too large to keep.
    pub body: Option<serde_json::Value>,
    pub body_bytes: usize,
}

/// The headers a test may assert on. The key itself is never kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedHeaders {
    pub authorization: bool,
    #[serde(rename = "x-request-id")]
    pub x_request_id: Option<String>,
}

/// Kept raw; parsing waits until someone reads the log, off the request path.
struct Entry {
    path: String,
    headers: ReceivedHeaders,
    body: Option<Bytes>,
    body_bytes: usize,
}

#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<VecDeque<Entry>>,
}

impl RequestLog {
    pub fn record(&self, path: &str, headers: &HeaderMap, body: Option<&Bytes>) {
        let entry = Entry {
            path: path.to_owned(),
            headers: ReceivedHeaders {
                authorization: headers.contains_key(hyper::header::AUTHORIZATION),
                x_request_id: headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            },
            body_bytes: body.map_or(0, Bytes::len),
            body: body.filter(|b| b.len() <= LOG_BODY_LIMIT).cloned(),
        };
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Oldest first.
    pub fn snapshot(&self) -> Vec<ReceivedRequest> {
        let copied: Vec<(String, ReceivedHeaders, Option<Bytes>, usize)> = self
            .entries
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e.path.clone(),
                    e.headers.clone(),
                    e.body.clone(),
                    e.body_bytes,
                )
            })
            .collect();
        copied
            .into_iter()
            .map(|(path, headers, body, body_bytes)| ReceivedRequest {
                path,
                headers,
                body: body.and_then(|b| serde_json::from_slice(&b).ok()),
                body_bytes,
            })
            .collect()
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }
}

/// Counts for `/_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Chat-completions requests received, whatever became of them.
    pub requests: u64,
    /// Faults injected, by name; every fault is listed, zero or not.
    pub by_fault: BTreeMap<String, u64>,
    /// Streamed answers the client let go of before their end: an aborted model call.
    pub abandoned: u64,
}

#[derive(Default)]
pub struct Counters {
    requests: AtomicU64,
    by_fault: [AtomicU64; FaultKind::ALL.len()],
    /// Shared with every streamed body.
    pub abandoned: Arc<AtomicU64>,
}

impl Counters {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fault(&self, kind: FaultKind) {
        self.by_fault[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            by_fault: FaultKind::ALL
                .into_iter()
                .map(|k| {
                    let n = self.by_fault[k.index()].load(Ordering::Relaxed);
                    (k.name().to_owned(), n)
                })
                .collect(),
            abandoned: self.abandoned.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_and_never_the_key() {
        let log = RequestLog::default();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer sk-secret".parse().unwrap());
        headers.insert("x-request-id", "r-1".parse().unwrap());
        for i in 0..LOG_CAPACITY + 2 {
            let body = Bytes::from(format!("{{\"n\":{i}}}"));
            log.record("/v1/chat/completions", &headers, Some(&body));
        }
        let seen = log.snapshot();
        assert_eq!(seen.len(), LOG_CAPACITY);
        assert_eq!(seen[0].body.as_ref().unwrap()["n"], 2);
        assert_eq!(
            seen.last().unwrap().body.as_ref().unwrap()["n"],
            LOG_CAPACITY + 1
        );
        assert!(seen[0].headers.authorization);
        assert_eq!(seen[0].headers.x_request_id.as_deref(), Some("r-1"));
        let json = serde_json::to_string(&seen[0]).unwrap();
        assert!(!json.contains("sk-secret"), "{json}");
    }
}
