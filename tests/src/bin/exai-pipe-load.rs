//! exai-pipe-load: connects to an agent's event socket as one or more daemons and sends
//! it a realistic stream of events at a set rate, for measuring the agent under load.
//!
//!   exai-pipe-load [--socket PATH] [--rate 100000] [--duration 60] [--daemons 1]
//!                  [--report-every 10] [--queue N]
//!
//! Each daemon is the real thing's observability half: an `EventEmitter` with the default
//! sampling policy and exact running totals, and `pipe_writer::run`, which sends batches
//! and a heartbeat every second. One producer thread plays the request path of all of
//! them in turn: each simulated MCP call records its WebSocket messages, the request, and
//! for chats a provider call (several models, a few failures), conversation reads and
//! writes and Supabase upserts; connections open, close and are sometimes refused.
//! `--rate` paces the events that reach the pipe (sampled and queued), not the simulated
//! calls behind them. The socket defaults to EXAI_EVENTS_SOCKET. Progress goes to
//! stderr every `--report-every` seconds; a JSON summary goes to stdout at the end.

use exai_daemon::pipe_writer::{self, DaemonIdentity, WriterConfig};
use exai_daemon::views::NoDependencies;
use exai_daemon::{EventEmitter, ModelSlot, Recorded, TokenCounts, Totals};
use exai_proto::event::*;
use exai_proto::{CorrelationId, ModelEntry, SampleClass, SamplingPolicy, DEFAULT_EVENTS_SOCKET};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
struct Options {
    socket: PathBuf,
    rate: f64,
    duration: Duration,
    daemons: usize,
    report_every: Duration,
    queue: Option<usize>,
}

const USAGE: &str = "usage: exai-pipe-load [--socket PATH] [--rate EVENTS_PER_S] [--duration S] [--daemons N] [--report-every S] [--queue N]";

fn parse() -> Result<Options, String> {
    let mut o = Options {
        socket: std::env::var_os("EXAI_EVENTS_SOCKET")
            .filter(|s| !s.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_EVENTS_SOCKET), PathBuf::from),
        rate: 100_000.0,
        duration: Duration::from_secs(60),
        daemons: 1,
        report_every: Duration::from_secs(10),
        queue: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}={value:?}: expected {what}");
        let seconds = |v: &str| v.parse::<f64>().ok().filter(|s| *s > 0.0);
        match flag.as_str() {
            "--socket" => o.socket = PathBuf::from(&value),
            "--rate" => o.rate = seconds(&value).ok_or_else(|| bad("events per second"))?,
            "--duration" => {
                o.duration = Duration::from_secs_f64(seconds(&value).ok_or_else(|| bad("seconds"))?)
            }
            "--daemons" => {
                o.daemons = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("a number of daemons"))?
            }
            "--report-every" => {
                o.report_every =
                    Duration::from_secs_f64(seconds(&value).ok_or_else(|| bad("seconds"))?)
            }
            "--queue" => o.queue = Some(value.parse().map_err(|_| bad("a queue capacity"))?),
            other => return Err(format!("unknown flag {other}; {USAGE}")),
        }
    }
    Ok(o)
}

/// The models a daemon serves (its own table), plus one it does not know (counted as
/// `other`), last.
static MODELS: LazyLock<Vec<(Provider, &'static str)>> = LazyLock::new(|| {
    exai_daemon::providers::models::MODELS
        .iter()
        .map(|m| (m.provider, m.name))
        .chain([(Provider::Glm, "glm-experimental")])
        .collect()
});

/// One simulated daemon: its emitter and the request path's view of it.
struct Daemon {
    emitter: EventEmitter,
    slots: Vec<ModelSlot>,
    backend: StorageBackend,
}

/// xorshift64*: cheap, deterministic and good enough to pick from a mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Picks from `(weight, value)` pairs.
    fn pick<T: Copy>(&mut self, mix: &[(u64, T)]) -> T {
        let total: u64 = mix.iter().map(|(w, _)| w).sum();
        let mut at = self.below(total);
        for (w, v) in mix {
            if at < *w {
                return *v;
            }
            at -= w;
        }
        mix[mix.len() - 1].1
    }
}

/// What recording one simulated call put into the pipe.
#[derive(Default, Clone, Copy)]
struct Outcome {
    queued: u64,
    dropped: u64,
}

impl Outcome {
    fn add(&mut self, r: Recorded) {
        match r {
            Recorded::Queued => self.queued += 1,
            Recorded::Dropped => self.dropped += 1,
            Recorded::NotSampled => {}
        }
    }
}

