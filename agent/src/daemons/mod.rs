//! The one place the agent keeps what it knows of each daemon. A daemon is a record,
//! keyed by its name: created at its first Hello, updated by its events, expired here
//! once it has been gone for the configured time. Metrics, health and the dashboard all
//! read these records; nothing else keeps per-daemon state.
//!
//! Counters are each daemon's running totals as its heartbeat states them, set, not
//! added up: after an agent restart they read the same as before, and a daemon restart
//! is a counter reset, which Prometheus's `rate` and `increase` handle. A daemon past the
//! cap shares the label `other`, where each adds its increase instead.

pub mod figures;
pub mod record;
pub mod series;

use crate::metrics::Families;
use exai_proto::{Batch, Hello, Unknown};
use figures::Figures;
use record::{DaemonRecord, LastHeartbeat, Process, OTHER};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonsConfig {
    /// How long a departed daemon's record (and series) stay.
    pub ttl: Duration,
    /// Most daemons with a label of their own; more share `other`.
    pub max_daemons: usize,
    /// Most model names per daemon kept as label values; more are `other`.
    pub max_models: usize,
}

/// Why a daemon's connection was refused or closed; `reason` is a bounded label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

pub struct Daemons {
    families: Arc<Families>,
    config: DaemonsConfig,
    records: Mutex<HashMap<String, Arc<DaemonRecord>>>,
    /// The counts of processes that are gone (expired, or replaced by a new process of the
    /// same daemon), so the dashboard's totals never go down.
    retired: Mutex<Figures>,
    /// Bumped whenever a daemon connects, disconnects or expires, so that what shows the
    /// link (the dashboard's health) can follow at once.
    changes: watch::Sender<u64>,
}

/// A daemon's link as health sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonLink {
    pub name: String,
    pub instance_id: String,
    pub connected: bool,
    /// Since it connected or disconnected.
    pub since: Duration,
    pub last_event_age: Duration,
    /// `None` until the current process sends its first heartbeat.
    pub heartbeat: Option<LastHeartbeat>,
}

/// What the dashboard shows of all daemons together.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Every process's counts, the departed included.
    pub figures: Figures,
    /// Summed over connected daemons' last heartbeats.
    pub connections: u64,
    pub in_flight: u64,
    pub rss_bytes: u64,
    pub cpu_percent: f64,
    pub spool_depth: u64,
    /// One per known daemon, by name.
    pub daemons: Vec<DaemonLink>,
}

impl Daemons {
    pub fn new(families: Arc<Families>, config: DaemonsConfig) -> Self {
        Self {
            families,
            config,
            records: Mutex::new(HashMap::new()),
            retired: Mutex::new(Figures::default()),
            changes: watch::channel(0).0,
        }
    }

    pub fn families(&self) -> &Families {
        &self.families
    }

    pub fn config(&self) -> DaemonsConfig {
        self.config
    }

