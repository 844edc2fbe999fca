//! A daemon's series: what each of its running totals is called in `/metrics`, and the
//! handles to them, kept so a heartbeat sets each counter without building its labels.

use crate::metrics::weighted::HistogramSeries;
use crate::metrics::{Counter, Families};
use exai_proto::heartbeat::DropReason;
use exai_proto::{
    CallStatus, ConnectionPhase, Direction, McpMethod, Provider, RefusalReason, RequestStatus,
    StorageBackend, StorageOp, StorageResult, SupabaseOp, SupabaseResult, SupabaseTable, Tool,
    Transport,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A model label: its place in the daemon's accepted catalogue, or [`OTHER_MODEL`].
pub type ModelIx = u16;
/// Models outside the catalogue, or past the cap.
pub const OTHER_MODEL: ModelIx = ModelIx::MAX;

/// The kinds of token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenType {
    Input,
    Output,
    Reasoning,
    Cached,
}

impl TokenType {
    pub const ALL: [TokenType; 4] = [
        TokenType::Input,
        TokenType::Output,
        TokenType::Reasoning,
        TokenType::Cached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Input => "input",
            TokenType::Output => "output",
            TokenType::Reasoning => "reasoning",
            TokenType::Cached => "cached",
        }
    }
}

/// Spool figures the daemon counts since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpoolCount {
    Refused,
    WriteTimeouts,
    DeadLetters,
    Damaged,
}

/// One counter of a daemon: its family and label values, compactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterKey {
    WsMessages(Direction),
    WsBytes(Direction),
    Requests(Transport, McpMethod, Tool, RequestStatus),
    Calls(Provider, ModelIx, CallStatus),
    Tokens(Provider, ModelIx, TokenType),
    Storage(StorageOp, StorageBackend, StorageResult),
    Supabase(SupabaseOp, SupabaseTable, SupabaseResult),
    Connections(Transport, ConnectionPhase, RefusalReason),
    /// `component` and `error_type`.
    Errors(&'static str, &'static str),
    Dropped(DropReason),
    Spool(SpoolCount),
}

/// One histogram series of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistogramKey {
    Request(McpMethod, Tool),
    Latency(Provider, ModelIx),
    FirstToken(Provider, ModelIx),
    FirstAnswerToken(Provider, ModelIx),
    Storage(StorageOp, StorageBackend),
    Supabase(SupabaseOp, SupabaseTable),
}

/// `method` and `endpoint` as the seed's dashboards query them:
/// `{method="call_tool",endpoint="chat"}`; requests that are not tool calls carry their
/// method as the endpoint.
pub fn seed_labels(method: McpMethod, tool: Tool) -> (&'static str, &'static str) {
    let seed_method = match method {
        McpMethod::ToolsCall => "call_tool",
        McpMethod::ToolsList => "list_tools",
        McpMethod::Initialize => "initialize",
        McpMethod::Initialized => "initialized",
        McpMethod::Ping => "ping",
        McpMethod::LoggingSetLevel => "set_level",
        McpMethod::Cancelled => "cancelled",
        McpMethod::TasksGet => "get_task",
        McpMethod::TasksResult => "get_task_result",
        McpMethod::TasksList => "list_tasks",
        McpMethod::TasksCancel => "cancel_task",
        McpMethod::Other => "other",
    };
    match tool {
        Tool::None => (seed_method, seed_method),
        tool => (seed_method, tool.as_str()),
    }
}

/// The handles of one daemon's series, created on first use.
#[derive(Default)]
pub struct SeriesCache {
    counters: HashMap<CounterKey, Arc<Counter>>,
    histograms: HashMap<HistogramKey, Arc<HistogramSeries>>,
}

impl SeriesCache {
    /// The counter `key` of the daemon labelled `daemon`, whose models are `models`.
    pub fn counter(
        &mut self,
        families: &Families,
        daemon: &str,
        models: &[String],
        key: CounterKey,
    ) -> &Arc<Counter> {
        self.counters
            .entry(key)
            .or_insert_with(|| counter_of(families, daemon, models, key))
    }