/// One MCP call as the daemon's request path records it.
fn call(d: &Daemon, rng: &mut Rng, n: u64) -> Outcome {
    let mut out = Outcome::default();
    let (e, t) = (&d.emitter, d.emitter.totals());
    let correlation = CorrelationId::new(&format!("{:016x}{:016x}", rng.next(), n));
    let transport = rng.pick(&[(9, Transport::WebSocket), (1, Transport::Http)]);
    if n.is_multiple_of(50) {
        connection(d, rng, transport, &mut out);
    }
    let method = rng.pick(&[
        (70, McpMethod::ToolsCall),
        (10, McpMethod::ToolsList),
        (5, McpMethod::Initialize),
        (5, McpMethod::Initialized),
        (5, McpMethod::Ping),
        (2, McpMethod::LoggingSetLevel),
        (2, McpMethod::Cancelled),
        (1, McpMethod::Other),
    ]);
    let tool = match method {
        McpMethod::ToolsCall => rng.pick(&[
            (50, Tool::Version),
            (35, Tool::Chat),
            (8, Tool::ListModels),
            (5, Tool::Status),
            (2, Tool::Unknown),
        ]),
        _ => Tool::None,
    };
    let status = match tool {
        Tool::Unknown => RequestStatus::Error,
        _ => rng.pick(&[
            (95, RequestStatus::Success),
            (2, RequestStatus::Error),
            (2, RequestStatus::ToolError),
            (1, RequestStatus::Cancelled),
        ]),
    };
    let (bytes_in, bytes_out) = (200 + rng.below(1800) as u32, 300 + rng.below(20_000) as u32);
    if transport == Transport::WebSocket {
        t.ws_message(Direction::Inbound, bytes_in as usize);
        out.add(e.record(SampleClass::WsMessages, &correlation, || {
            EventKind::WsMessage {
                direction: Direction::Inbound,
                bytes: bytes_in,
            }
        }));
    }
    let mut duration_us = 300 + rng.below(1500);
    if tool == Tool::Chat {
        duration_us += chat(d, rng, &correlation, &mut out);
    }
    t.request(transport, method, tool, status);
    out.add(e.record(SampleClass::Requests, &correlation, || {
        EventKind::McpRequest {
            transport,
            method,
            tool,
            status,
            duration_us,
        }
    }));
    if transport == Transport::WebSocket && method != McpMethod::Initialized {
        t.ws_message(Direction::Outbound, bytes_out as usize);
        out.add(e.record(SampleClass::WsMessages, &correlation, || {
            EventKind::WsMessage {
                direction: Direction::Outbound,
                bytes: bytes_out,
            }
        }));
    }
    out
}

/// A chat: read the conversation, call a model, save it, upload to Supabase. Returns
/// how long it took, in microseconds.
fn chat(d: &Daemon, rng: &mut Rng, correlation: &CorrelationId, out: &mut Outcome) -> u64 {
    let (e, t) = (&d.emitter, d.emitter.totals());
    let read = rng.pick(&[
        (80, StorageResult::Hit),
        (18, StorageResult::Miss),
        (1, StorageResult::Error),
        (1, StorageResult::Timeout),
    ]);
    storage(d, rng, correlation, StorageOp::Get, read, out);
    let i = rng.below(MODELS.len() as u64) as usize;
    let (provider, model) = MODELS[i];
    let status = rng.pick(&[
        (92, CallStatus::Success),
        (2, CallStatus::RateLimited),
        (1, CallStatus::ServerError),
        (1, CallStatus::ClientError),
        (1, CallStatus::Timeout),
        (1, CallStatus::ConnectError),
        (1, CallStatus::BrokenStream),
        (1, CallStatus::Cancelled),
    ]);
    let latency_us = 200_000 + rng.below(30_000_000);
    let ttft_us = (status == CallStatus::Success).then(|| 50_000 + rng.below(3_000_000));
    let (input_tokens, output_tokens) = (100 + rng.below(4000) as u32, rng.below(2000) as u32);
    // Thinking models spend part of their output reasoning before the first answer token.
    let reasoning_tokens = output_tokens / 2;
    let cached_tokens = input_tokens / 4;
    t.provider_call(
        d.slots[i],
        status,
        TokenCounts {
            input: u64::from(input_tokens),
            output: u64::from(output_tokens),
            reasoning: u64::from(reasoning_tokens),
            cached: u64::from(cached_tokens),
        },
    );
    out.add(e.record(SampleClass::ProviderCalls, correlation, || {
        EventKind::ProviderCall(ProviderCall {
            provider,
            model: ModelName::new(model),
            status,
            latency_us,
            ttft_us,
            ttfa_us: ttft_us.map(|us| us + latency_us / 4),
            input_tokens,
            output_tokens,
            reasoning_tokens,
            cached_tokens,
            attempts: 1 + u8::from(status == CallStatus::RateLimited),
            bytes: output_tokens * 4,
        })
    }));
    if status == CallStatus::Success {
        let write = rng.pick(&[
            (98, StorageResult::Ok),
            (1, StorageResult::Error),
            (1, StorageResult::Timeout),
        ]);
        storage(d, rng, correlation, StorageOp::Set, write, out);
        for table in [SupabaseTable::Conversations, SupabaseTable::Messages] {
            supabase(d, rng, correlation, SupabaseOp::Upsert, table, out);
        }
    }
    if rng.below(200) == 0 {
        storage(
            d,
            rng,
            correlation,
            StorageOp::Delete,
            StorageResult::Ok,
            out,
        );
        supabase(
            d,
            rng,
            correlation,
            SupabaseOp::Select,
            SupabaseTable::Conversations,
            out,
        );
    }
    latency_us
}