    /// Wakes whoever watches when a daemon connects, disconnects or expires.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<DaemonRecord>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A daemon said Hello: its record, created or taken over by this process.
    pub fn connect(self: &Arc<Self>, hello: &Hello, unknown: Unknown) -> Result<Session, Refusal> {
        let instance_id = hello.instance_id.as_str();
        if !plain(instance_id) || instance_id == OTHER {
            return Err(Refusal {
                reason: "bad_instance",
                message: format!("instance id {:?} is not a plain identifier", instance_id),
            });
        }
        // A daemon of protocol 2 always names itself; the id stands in for one that did not.
        let mut name = match hello.name.as_str() {
            "" => instance_id.to_string(),
            n if plain(n) && n != OTHER => n.to_string(),
            n => {
                return Err(Refusal {
                    reason: "bad_instance",
                    message: format!("daemon name {n:?} is not a plain identifier"),
                })
            }
        };
        let process = Process {
            instance_id: instance_id.to_string(),
            pid: hello.pid,
            version: hello.version.as_str().to_string(),
            started_at_unix_ms: hello.started_at_unix_ms,
            sampling: hello.sampling,
        };
        let mut records = self.records();
        if let Some(live) = records.get(&name).filter(|r| r.state().connected) {
            if live.state().process.instance_id == instance_id {
                return Err(Refusal {
                    reason: "duplicate_instance",
                    message: format!("daemon {name} ({instance_id}) is already connected"),
                });
            }
            // Two live daemons claim one name: both stay visible, told apart.
            let suffixed = format!("{name}#{}", &instance_id[..instance_id.len().min(8)]);
            warn!(daemon = %name, instance = instance_id, renamed = %suffixed,
                "another daemon of this name is connected; set EXAI_DAEMON_NAME to tell them apart");
            if records.get(&suffixed).is_some_and(|r| r.state().connected) {
                return Err(Refusal {
                    reason: "duplicate_instance",
                    message: format!("daemon {suffixed} is already connected"),
                });
            }
            name = suffixed;
        }
        let record = match records.get(&name) {
            Some(record) => record.clone(),
            None => {
                let labelled = records.values().filter(|r| !r.overflow()).count();
                let label = if labelled < self.config.max_daemons {
                    name.clone()
                } else {
                    OTHER.to_string()
                };
                let record = Arc::new(DaemonRecord::new(
                    name.clone(),
                    label,
                    process.clone(),
                    &self.families,
                ));
                records.insert(name.clone(), record.clone());
                record
            }
        };
        let lost = {
            let mut state = record.state();
            let same_process = state.process.instance_id == instance_id && state.expected_seq > 0;
            let lost = if same_process {
                // Back after a broken link: what it wrote since our last event never came.
                hello.next_seq.saturating_sub(state.expected_seq)
            } else {
                // New to this agent: what it wrote to an earlier one and never had confirmed.
                let retiring = state.figures.take_process_counts();
                self.retired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(&retiring);
                if state.process.instance_id != instance_id {
                    let old = &state.process;
                    self.families.daemon_info.remove_label_values(&[
                        &record.label,
                        &old.instance_id,
                        &old.version,
                    ]);
                }
                hello.next_seq.saturating_sub(hello.acked_seq)
            };
            state.connect(&record, &self.families, process, hello.next_seq);
            state.catalogue(&hello.models, self.config.max_models);
            state.lost(lost);
            state.unknown(unknown);
            lost
        };
        if !record.overflow() {
            self.families
                .daemon_info
                .with_label_values(&[&record.label, instance_id, hello.version.as_str()])
                .set(1);
        }
        self.set_connected(&records, &record.label);
        drop(records);
        info!(daemon = %name, instance = instance_id, pid = hello.pid, version = %hello.version,
            next_seq = hello.next_seq, lost, "daemon connected");
        self.changed();
        Ok(Session {
            daemons: self.clone(),
            record,
            instance_id: instance_id.to_string(),
        })
    }

    /// `exai_pipe_daemon_connected` of `label`: 1 or 0, or for `other`, how many.
    fn set_connected(&self, records: &HashMap<String, Arc<DaemonRecord>>, label: &str) {
        let n = records
            .values()
            .filter(|r| r.label == label && r.state().connected)
            .count();
        self.families
            .pipe_connected
            .with_label_values(&[label])
            .set(n as i64);
    }

    fn disconnected(&self, record: &DaemonRecord, instance_id: &str) {
        let records = self.records();
        {
            let mut state = record.state();
            if state.process.instance_id != instance_id || !state.connected {
                return;
            }
            state.disconnect();
            if !record.overflow() {
                self.families.daemon_gone(&record.label);
                self.families
                    .daemon_info
                    .with_label_values(&[&record.label, instance_id, &state.process.version])
                    .set(0);
            }
        }
        self.set_connected(&records, &record.label);
        drop(records);
        self.changed();
    }

    /// Removes the records of daemons gone for longer than their time to live, with their
    /// series; says which.
    pub fn expire(&self, now: Instant) -> Vec<String> {
        let mut records = self.records();
        let gone: Vec<Arc<DaemonRecord>> = records
            .values()
            .filter(|r| {
                let s = r.state();
                !s.connected && now.saturating_duration_since(s.since) >= self.config.ttl
            })
            .cloned()
            .collect();
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        for record in &gone {
            records.remove(&record.name);
            let mut state = record.state();
            retired.add(&state.figures);
            state.forget_series();
            if !record.overflow() {
                self.families.forget(&record.label);
            }
        }
        drop(retired);
        drop(records);
        if !gone.is_empty() {
            self.changed();
        }
        gone.iter().map(|r| r.name.clone()).collect()
    }

