//! One daemon as the agent knows it: who it is, whether it is connected, what its last
//! heartbeat said, and its series. Created on its first Hello, updated by its events,
//! expired by the registry.

use super::figures::Figures;
use super::series::{
    CounterKey, HistogramKey, ModelIx, SeriesCache, SpoolCount, TokenType, OTHER_MODEL,
};
use crate::metrics::{Counter, Families, FloatGauge, Gauge};
use exai_proto::heartbeat::DropReason;
use exai_proto::{
    CallStatus, ConnectionPhase, Event, EventKind, EventLabel, Heartbeat, ModelEntry, ModelName,
    RequestStatus, SamplingPolicy, StorageOp, StorageResult, StorageView, SupabaseResult,
    SupabaseView, Unknown,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The label of daemons past the cap.
pub const OTHER: &str = "other";

pub struct DaemonRecord {
    /// What the daemon calls itself (the registry's key).
    pub name: String,
    /// Its `daemon` label value: its name, or `other` past the cap.
    pub label: String,
    state: Mutex<RecordState>,
}

/// A daemon process, as its Hello described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub instance_id: String,
    pub pid: u32,
    pub version: String,
    pub started_at_unix_ms: u64,
    pub sampling: SamplingPolicy,
}

/// What the last heartbeat said of the daemon's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastHeartbeat {
    pub at: Instant,
    pub connections: u32,
    pub in_flight: u32,
    pub rss_bytes: u64,
    pub cpu_percent: f32,
    pub storage: StorageView,
    pub supabase: SupabaseView,
}

pub struct RecordState {
    pub process: Process,
    pub connected: bool,
    /// When it last connected or disconnected.
    pub since: Instant,
    /// The sequence number the next event should carry.
    pub expected_seq: u64,
    pub last_event: Instant,
    /// `None` until the current process sends one.
    pub heartbeat: Option<LastHeartbeat>,
    /// The current process's counts, for the dashboard.
    pub figures: Figures,
    /// Model names kept as label values, in the order announced, up to the cap.
    models: Vec<String>,
    model_ix: HashMap<ModelName, ModelIx>,
    series: SeriesCache,
    pipe: PipeSeries,
    /// This process's gauges; `None` while disconnected, and for daemons past the cap.
    gauges: Option<Gauges>,
    /// Each counter's value summed over a heartbeat's totals (values the agent folds
    /// together, such as models outside the catalogue, add up).
    sums: HashMap<CounterKey, u64>,
    /// Past the cap, counters are shared with other daemons: each adds its increase,
    /// so this is what it last added up to.
    added: HashMap<CounterKey, u64>,
}

/// The agent's own counts of a daemon's pipe; these go on across its restarts.
struct PipeSeries {
    received: Vec<Arc<Counter>>,
    lost: Arc<Counter>,
    /// Event kinds, fields, label values.
    unknown: [Arc<Counter>; 3],
}

struct Gauges {
    connections: Arc<Gauge>,
    in_flight: Arc<Gauge>,
    spool_depth: Arc<Gauge>,
    spool_bytes: Arc<Gauge>,
    rss: Arc<Gauge>,
    cpu: Arc<FloatGauge>,
    queue_depth: Arc<Gauge>,
    queue_capacity: Arc<Gauge>,
    cache_hit_ratio: Arc<FloatGauge>,
}