    pub fn histogram(
        &mut self,
        families: &Families,
        daemon: &str,
        models: &[String],
        key: HistogramKey,
    ) -> &Arc<HistogramSeries> {
        self.histograms
            .entry(key)
            .or_insert_with(|| histogram_of(families, daemon, models, key))
    }

    /// Every counter back to zero: a new process of the daemon starts counting afresh.
    pub fn reset_counters(&self) {
        self.counters.values().for_each(|c| c.set(0));
    }

    /// Forgets the handles (their series were removed from the families).
    pub fn clear(&mut self) {
        self.counters.clear();
        self.histograms.clear();
    }
}

fn model(models: &[String], ix: ModelIx) -> &str {
    models.get(usize::from(ix)).map_or("other", String::as_str)
}

fn counter_of(f: &Families, d: &str, models: &[String], key: CounterKey) -> Arc<Counter> {
    match key {
        CounterKey::WsMessages(dir) => f.ws_messages.with_label_values(&[d, dir.as_str()]),
        CounterKey::WsBytes(dir) => f.ws_bytes.with_label_values(&[d, dir.as_str()]),
        CounterKey::Requests(transport, method, tool, status) => {
            let (method, endpoint) = seed_labels(method, tool);
            f.requests.with_label_values(&[
                d,
                method,
                endpoint,
                status.as_str(),
                transport.as_str(),
            ])
        }
        CounterKey::Calls(provider, m, status) => f.api_calls.with_label_values(&[
            d,
            provider.as_str(),
            model(models, m),
            status.as_str(),
        ]),
        CounterKey::Tokens(provider, m, kind) => {
            f.tokens
                .with_label_values(&[d, provider.as_str(), model(models, m), kind.as_str()])
        }
        CounterKey::Storage(op, backend, result) => {
            f.storage_ops
                .with_label_values(&[d, op.as_str(), backend.as_str(), result.as_str()])
        }
        CounterKey::Supabase(op, table, result) => {
            f.supabase_ops
                .with_label_values(&[d, op.as_str(), table.as_str(), result.as_str()])
        }
        CounterKey::Connections(transport, phase, reason) => f.connections.with_label_values(&[
            d,
            transport.as_str(),
            phase.as_str(),
            reason.as_str(),
        ]),
        CounterKey::Errors(component, kind) => f.errors.with_label_values(&[d, component, kind]),
        CounterKey::Dropped(reason) => f.pipe_dropped.with_label_values(&[d, reason.as_str()]),
        CounterKey::Spool(count) => match count {
            SpoolCount::Refused => &f.spool_refused,
            SpoolCount::WriteTimeouts => &f.spool_write_timeouts,
            SpoolCount::DeadLetters => &f.dead_letters,
            SpoolCount::Damaged => &f.spool_damaged,
        }
        .with_label_values(&[d]),
    }
}

fn histogram_of(
    f: &Families,
    d: &str,
    models: &[String],
    key: HistogramKey,
) -> Arc<HistogramSeries> {
    match key {
        HistogramKey::Request(method, tool) => {
            let (method, endpoint) = seed_labels(method, tool);
            f.request_duration.series(&[d, method, endpoint])
        }
        HistogramKey::Latency(p, m) => f.api_latency.series(&[d, p.as_str(), model(models, m)]),
        HistogramKey::FirstToken(p, m) => f.api_ttft.series(&[d, p.as_str(), model(models, m)]),
        HistogramKey::FirstAnswerToken(p, m) => {
            f.api_ttfa.series(&[d, p.as_str(), model(models, m)])
        }
        HistogramKey::Storage(op, backend) => {
            f.storage_latency
                .series(&[d, op.as_str(), backend.as_str()])
        }
        HistogramKey::Supabase(op, table) => {
            f.supabase_latency.series(&[d, op.as_str(), table.as_str()])
        }
    }
}