fn storage(
    d: &Daemon,
    rng: &mut Rng,
    correlation: &CorrelationId,
    op: StorageOp,
    result: StorageResult,
    out: &mut Outcome,
) {
    let backend = d.backend;
    let latency_us = match (backend, result) {
        (_, StorageResult::Timeout) => 1_000_000,
        (StorageBackend::Memory, _) => 2 + rng.below(20),
        (_, _) => 80 + rng.below(900),
    };
    d.emitter.totals().storage(op, backend, result);
    let class = match op {
        StorageOp::Get => SampleClass::StorageReads,
        _ => SampleClass::StorageWrites,
    };
    out.add(d.emitter.record(class, correlation, || EventKind::Storage {
        op,
        backend,
        result,
        latency_us,
    }));
}

fn supabase(
    d: &Daemon,
    rng: &mut Rng,
    correlation: &CorrelationId,
    op: SupabaseOp,
    table: SupabaseTable,
    out: &mut Outcome,
) {
    let (result, http_status) = rng.pick(&[
        (97, (SupabaseResult::Ok, 201)),
        (2, (SupabaseResult::Retry, 503)),
        (1, (SupabaseResult::Rejected, 401)),
    ]);
    d.emitter.totals().supabase(op, table, result);
    let (latency_us, bytes) = (20_000 + rng.below(400_000), 600 + rng.below(4000) as u32);
    out.add(
        d.emitter
            .record(SampleClass::Supabase, correlation, || EventKind::Supabase {
                op,
                table,
                result,
                http_status,
                latency_us,
                bytes,
            }),
    );
}

/// A client connection's life: opened and closed, or now and then refused.
fn connection(d: &Daemon, rng: &mut Rng, transport: Transport, out: &mut Outcome) {
    let t = d.emitter.totals();
    let phases: &[(ConnectionPhase, RefusalReason)] = match rng.below(40) {
        0 => &[(
            ConnectionPhase::Refused,
            match rng.below(4) {
                0 => RefusalReason::Unauthorized,
                1 => RefusalReason::ForbiddenOrigin,
                2 => RefusalReason::TooManyConnections,
                _ => RefusalReason::BadRequest,
            },
        )],
        _ => &[
            (ConnectionPhase::Opened, RefusalReason::None),
            (ConnectionPhase::Closed, RefusalReason::None),
        ],
    };
    for (phase, reason) in phases.iter().copied() {
        t.connection(transport, phase, reason);
        out.add(d.emitter.record_uncorrelated(SampleClass::Connections, || {
            EventKind::Connection {
                transport,
                phase,
                reason,
            }
        }));
    }
}

/// Sets the gauges a heartbeat carries, as a busy daemon's would read.
fn gauges(d: &Daemon, rng: &mut Rng) {
    use std::sync::atomic::Ordering::Relaxed;
    let t = d.emitter.totals();
    t.open_connections.store(20 + rng.below(40) as i64, Relaxed);
    t.in_flight.store(rng.below(16) as i64, Relaxed);
    t.spool_depth.store(rng.below(5), Relaxed);
}