    /// Every known daemon's link, by name.
    pub fn links(&self) -> Vec<DaemonLink> {
        let now = Instant::now();
        let mut links: Vec<DaemonLink> = self
            .records()
            .values()
            .map(|r| {
                let s = r.state();
                DaemonLink {
                    name: r.name.clone(),
                    instance_id: s.process.instance_id.clone(),
                    connected: s.connected,
                    since: now.saturating_duration_since(s.since),
                    last_event_age: now.saturating_duration_since(s.last_event),
                    heartbeat: s.heartbeat,
                }
            })
            .collect();
        links.sort_by(|a, b| a.name.cmp(&b.name));
        links
    }

    /// All daemons together, for the dashboard.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            figures: self
                .retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            ..Summary::default()
        };
        for record in self.records().values() {
            let s = record.state();
            summary.figures.add(&s.figures);
            if let (true, Some(hb)) = (s.connected, s.heartbeat) {
                summary.connections = summary
                    .connections
                    .saturating_add(u64::from(hb.connections));
                summary.in_flight = summary.in_flight.saturating_add(u64::from(hb.in_flight));
                summary.rss_bytes = summary.rss_bytes.saturating_add(hb.rss_bytes);
                summary.cpu_percent += f64::from(hb.cpu_percent);
                summary.spool_depth = summary.spool_depth.saturating_add(hb.supabase.spool_depth);
            }
        }
        summary.daemons = self.links();
        summary
    }

    /// How many daemons are connected now.
    pub fn connected(&self) -> usize {
        self.records()
            .values()
            .filter(|r| r.state().connected)
            .count()
    }
}

/// Whether `s` is a plain identifier: it becomes a label value and a log field.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'#'))
}

/// A connected daemon's handle, held by its connection. Dropping it marks the daemon
/// disconnected, however the connection ended.
pub struct Session {
    daemons: Arc<Daemons>,
    record: Arc<DaemonRecord>,
    instance_id: String,
}

impl Session {
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The daemon's `daemon` label value.
    pub fn label(&self) -> &str {
        &self.record.label
    }

