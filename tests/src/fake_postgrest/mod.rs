//! A stand-in for Supabase's REST API (PostgREST), which the tests cannot reach: the
//! subset the daemon uses, with the tables of `compose/supabase/schema.sql` in memory.
//!
//! - `POST /rest/v1/<table>[?on_conflict=<column>]`, a JSON object or array of objects;
//!   `Prefer: resolution=merge-duplicates` upserts, `resolution=ignore-duplicates` skips
//!   existing keys, neither makes a duplicate key a 409 (23505). Foreign keys, unknown
//!   columns, a key twice in one upsert and a NUL in a string are refused as PostgREST
//!   refuses them.
//!   `Prefer: return=representation` answers the rows, otherwise 201 with no body.
//! - `GET /rest/v1/<table>?<column>=eq.<value>…`: the matching rows.
//! - Every `/rest/v1` request needs `apikey: <key>` and `Authorization: Bearer <key>`;
//!   a wrong one is a 401 with the body Supabase sends.
//! - `POST /_control {"fault": "503" | "stall" | "401" | "endless-500" | null}` makes
//!   every `/rest/v1` request fail that way until cleared; `GET /_stats` counts requests
//!   by status and rows by table.

mod process;
mod routes;
mod server;
mod tables;

pub use process::{request, FakePostgrest};
pub use tables::{ApiError, Resolution, TableStats, Tables};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// How every `/rest/v1` request fails while a fault is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// 503, as when the database is unreachable.
    #[serde(rename = "503")]
    Unavailable,
    /// The request is read and never answered.
    #[serde(rename = "stall")]
    Stall,
    /// 401, whatever key was sent.
    #[serde(rename = "401")]
    Unauthorized,
    /// 500 with a body that never ends.
    #[serde(rename = "endless-500")]
    EndlessError,
}

/// What `GET /_stats` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// `/rest/v1` requests received, faults and refusals included.
    pub requests: u64,
    /// By the status answered; stalled requests are counted under "stalled".
    pub by_status: BTreeMap<String, u64>,
    pub tables: BTreeMap<String, TableStats>,
    pub fault: Option<Fault>,
}

/// State shared by every connection of one fake.
pub struct Shared {
    key: String,
    tables: Mutex<Tables>,
    fault: Mutex<Option<Fault>>,
    counts: Mutex<(u64, BTreeMap<String, u64>)>,
}

impl Shared {
    pub fn new(key: String) -> Self {
        Self {
            key,
            tables: Mutex::new(Tables::default()),
            fault: Mutex::new(None),
            counts: Mutex::new((0, BTreeMap::new())),
        }
    }

    fn count(&self, outcome: &str) {
        let mut counts = self.counts.lock().unwrap();
        counts.0 += 1;
        *counts.1.entry(outcome.to_string()).or_default() += 1;
    }

    pub fn stats(&self) -> Stats {
        let (requests, by_status) = self.counts.lock().unwrap().clone();
        Stats {
            requests,
            by_status,
            tables: self.tables.lock().unwrap().stats(),
            fault: *self.fault.lock().unwrap(),
        }
    }
}

/// Serves a fake that accepts `key` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, key: String, shutdown: impl Future<Output = ()>) {
    server::run(listener, Arc::new(Shared::new(key)), shutdown).await;
}