fn run(o: Options) -> Result<serde_json::Value, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let cancel = CancellationToken::new();
    // A quarter of a second of each daemon's share of the rate, so a writer that misses a
    // few ticks on a busy machine does not drop; at least 1,024 (many daemons add up).
    let queue = o
        .queue
        .unwrap_or_else(|| (o.rate as usize / o.daemons / 4).clamp(1024, 65_536));
    let mut daemons = Vec::with_capacity(o.daemons);
    let mut writers = Vec::with_capacity(o.daemons);
    for i in 0..o.daemons {
        let totals = Totals::new(&MODELS[..MODELS.len() - 1]);
        let slots = MODELS
            .iter()
            .map(|(p, m)| totals.model_slot(*p, m))
            .collect();
        let emitter = EventEmitter::new(SamplingPolicy::default(), queue, totals);
        emitter.announce_models(
            MODELS[..MODELS.len() - 1]
                .iter()
                .map(|(provider, name)| ModelEntry {
                    provider: *provider,
                    name: ModelName::new(name),
                })
                .collect(),
        );
        let mut config = WriterConfig::new(o.socket.clone());
        // Hundreds of writers each waking every 5 ms would cost this process a core.
        config.idle_tick =
            (config.idle_tick * (o.daemons as u32 / 8).max(1)).min(Duration::from_millis(100));
        writers.push(runtime.spawn(pipe_writer::run(
            emitter.clone(),
            DaemonIdentity::current(format!("load-{i}")),
            Arc::new(NoDependencies),
            config,
            cancel.child_token(),
        )));
        daemons.push(Daemon {
            emitter,
            slots,
            backend: match i % 5 {
                4 => StorageBackend::Memory,
                _ => StorageBackend::Redis,
            },
        });
    }
    let connect_by = Instant::now() + Duration::from_secs(10);
    while !daemons.iter().all(|d| d.emitter.stats().connected) {
        if Instant::now() > connect_by {
            let n = daemons
                .iter()
                .filter(|d| d.emitter.stats().connected)
                .count();
            cancel.cancel();
            return Err(format!(
                "only {n} of {} daemons connected to {} within 10 s",
                o.daemons,
                o.socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut total, mut calls) = (Outcome::default(), 0u64);
    let (mut interval, mut interval_start) = (Outcome::default(), Instant::now());
    let start = Instant::now();
    let end = start + o.duration;
    let mut next_report = start + o.report_every;
    let mut next_gauges = start;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_gauges {
            daemons.iter().for_each(|d| gauges(d, &mut rng));
            next_gauges = now + Duration::from_secs(1);
        }
        if now >= next_report {
            let secs = now.duration_since(interval_start).as_secs_f64();
            eprintln!(
                "exai-pipe-load: t={:.0}s events/s={:.0} dropped/s={:.0}",
                now.duration_since(start).as_secs_f64(),
                interval.queued as f64 / secs,
                interval.dropped as f64 / secs,
            );
            (interval, interval_start) = (Outcome::default(), now);
            next_report += o.report_every;
        }
        let due = (now.duration_since(start).as_secs_f64() * o.rate) as u64;
        if total.queued + total.dropped >= due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        // A burst of calls, then look at the clock again.
        for _ in 0..64 {
            // At random, not in turn: the sampling countdown is per thread, and a fixed
            // rotation would hand every sampled event of a class to the same daemons.
            let d = &daemons[rng.below(o.daemons as u64) as usize];
            let outcome = call(d, &mut rng, calls);
            calls += 1;
            for o in [&mut total, &mut interval] {
                o.queued += outcome.queued;
                o.dropped += outcome.dropped;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Give the writers a moment to ship what is queued, then stop them (they flush).
    std::thread::sleep(Duration::from_millis(300));
    cancel.cancel();
    runtime.block_on(async {
        for w in writers {
            let _ = w.await;
        }
    });
    let stats: Vec<_> = daemons.iter().map(|d| d.emitter.stats()).collect();
    let acked: u64 = stats.iter().map(|s| s.acked_seq).sum();
    let heartbeats: u64 = stats.iter().map(|s| s.heartbeats).sum();
    let dropped_writer: u64 = stats
        .iter()
        .map(|s| s.dropped.write_error + s.dropped.disconnected)
        .sum();
    Ok(serde_json::json!({
        "daemons": o.daemons,
        "seconds": elapsed,
        "target_events_per_s": o.rate,
        "events_queued": total.queued,
        "events_per_s": total.queued as f64 / elapsed,
        "simulated_calls_per_s": calls as f64 / elapsed,
        "dropped_queue_full": total.dropped,
        "dropped_by_writer": dropped_writer,
        "heartbeats": heartbeats,
        "acked_by_agent": acked,
    }))
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("exai-pipe-load: {e}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exai-pipe-load: {e}");
            ExitCode::FAILURE
        }
    }
}
