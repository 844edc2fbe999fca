//! What a Prometheus scrape of `/metrics` costs the agent at 10,000 series: every family
//! writing its series as text, as the metrics handler does it.
//!
//! The registry is filled the way the listener fills it: each daemon says Hello (its
//! catalogue, pipe counters and info series), then sends a heartbeat whose running totals
//! cover the whole label vocabulary and a batch of sampled events that gives every
//! histogram its series. Every series carries its daemon's label, so daemons are added
//! until the text holds 10,000 series.
//! Run: cargo bench -p exai-agent --bench render

use criterion::{criterion_group, criterion_main, Criterion};
use exai_agent::daemons::{Daemons, DaemonsConfig};
use exai_agent::metrics::{Families, Registry};
use exai_proto::heartbeat::{
    ConnectionTotal, ProviderTotal, RequestTotal, StorageTotal, SupabaseTotal, WsTotal,
};
use exai_proto::{
    Batch, CallStatus, ConnectionPhase, Direction, DropCounts, Event, EventKind, Heartbeat, Hello,
    McpMethod, ModelEntry, ModelName, PipeStats, ProcessStats, Provider, ProviderCall,
    RefusalReason, RequestStatus, StorageBackend, StorageOp, StorageResult, SupabaseOp,
    SupabaseResult, SupabaseTable, Tool, Totals, Transport, Unknown,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// Series the fleet must reach.
const SERIES: usize = 10_000;

/// The models a daemon announces, and two it does not (they fold into `other`).
const CATALOGUE: &[(Provider, &str)] = &[
    (Provider::Kimi, "kimi-k2.6"),
    (Provider::Kimi, "kimi-k2.5"),
    (Provider::Kimi, "moonshot-v1-8k"),
    (Provider::Kimi, "moonshot-v1-32k"),
    (Provider::Kimi, "moonshot-v1-128k"),
    (Provider::Glm, "glm-5"),
    (Provider::Glm, "glm-4.7"),
    (Provider::Glm, "glm-4.6"),
    (Provider::Glm, "glm-4.5-air"),
    (Provider::Glm, "glm-4.5-flash"),
];

fn models() -> Vec<(Provider, &'static str)> {
    CATALOGUE
        .iter()
        .copied()
        .chain([
            (Provider::Kimi, "a-model-the-agent-does-not-know"),
            (Provider::Glm, "glm-6-preview"),
        ])
        .collect()
}

fn event(weight: u32, kind: EventKind) -> Event {
    Event {
        at_unix_us: 1_764_000_000_000_000,
        correlation: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        weight,
        kind,
    }
}

/// Running totals over the whole vocabulary a daemon can report, scaled by `n`.
fn totals(n: u64) -> Totals {
    let mut t = Totals::default();
    for direction in Direction::ALL {
        t.ws_messages.push(WsTotal {
            direction: *direction,
            messages: 40 * n,
            bytes: 40_000 * n,
        });
    }
    for transport in Transport::ALL {
        for method in McpMethod::ALL {
            let tools: &[Tool] = match method {
                McpMethod::ToolsCall => &Tool::ALL[1..],
                _ => &[Tool::None],
            };
            for tool in tools {
                for status in RequestStatus::ALL {
                    t.requests.push(RequestTotal {
                        transport: *transport,
                        method: *method,
                        tool: *tool,
                        status: *status,
                        count: 3 * n,
                    });
                }
            }
        }
    }
    for (provider, model) in models() {
        for status in CallStatus::ALL {
            t.provider_calls.push(ProviderTotal {
                provider,
                model: ModelName::new(model),
                status: *status,
                calls: n,
                input_tokens: 250 * n,
                output_tokens: 600 * n,
                reasoning_tokens: 300 * n,
                cached_tokens: 50 * n,
            });
        }
    }
    for op in StorageOp::ALL {
        let results: &[StorageResult] = match op {
            StorageOp::Get => &[
                StorageResult::Hit,
                StorageResult::Miss,
                StorageResult::Error,
                StorageResult::Timeout,
            ],
            _ => &[
                StorageResult::Ok,
                StorageResult::Error,
                StorageResult::Timeout,
            ],
        };
        for backend in StorageBackend::ALL {
            for result in results {
                t.storage.push(StorageTotal {
                    op: *op,
                    backend: *backend,
                    result: *result,
                    count: 2 * n,
                });
            }
        }
    }
    for op in SupabaseOp::ALL {
        for table in SupabaseTable::ALL {
            for result in SupabaseResult::ALL {
                t.supabase.push(SupabaseTotal {
                    op: *op,
                    table: *table,
                    result: *result,
                    count: n,
                });
            }
        }
    }
    for transport in Transport::ALL {
        let mut phases = vec![
            (ConnectionPhase::Opened, RefusalReason::None),
            (ConnectionPhase::Closed, RefusalReason::None),
        ];
        phases.extend(
            RefusalReason::ALL[1..]
                .iter()
                .map(|r| (ConnectionPhase::Refused, *r)),
        );
        for (phase, reason) in phases {
            t.connections.push(ConnectionTotal {
                transport: *transport,
                phase,
                reason,
                count: n,
            });
        }
    }
    t
}

fn heartbeat(i: usize, n: u64) -> Event {
    event(
        1,
        EventKind::Heartbeat(Box::new(Heartbeat {
            uptime_ms: n * 1000,
            process: ProcessStats {
                rss_bytes: 17_000_000 + i as u64 * 4096,
                cpu_percent: 12.5,
            },
            connections: 30,
            in_flight: 4,
            pipe: PipeStats {
                queue_depth: 12,
                queue_capacity: 65_536,
                accepted: 1000 * n,
                dropped: DropCounts {
                    queue_full: n,
                    write_error: 1,
                    disconnected: 2,
                },
            },
            totals: totals(n),
            storage: exai_proto::StorageView {
                backend: StorageBackend::Redis,
                reachable: true,
                ..Default::default()
            },
            supabase: exai_proto::SupabaseView {
                enabled: true,
                spool_depth: 3,
                ..Default::default()
            },
        })),
    )
}

/// Sampled events touching every histogram label set, at spread-out values.
fn sampled(i: usize) -> Vec<Event> {
    let spread = |k: usize, top_us: u64| (((i + k) * 7919) as u64 % top_us) + 50;
    let mut out = Vec::new();
    for (k, (transport, method)) in Transport::ALL
        .iter()
        .flat_map(|t| McpMethod::ALL.iter().map(move |m| (*t, *m)))
        .enumerate()
    {
        out.push(event(
            10,
            EventKind::McpRequest {
                transport,
                method,
                tool: Tool::None,
                status: RequestStatus::Success,
                duration_us: spread(k, 2_000_000),
            },
        ));
    }
    for (k, (provider, model)) in models().into_iter().enumerate() {
        out.push(event(
            1,
            EventKind::ProviderCall(ProviderCall {
                provider,
                model: ModelName::new(model),
                status: CallStatus::Success,
                latency_us: spread(k, 60_000_000),
                ttft_us: Some(spread(k, 5_000_000)),
                ttfa_us: Some(spread(k, 30_000_000)),
                input_tokens: 250,
                output_tokens: 600,
                reasoning_tokens: 300,
                cached_tokens: 50,
                attempts: 1,
                bytes: 4096,
            }),
        ));
    }
    for (k, (op, backend)) in StorageOp::ALL
        .iter()
        .flat_map(|o| StorageBackend::ALL.iter().map(move |b| (*o, *b)))
        .enumerate()
    {
        out.push(event(
            5,
            EventKind::Storage {
                op,
                backend,
                result: StorageResult::Ok,
                latency_us: spread(k, 5_000),
            },
        ));
    }
    for (k, (op, table)) in SupabaseOp::ALL
        .iter()
        .flat_map(|o| SupabaseTable::ALL.iter().map(move |t| (*o, *t)))
        .enumerate()
    {
        out.push(event(
            1,
            EventKind::Supabase {
                op,
                table,
                result: SupabaseResult::Ok,
                http_status: 201,
                latency_us: spread(k, 500_000),
                bytes: 900,
            },
        ));
    }
    out
}

/// A random-looking v4 UUID, as daemons name themselves, the same on every run.
fn uuid_like(i: u64) -> String {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(2 * i), mix(2 * i + 1));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// A registry as a long-running agent serving a fleet would hold it: daemons added until
/// there are [`SERIES`] series. Their sessions are returned: dropping them would mark the
/// daemons gone and remove their live gauges.
fn fleet() -> (Registry, usize, Vec<exai_agent::daemons::Session>) {
    let registry = Registry::new();
    let families = Arc::new(Families::new(&registry));
    families.agent_process(21_000_000, 3.0);
    families.disk.with_label_values(&["/"]).set(41.0);
    for reason in ["bad_payload", "no_hello"] {
        families.frame_rejected(reason);
    }
    let daemons = Arc::new(Daemons::new(
        families,
        DaemonsConfig {
            ttl: Duration::from_secs(600),
            max_daemons: 1000,
            max_models: 64,
        },
    ));
    let catalogue: Vec<ModelEntry> = CATALOGUE
        .iter()
        .map(|(provider, name)| ModelEntry {
            provider: *provider,
            name: ModelName::new(name),
        })
        .collect();
    let mut sessions = Vec::new();
    while series(&registry) < SERIES {
        let i = sessions.len();
        let hello = Hello {
            instance_id: uuid_like(i as u64).as_str().into(),
            name: format!("exai-{i}.internal:8079").as_str().into(),
            pid: 1000 + i as u32,
            version: "0.1.0".into(),
            started_at_unix_ms: 1_764_000_000_000,
            models: catalogue.clone(),
            ..Hello::default()
        };
        let session = daemons.connect(&hello, Unknown::default()).unwrap();
        let mut seq = 0;
        for n in 1..=2 {
            let mut events = sampled(i);
            events.push(heartbeat(i, n));
            let len = events.len() as u64;
            seq = session
                .batch(&Batch {
                    first_seq: seq,
                    events,
                    len,
                    unknown: Unknown::default(),
                })
                .unwrap();
        }
        sessions.push(session);
    }
    let n = sessions.len();
    (registry, n, sessions)
}

fn series(registry: &Registry) -> usize {
    String::from_utf8(render(registry))
        .expect("utf-8")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// What the `/metrics` handler does.
fn render(registry: &Registry) -> Vec<u8> {
    registry.render()
}

fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn scrape(c: &mut Criterion) {
    let (registry, daemons, _sessions) = fleet();
    let text = String::from_utf8(render(&registry)).expect("utf-8");
    let samples = || {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    };
    let series = samples().count();
    let per_daemon = samples().filter(|l| l.contains("daemon=\"exai-")).count();
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    println!(
        "render: {series} series (sample lines) in {families} families, {per_daemon} of them \
         labelled by one of {daemons} daemons, {} KiB of text",
        text.len() / 1024
    );
    assert!(series >= SERIES, "only {series} series");

    let mut group = c.benchmark_group("metrics");
    group.sample_size(50);
    group.bench_function("render_10k_series", |b| {
        b.iter(|| black_box(render(&registry)))
    });
    // The same, timed in this thread's CPU time: on a shared machine, wall time also
    // counts the time other processes held the core.
    group.bench_function("render_10k_series_cpu_time", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu_time();
            for _ in 0..iters {
                black_box(render(&registry));
            }
            thread_cpu_time() - start
        })
    });
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