    /// A batch of events; the next sequence number expected after it.
    pub fn batch(&self, batch: &Batch) -> Result<u64, Refusal> {
        let mut state = self.record.state();
        if batch.first_seq < state.expected_seq {
            return Err(Refusal {
                reason: "bad_sequence",
                message: format!(
                    "sequence went backwards: expected {}, got {}",
                    state.expected_seq, batch.first_seq
                ),
            });
        }
        let Some(next) = batch.first_seq.checked_add(batch.len) else {
            return Err(Refusal {
                reason: "bad_sequence",
                message: format!(
                    "sequence {} + {} events overflows",
                    batch.first_seq, batch.len
                ),
            });
        };
        let gap = batch.first_seq - state.expected_seq;
        state.lost(gap);
        state.expected_seq = next;
        state.unknown(batch.unknown);
        let skipped = u64::from(batch.unknown.event_kinds);
        let max_models = self.daemons.config.max_models;
        state.events(
            &self.record,
            &self.daemons.families,
            &batch.events,
            skipped,
            max_models,
        );
        Ok(next)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.daemons.disconnected(&self.record, &self.instance_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;
    use exai_proto::heartbeat::{ProviderTotal, RequestTotal};
    use exai_proto::{
        CallStatus, Heartbeat, McpMethod, ModelEntry, Provider, RequestStatus, Tool, Transport,
    };

    fn agent(max_daemons: usize, max_models: usize) -> (Registry, Arc<Daemons>) {
        let registry = Registry::new();
        let families = Arc::new(Families::new(&registry));
        let config = DaemonsConfig {
            ttl: Duration::from_secs(60),
            max_daemons,
            max_models,
        };
        (registry, Arc::new(Daemons::new(families, config)))
    }

    fn hello(instance: &str, name: &str, next_seq: u64, models: &[&str]) -> Hello {
        Hello {
            instance_id: instance.into(),
            name: name.into(),
            next_seq,
            acked_seq: next_seq,
            models: models
                .iter()
                .map(|m| ModelEntry {
                    provider: Provider::Glm,
                    name: (*m).into(),
                })
                .collect(),
            ..Hello::default()
        }
    }

    fn beat(requests: u64) -> Heartbeat {
        let mut hb = Heartbeat::default();
        hb.totals.requests.push(RequestTotal {
            transport: Transport::WebSocket,
            method: McpMethod::ToolsCall,
            tool: Tool::Version,
            status: RequestStatus::Success,
            count: requests,
        });
        hb
    }

    /// Sends `hb` as the session's next event.
    fn send(session: &Session, seq: &mut u64, hb: Heartbeat) {
        let batch = Batch {
            first_seq: *seq,
            events: vec![crate::testing::heartbeat(hb)],
            len: 1,
            unknown: Unknown::default(),
        };
        *seq = session.batch(&batch).unwrap();
    }

    fn value(registry: &Registry, series: &str) -> Option<String> {
        let text = String::from_utf8(registry.render()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(String::from))
    }

    const VERSION_CALLS: &str = "mcp_requests_total{daemon=\"NAME\",endpoint=\"version\",method=\"call_tool\",status=\"success\",transport=\"websocket\"}";

    fn version_calls(daemon: &str) -> String {
        VERSION_CALLS.replace("NAME", daemon)
    }

    #[test]
    fn counters_are_each_daemons_running_totals_across_restarts() {
        let (registry, daemons) = agent(8, 8);
        let mut seq = 0;
        let a = daemons
            .connect(&hello("i-1", "a:1", 0, &[]), Unknown::default())
            .unwrap();
        send(&a, &mut seq, beat(5));
        send(&a, &mut seq, beat(12));
        assert_eq!(
            value(&registry, &version_calls("a:1")).as_deref(),
            Some("12")
        );
        assert_eq!(
            value(&registry, "exai_pipe_daemon_connected{daemon=\"a:1\"}").as_deref(),
            Some("1")
        );
        drop(a);
        assert_eq!(
            value(&registry, "exai_pipe_daemon_connected{daemon=\"a:1\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&registry, &version_calls("a:1")).as_deref(),
            Some("12"),
            "kept while departed"
        );
        assert!(
            value(&registry, "mcp_active_connections{daemon=\"a:1\"}").is_none(),
            "a gone process's gauges go"
        );

        // The daemon restarts: a new process counts from zero, a reset Prometheus handles.
        let mut seq = 0;
        let a = daemons
            .connect(&hello("i-2", "a:1", 0, &[]), Unknown::default())
            .unwrap();
        assert_eq!(
            value(&registry, &version_calls("a:1")).as_deref(),
            Some("0")
        );
        send(&a, &mut seq, beat(3));
        assert_eq!(
            value(&registry, &version_calls("a:1")).as_deref(),
            Some("3")
        );
        assert!(value(
            &registry,
            "exai_daemon_info{daemon=\"a:1\",instance_id=\"i-1\",version=\"\"}"
        )
        .is_none());
        // The dashboard's totals go on: 12 from the first process, 3 from this one.
        assert_eq!(daemons.summary().figures.requests, 15);

        // The agent restarts: the same process's totals read the same at once.
        let (registry, daemons) = agent(8, 8);
        let a = daemons
            .connect(&hello("i-2", "a:1", seq, &[]), Unknown::default())
            .unwrap();
        send(&a, &mut seq, beat(3));
        assert_eq!(
            value(&registry, &version_calls("a:1")).as_deref(),
            Some("3")
        );
    }

    #[test]
    fn past_the_cap_daemons_share_other_and_add_their_increases() {
        let (registry, daemons) = agent(1, 8);
        let (mut sa, mut sb, mut sc) = (0, 0, 0);
        let a = daemons
            .connect(&hello("i-a", "a", 0, &[]), Unknown::default())
            .unwrap();
        let b = daemons
            .connect(&hello("i-b", "b", 0, &[]), Unknown::default())
            .unwrap();
        let c = daemons
            .connect(&hello("i-c", "c", 0, &[]), Unknown::default())
            .unwrap();
        assert_eq!((a.label(), b.label(), c.label()), ("a", "other", "other"));
        send(&a, &mut sa, beat(1));
        send(&b, &mut sb, beat(5));
        send(&c, &mut sc, beat(3));
        send(&b, &mut sb, beat(6));
        assert_eq!(
            value(&registry, &version_calls("other")).as_deref(),
            Some("9")
        );
        assert_eq!(
            value(&registry, "exai_pipe_daemon_connected{daemon=\"other\"}").as_deref(),
            Some("2")
        );
        drop(b);
        let mut sb = 0;
        let b = daemons
            .connect(&hello("i-b2", "b", 0, &[]), Unknown::default())
            .unwrap();
        send(&b, &mut sb, beat(2));
        assert_eq!(
            value(&registry, &version_calls("other")).as_deref(),
            Some("11"),
            "never goes down"
        );
        assert_eq!(value(&registry, &version_calls("a")).as_deref(), Some("1"));
    }

    #[test]
    fn counts_near_the_top_of_u64_saturate_instead_of_overflowing() {
        let (registry, daemons) = agent(8, 8);
        let mut seq = u64::MAX - 3;
        let d = daemons
            .connect(&hello("i-1", "d", seq, &["m"]), Unknown::default())
            .unwrap();
        let mut hb = beat(u64::MAX);
        // Two values this agent folds together (tools it does not know) add up.
        for _ in 0..2 {
            hb.totals.requests.push(RequestTotal {
                tool: Tool::Other,
                ..hb.totals.requests[0]
            });
        }
        for model in ["m", "not-in-the-catalogue", "nor-this"] {
            hb.totals.provider_calls.push(ProviderTotal {
                provider: Provider::Glm,
                model: model.into(),
                status: CallStatus::ServerError,
                calls: u64::MAX,
                input_tokens: u64::MAX,
                output_tokens: u64::MAX,
                reasoning_tokens: u64::MAX,
                cached_tokens: u64::MAX,
            });
        }
        hb.pipe.dropped.queue_full = u64::MAX;
        hb.pipe.dropped.write_error = u64::MAX;
        send(&d, &mut seq, hb.clone());
        send(&d, &mut seq, hb);
        let max = u64::MAX.to_string();
        assert_eq!(value(&registry, &version_calls("d")), Some(max.clone()));
        let other = "mcp_api_calls_total{daemon=\"d\",model=\"other\",provider=\"glm\",status=\"server_error\"}";
        assert_eq!(value(&registry, other), Some(max.clone()));
        let summary = daemons.summary();
        assert_eq!(summary.figures.requests, u64::MAX);
        assert_eq!(summary.figures.dropped.total(), u64::MAX);
        // A sequence that would wrap is refused, not wrapped.
        let wrapping = Batch {
            first_seq: seq,
            events: vec![],
            len: u64::MAX,
            unknown: Unknown::default(),
        };
        assert_eq!(d.batch(&wrapping).unwrap_err().reason, "bad_sequence");
        // A Hello whose unconfirmed span is the whole range is counted, saturated.
        drop(d);
        let lost = Hello {
            acked_seq: 0,
            ..hello("i-2", "d", u64::MAX, &[])
        };
        let _d = daemons.connect(&lost, Unknown::default()).unwrap();
        let _d2 = daemons
            .connect(
                &Hello {
                    acked_seq: 0,
                    ..hello("i-3", "e", u64::MAX, &[])
                },
                Unknown::default(),
            )
            .unwrap();
        assert_eq!(
            value(&registry, "exai_pipe_events_lost_total{daemon=\"d\"}"),
            Some(max)
        );
    }

    #[test]
    fn models_are_labelled_from_the_catalogue_up_to_the_cap() {
        let (registry, daemons) = agent(8, 2);
        let mut seq = 0;
        let d = daemons
            .connect(
                &hello("i-1", "d", 0, &["glm-5", "kimi-k2.6", "third"]),
                Unknown::default(),
            )
            .unwrap();
        let mut hb = Heartbeat::default();
        for model in ["glm-5", "kimi-k2.6", "third", "never-announced"] {
            hb.totals.provider_calls.push(ProviderTotal {
                provider: Provider::Glm,
                model: model.into(),
                status: CallStatus::Success,
                calls: 1,
                ..ProviderTotal::default()
            });
        }
        send(&d, &mut seq, hb);
        let calls = |model: &str| {
            value(&registry, &format!("mcp_api_calls_total{{daemon=\"d\",model=\"{model}\",provider=\"glm\",status=\"success\"}}"))
        };
        assert_eq!(calls("glm-5").as_deref(), Some("1"));
        assert_eq!(calls("kimi-k2.6").as_deref(), Some("1"));
        assert_eq!(calls("third"), None, "past the cap");
        assert_eq!(calls("other").as_deref(), Some("2"));
    }

    #[test]
    fn a_second_live_daemon_of_the_same_name_is_told_apart() {
        let (_registry, daemons) = agent(8, 8);
        let first = daemons
            .connect(&hello("aaaaaaaa-1", "api", 0, &[]), Unknown::default())
            .unwrap();
        let again = daemons.connect(&hello("aaaaaaaa-1", "api", 0, &[]), Unknown::default());
        assert_eq!(again.err().map(|r| r.reason), Some("duplicate_instance"));
        let second = daemons
            .connect(&hello("bbbbbbbb-2", "api", 0, &[]), Unknown::default())
            .unwrap();
        assert_eq!((first.label(), second.label()), ("api", "api#bbbbbbbb"));
        assert_eq!(daemons.connected(), 2);
        let refused = daemons.connect(&hello("has space", "x", 0, &[]), Unknown::default());
        assert_eq!(refused.err().map(|r| r.reason), Some("bad_instance"));
    }

    #[test]
    fn a_departed_daemon_expires_with_its_series_and_the_totals_stay() {
        let (registry, daemons) = agent(1, 8);
        let mut seq = 0;
        let d = daemons
            .connect(&hello("i-1", "d", 0, &[]), Unknown::default())
            .unwrap();
        send(&d, &mut seq, beat(4));
        drop(d);
        assert!(
            daemons.expire(Instant::now()).is_empty(),
            "not gone long enough"
        );
        assert_eq!(
            daemons.expire(Instant::now() + Duration::from_secs(61)),
            ["d"]
        );
        let text = String::from_utf8(registry.render()).unwrap();
        assert!(!text.contains("daemon=\"d\""), "{text}");
        assert_eq!(daemons.summary().figures.requests, 4);
        // Its place under the cap is free again.
        let e = daemons
            .connect(&hello("i-2", "e", 0, &[]), Unknown::default())
            .unwrap();
        assert_eq!(e.label(), "e");
    }

    #[test]
    fn a_gap_in_sequence_numbers_is_counted_as_lost() {
        let (registry, daemons) = agent(8, 8);
        // New to this agent: what it wrote to an earlier one and never had confirmed.
        let hello = Hello {
            acked_seq: 7,
            ..hello("i-1", "d", 10, &[])
        };
        let d = daemons.connect(&hello, Unknown::default()).unwrap();
        let mut seq = 15;
        send(&d, &mut seq, beat(1));
        assert_eq!(
            value(&registry, "exai_pipe_events_lost_total{daemon=\"d\"}").as_deref(),
            Some("8")
        );
        // Back on a new connection: what it wrote since our last event never came.
        drop(d);
        let back = Hello {
            acked_seq: 16,
            ..self::hello("i-1", "d", 20, &[])
        };
        let _d = daemons.connect(&back, Unknown::default()).unwrap();
        assert_eq!(
            value(&registry, "exai_pipe_events_lost_total{daemon=\"d\"}").as_deref(),
            Some("12")
        );
    }
}
