//! The live dashboard on `MONITORING_PORT`: the page, and `/ws`, which pushes a snapshot
//! on connect, stats every second, a rate-limited stream of events and health changes
//! (format: static/README.md). Each client has a bounded queue: a client that does not
//! keep up loses frames, counted; ingestion never waits for a client.

pub mod assets;
pub mod events;
pub mod latency;
pub mod server;
pub mod stats;

use crate::config::DashboardConfig;
use crate::daemons::Daemons;
use crate::health::{server::Report, Health};
use crate::metrics::{Counter, Gauge, Registry};
use crate::sink::EventSink;
use events::{EventView, RecentRequests};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use stats::Aggregate;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

/// Stats objects kept for a new client's charts: five minutes.
const HISTORY: usize = 300;
/// Events a new client's table starts with.
const SNAPSHOT_EVENTS: usize = 200;
/// Request events kept for search by correlation id.
const SEARCHABLE: usize = 20_000;
/// Kernel send buffer of a dashboard connection: a few frames. Beyond it a slow client's
/// frames wait in its bounded queue, then are dropped and counted.
pub const SEND_BUFFER: usize = 256 * 1024;

/// How often the events stream sends a frame.
const EVENTS_EVERY: Duration = Duration::from_millis(250);

pub struct Dashboard {
    config: DashboardConfig,
    /// Fed on the ingest path, one lock per batch.
    aggregate: Mutex<Aggregate>,
    /// Request events for search; its own lock, so a search never holds up the figures.
    searchable: Mutex<RecentRequests>,
    daemons: Arc<Daemons>,
    health: Arc<Health>,
    clients: Mutex<HashMap<u64, mpsc::Sender<Utf8Bytes>>>,
    next_client: AtomicU64,
    /// What a new client is sent first: the last stats whole, and the earlier ones as
    /// JSON text without their per-daemon list (the charts need the figures, not 300
    /// copies of a list that is as long as the fleet).
    last_stats: Mutex<Option<Arc<RawValue>>>,
    history: Mutex<VecDeque<Box<RawValue>>>,
    recent: Mutex<VecDeque<EventView>>,
    frames_dropped: Arc<Counter>,
    clients_gauge: Arc<Gauge>,
}

impl Dashboard {
    pub fn new(
        config: DashboardConfig,
        registry: &Registry,
        daemons: Arc<Daemons>,
        health: Arc<Health>,
    ) -> Self {
        let frames_dropped = registry.counter(
            "exai_dashboard_frames_dropped_total",
            "Dashboard frames not sent because a client's queue was full.",
        );
        let clients_gauge = registry.gauge(
            "exai_dashboard_clients",
            "Dashboard clients connected to /ws.",
        );
        // Enough candidates per priority to fill a frame from any one of them.
        let per_frame = Self::quota(config.events_per_second);
        Self {
            aggregate: Mutex::new(Aggregate::new(per_frame)),
            searchable: Mutex::new(RecentRequests::new(SEARCHABLE)),
            config,
            daemons,
            health,
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(0),
            last_stats: Mutex::new(None),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            recent: Mutex::new(VecDeque::with_capacity(SNAPSHOT_EVENTS)),
            frames_dropped,
            clients_gauge,
        }
    }

    fn quota(per_second: u32) -> usize {
        (per_second as usize / 4).max(1)
    }