impl Gauges {
    fn new(f: &Families, label: &str) -> Self {
        let ratio = f.cache_hit_ratio.with_label_values(&[label]);
        ratio.set(f64::NAN);
        Self {
            connections: f.active_connections.with_label_values(&[label]),
            in_flight: f.in_flight.with_label_values(&[label]),
            spool_depth: f.spool_depth.with_label_values(&[label]),
            spool_bytes: f.spool_bytes.with_label_values(&[label]),
            rss: f.memory.with_label_values(&["daemon", label]),
            cpu: f.cpu.with_label_values(&["daemon", label]),
            queue_depth: f.queue_depth.with_label_values(&[label]),
            queue_capacity: f.queue_capacity.with_label_values(&[label]),
            cache_hit_ratio: ratio,
        }
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl DaemonRecord {
    pub fn new(name: String, label: String, process: Process, families: &Families) -> Self {
        let now = Instant::now();
        let pipe = PipeSeries {
            received: EventLabel::ALL
                .iter()
                .map(|kind| {
                    families
                        .pipe_received
                        .with_label_values(&[&label, kind.as_str()])
                })
                .collect(),
            lost: families.pipe_lost.with_label_values(&[&label]),
            unknown: ["event_kind", "field", "label_value"]
                .map(|what| families.pipe_unknown.with_label_values(&[&label, what])),
        };
        Self {
            name,
            label,
            state: Mutex::new(RecordState {
                process,
                connected: false,
                since: now,
                expected_seq: 0,
                last_event: now,
                heartbeat: None,
                figures: Figures::default(),
                models: Vec::new(),
                model_ix: HashMap::new(),
                series: SeriesCache::default(),
                pipe,
                gauges: None,
                sums: HashMap::new(),
                added: HashMap::new(),
            }),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, RecordState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn overflow(&self) -> bool {
        self.label == OTHER
    }
}

impl RecordState {
    /// A process of this daemon connected: a new one starts its counts from zero.
    pub(super) fn connect(
        &mut self,
        record: &DaemonRecord,
        families: &Families,
        process: Process,
        next_seq: u64,
    ) {
        if process.instance_id != self.process.instance_id {
            // Past the cap the counters are shared: the new process adds from zero.
            if !record.overflow() {
                self.series.reset_counters();
            }
            self.added.clear();
            self.heartbeat = None;
            self.process = process;
        }
        self.connected = true;
        self.since = Instant::now();
        self.last_event = self.since;
        self.expected_seq = next_seq;
        if !record.overflow() {
            self.gauges = Some(Gauges::new(families, &record.label));
        }
        // Counters an alert watches exist from the start, at zero: a series that first
        // appears at 1 hides that first increase from `increase()`.
        let watched = DropReason::ALL
            .iter()
            .map(|r| CounterKey::Dropped(*r))
            .chain(
                [
                    SpoolCount::Refused,
                    SpoolCount::WriteTimeouts,
                    SpoolCount::DeadLetters,
                    SpoolCount::Damaged,
                ]
                .map(CounterKey::Spool),
            );
        for key in watched {
            self.series
                .counter(families, &record.label, &self.models, key);
        }
    }

    pub(super) fn disconnect(&mut self) {
        self.connected = false;
        self.since = Instant::now();
        self.gauges = None;
    }

    /// Accepts the model names of a catalogue as label values, up to `cap` in all.
    pub(super) fn catalogue(&mut self, models: &[ModelEntry], cap: usize) {
        for entry in models {
            if self.models.len() >= cap.min(usize::from(OTHER_MODEL)) {
                return;
            }
            if entry.name.is_empty() || self.model_ix.contains_key(&entry.name) {
                continue;
            }
            self.model_ix
                .insert(entry.name, self.models.len() as ModelIx);
            self.models.push(entry.name.as_str().to_string());
        }
    }

    /// The model names kept as label values.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    fn model(&self, name: &ModelName) -> ModelIx {
        self.model_ix.get(name).copied().unwrap_or(OTHER_MODEL)
    }

    pub(super) fn lost(&mut self, n: u64) {
        self.pipe.lost.inc_by(n);
        self.figures.lost = self.figures.lost.saturating_add(n);
    }

    pub(super) fn unknown(&mut self, unknown: Unknown) {
        let [kinds, fields, labels] = &self.pipe.unknown;
        kinds.inc_by(u64::from(unknown.event_kinds));
        fields.inc_by(u64::from(unknown.fields));
        labels.inc_by(u64::from(unknown.label_values));
    }

    /// A batch's events, in order; `skipped_kinds` of the batch's events were of kinds
    /// this agent does not know.
    pub(super) fn events(
        &mut self,
        record: &DaemonRecord,
        families: &Families,
        events: &[Event],
        skipped_kinds: u64,
        max_models: usize,
    ) {
        let mut by_kind = [0u64; EventLabel::COUNT];
        by_kind[EventLabel::Unknown.index()] = skipped_kinds;
        for event in events {
            by_kind[event.kind.label().index()] += 1;
        }
        for (counter, n) in self.pipe.received.iter().zip(by_kind) {
            counter.inc_by(n);
        }
        let received = (events.len() as u64).saturating_add(skipped_kinds);
        self.figures.received = self.figures.received.saturating_add(received);
        self.last_event = Instant::now();
        for event in events {
            match &event.kind {
                EventKind::Heartbeat(hb) => self.heartbeat(record, families, hb),
                EventKind::Catalogue { models } => self.catalogue(models, max_models),
                _ => self.observe(record, families, event),
            }
        }
    }

    /// A sampled event into its histogram, weighted.
    fn observe(&mut self, record: &DaemonRecord, families: &Families, event: &Event) {
        let seconds = |us: u64| us as f64 / 1e6;
        let w = event.weight;
        let observe = |state: &mut RecordState, key, us| {
            state
                .series
                .histogram(families, &record.label, &state.models, key)
                .observe(seconds(us), w);
        };
        match &event.kind {
            EventKind::McpRequest {
                method,
                tool,
                duration_us,
                ..
            } => observe(self, HistogramKey::Request(*method, *tool), *duration_us),
            EventKind::ProviderCall(call) if call.status == CallStatus::Success => {
                let m = self.model(&call.model);
                observe(
                    self,
                    HistogramKey::Latency(call.provider, m),
                    call.latency_us,
                );
                if let Some(us) = call.ttft_us {
                    observe(self, HistogramKey::FirstToken(call.provider, m), us);
                }
                if let Some(us) = call.ttfa_us {
                    observe(self, HistogramKey::FirstAnswerToken(call.provider, m), us);
                }
            }
            EventKind::Storage {
                op,
                backend,
                latency_us,
                ..
            } => observe(self, HistogramKey::Storage(*op, *backend), *latency_us),
            EventKind::Supabase {
                op,
                table,
                latency_us,
                http_status,
                ..
            } if *http_status != 0 => {
                observe(self, HistogramKey::Supabase(*op, *table), *latency_us)
            }
            _ => {}
        }
    }

    /// The daemon's exact running totals and its state.
    fn heartbeat(&mut self, record: &DaemonRecord, families: &Families, hb: &Heartbeat) {
        let mut fig = Figures {
            received: self.figures.received,
            lost: self.figures.lost,
            dropped: hb.pipe.dropped,
            ..Figures::default()
        };
        let (mut hits, mut misses) = (0u64, 0u64);
        self.sums.clear();
        let sums = &mut self.sums;
        let mut add = |key: CounterKey, n: u64| {
            if n > 0 {
                let sum = sums.entry(key).or_default();
                *sum = sum.saturating_add(n);
            }
        };
        let plus = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        let t = &hb.totals;
        for w in &t.ws_messages {
            add(CounterKey::WsMessages(w.direction), w.messages);
            add(CounterKey::WsBytes(w.direction), w.bytes);
            plus(&mut fig.ws_messages, w.messages);
            plus(&mut fig.ws_bytes, w.bytes);
        }
        for r in &t.requests {
            add(
                CounterKey::Requests(r.transport, r.method, r.tool, r.status),
                r.count,
            );
            plus(&mut fig.requests, r.count);
            if matches!(r.status, RequestStatus::Error | RequestStatus::ToolError) {
                add(CounterKey::Errors("mcp", r.status.as_str()), r.count);
                plus(&mut fig.request_errors, r.count);
                plus(&mut fig.ws_errors, r.count);
            }
        }
        for c in &t.provider_calls {
            let m = self.model_ix.get(&c.model).copied().unwrap_or(OTHER_MODEL);
            let p = c.provider;
            add(CounterKey::Calls(p, m, c.status), c.calls);
            let tokens = [
                c.input_tokens,
                c.output_tokens,
                c.reasoning_tokens,
                c.cached_tokens,
            ];
            for (kind, n) in TokenType::ALL.iter().zip(tokens) {
                add(CounterKey::Tokens(p, m, *kind), n);
            }
            plus(&mut fig.calls[p.index()], c.calls);
            if !matches!(c.status, CallStatus::Success | CallStatus::Cancelled) {
                add(CounterKey::Errors(p.as_str(), c.status.as_str()), c.calls);
                plus(&mut fig.call_errors[p.index()], c.calls);
            }
            let model = self
                .models
                .get(usize::from(m))
                .map_or("other", String::as_str);
            let row = fig.tokens.entry((p, model.to_string())).or_default();
            for (sum, n) in row.iter_mut().zip(tokens) {
                plus(sum, n);
            }
        }
        for s in &t.storage {
            add(CounterKey::Storage(s.op, s.backend, s.result), s.count);
            plus(&mut fig.storage, s.count);
            fig.backend = Some(s.backend);
            match (s.op, s.result) {
                (_, StorageResult::Error | StorageResult::Timeout) => {
                    add(CounterKey::Errors("storage", s.result.as_str()), s.count);
                    plus(&mut fig.storage_errors, s.count);
                }
                (StorageOp::Get, StorageResult::Hit) => plus(&mut hits, s.count),
                (StorageOp::Get, StorageResult::Miss) => plus(&mut misses, s.count),
                _ => {}
            }
        }
        for s in &t.supabase {
            add(CounterKey::Supabase(s.op, s.table, s.result), s.count);
            plus(&mut fig.supabase, s.count);
            if s.result != SupabaseResult::Ok {
                add(CounterKey::Errors("supabase", s.result.as_str()), s.count);
                plus(&mut fig.supabase_errors, s.count);
            }
        }
        for c in &t.connections {
            add(
                CounterKey::Connections(c.transport, c.phase, c.reason),
                c.count,
            );
            if c.phase == ConnectionPhase::Refused {
                add(
                    CounterKey::Errors(c.transport.as_str(), c.reason.as_str()),
                    c.count,
                );
                plus(&mut fig.ws_errors, c.count);
            }
        }
        for reason in DropReason::ALL {
            add(CounterKey::Dropped(*reason), hb.pipe.dropped.get(*reason));
        }
        let v = &hb.supabase;
        for (count, n) in [
            (SpoolCount::Refused, v.refused_turns),
            (SpoolCount::WriteTimeouts, v.write_timeouts),
            (SpoolCount::DeadLetters, v.dead_letters),
            (SpoolCount::Damaged, v.damaged_records),
        ] {
            add(CounterKey::Spool(count), n);
        }
        if fig.backend.is_none() {
            fig.backend = Some(hb.storage.backend);
        }

        let overflow = record.overflow();
        let (series, models, added) = (&mut self.series, &self.models, &mut self.added);
        for (key, value) in self.sums.iter() {
            let counter = series.counter(families, &record.label, models, *key);
            if overflow {
                let before = added.insert(*key, *value).unwrap_or(0);
                counter.inc_by(value.saturating_sub(before));
            } else {
                counter.set(*value);
            }
        }
        if let Some(g) = &self.gauges {
            g.connections.set(i64::from(hb.connections));
            g.in_flight.set(i64::from(hb.in_flight));
            g.rss.set(gauge_value(hb.process.rss_bytes));
            g.cpu.set(f64::from(hb.process.cpu_percent));
            g.queue_depth.set(i64::from(hb.pipe.queue_depth));
            g.queue_capacity.set(i64::from(hb.pipe.queue_capacity));
            if hits.saturating_add(misses) > 0 {
                g.cache_hit_ratio
                    .set(hits as f64 / (hits as f64 + misses as f64));
            }
            if hb.supabase.enabled {
                g.spool_depth.set(gauge_value(hb.supabase.spool_depth));
                g.spool_bytes.set(gauge_value(hb.supabase.spool_bytes));
                families
                    .supabase_up
                    .with_label_values(&[&record.label])
                    .set(i64::from(
                        hb.supabase.last_upload != Some(SupabaseResult::Retry)
                            && hb.supabase.last_upload != Some(SupabaseResult::Rejected),
                    ));
            }
            let backend = hb.storage.backend.as_str();
            let up = families
                .storage_up
                .with_label_values(&[&record.label, backend]);
            up.set(i64::from(hb.storage.reachable));
        }
        self.figures = fig;
        self.heartbeat = Some(LastHeartbeat {
            at: Instant::now(),
            connections: hb.connections,
            in_flight: hb.in_flight,
            rss_bytes: hb.process.rss_bytes,
            cpu_percent: hb.process.cpu_percent,
            storage: hb.storage,
            supabase: hb.supabase,
        });
    }

    /// The handles' series were removed from the families.
    pub(super) fn forget_series(&mut self) {
        self.series.clear();
    }
}