    fn aggregate(&self) -> std::sync::MutexGuard<'_, Aggregate> {
        self.aggregate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a client, or `None` when the cap is reached.
    fn join(&self) -> Option<(u64, mpsc::Receiver<Utf8Bytes>)> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= self.config.max_clients {
            return None;
        }
        let id = self.next_client.fetch_add(1, Relaxed);
        let (tx, rx) = mpsc::channel(self.config.client_queue);
        clients.insert(id, tx);
        self.clients_gauge.set(clients.len() as i64);
        Some((id, rx))
    }

    fn leave(&self, id: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.remove(&id);
        self.clients_gauge.set(clients.len() as i64);
    }

    /// Queues `frame` for every client; a full queue loses it.
    fn broadcast(&self, frame: &Value) {
        let text = Utf8Bytes::from(frame.to_string());
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|_, tx| match tx.try_send(text.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.frames_dropped.inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.clients_gauge.set(clients.len() as i64);
    }

    fn health_json(&self) -> Value {
        let checked = self.health.check();
        serde_json::to_value(Report::new(&checked, self.health.timezone())).unwrap_or(Value::Null)
    }

    /// The frame a new client gets first.
    pub fn snapshot(&self) -> String {
        let stats = self
            .last_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let events: Vec<EventView> = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        #[derive(serde::Serialize)]
        struct Snapshot<'a> {
            r#type: &'static str,
            version: &'static str,
            at_ms: u64,
            health: Value,
            stats: Option<&'a RawValue>,
            history: &'a VecDeque<Box<RawValue>>,
            events: Vec<EventView>,
        }
        serde_json::to_string(&Snapshot {
            r#type: "snapshot",
            version: crate::VERSION,
            at_ms: crate::unix_ms(),
            health: self.health_json(),
            stats: stats.as_deref(),
            history: &history,
            events,
        })
        .expect("the snapshot serializes")
    }

    /// Answers a client's search for a correlation id.
    pub fn search(&self, needle: &str) -> Value {
        let events = self
            .searchable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .search(needle, SNAPSHOT_EVENTS);
        json!({"type": "search_result", "correlation_id": needle, "events": events})
    }

    /// Sends stats every second, events four times a second and health when it changes
    /// (a daemon's link at once, the agent's own checks as they finish), until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut stats_every = tokio::time::interval(Duration::from_secs(1));
        let mut events_every = tokio::time::interval(EVENTS_EVERY);
        for timer in [&mut stats_every, &mut events_every] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut links = self.daemons.subscribe();
        let mut findings = self.health.findings();
        let mut statuses = self.health.check().components.statuses();
        // If either ever stops, the figures go on; health changes are then seen each second.
        let (mut links_open, mut findings_open) = (true, true);
        let mut last_stats = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = stats_every.tick() => {
                    let elapsed = last_stats.elapsed().as_secs_f64();
                    last_stats = Instant::now();
                    self.send_stats(elapsed);
                }
                _ = events_every.tick() => self.send_events(),
                changed = links.changed(), if links_open => {
                    links_open = changed.is_ok();
                    links.borrow_and_update();
                }
                changed = findings.changed(), if findings_open => {
                    findings_open = changed.is_ok();
                    findings.borrow_and_update();
                }
            }
            let now = self.health.check().components.statuses();
            if now != statuses {
                statuses = now;
                self.broadcast(&json!({"type": "health", "health": self.health_json()}));
            }
        }
    }

    fn send_stats(&self, elapsed: f64) {
        let summary = self.daemons.summary();
        let dashboard = json!({
            "clients": self.clients_gauge.get(),
            "frames_dropped": self.frames_dropped.get(),
        });
        let mut stats = self.aggregate().tick(elapsed, &summary, dashboard);
        *self.last_stats.lock().unwrap_or_else(|e| e.into_inner()) = Some(raw(&stats).into());
        stats["type"] = json!("stats");
        self.broadcast(&stats);
        if let Some(fields) = stats.as_object_mut() {
            fields.remove("type");
        }
        if let Some(pipe) = stats["pipe"].as_object_mut() {
            pipe.remove("daemons");
        }
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(raw(&stats));
    }

    fn send_events(&self) {
        let quota = Self::quota(self.config.events_per_second);
        let (events, suppressed) = self.aggregate().candidates.take(quota);
        if events.is_empty() && suppressed == 0 {
            return;
        }
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            for e in &events {
                if recent.len() == SNAPSHOT_EVENTS {
                    recent.pop_front();
                }
                recent.push_back(e.clone());
            }
        }
        self.broadcast(&json!({"type": "events", "events": events, "suppressed": suppressed}));
    }
}

impl EventSink for Dashboard {
    fn events(&self, _daemon: &str, events: &[exai_proto::Event]) {
        self.aggregate().events(events);
        let mut searchable = self.searchable.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().for_each(|e| searchable.push(e));
    }
}

/// `value` as JSON text, kept as such.
fn raw(value: &Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a serialized Value is valid JSON")
}
