//! Every event round-trips through the codec, and the decoder answers hostile input with
//! errors, never a panic.

use exai_proto::event::*;
use exai_proto::frame::Batch;
use exai_proto::frame::{self, DaemonFrame, MAX_FRAME_LEN};
use exai_proto::heartbeat::*;
use exai_proto::{
    Hello, InlineStr, ModelEntry, ProviderCall, SampleClass, SamplingPolicy, StreamDecoder, Unknown,
};
use proptest::prelude::*;
use proptest::sample::select;

fn inline<const N: usize>() -> impl Strategy<Value = InlineStr<N>> {
    "\\PC{0,70}".prop_map(|s| InlineStr::<N>::new(&s))
}

fn label<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    select(all)
}

fn totals() -> impl Strategy<Value = Totals> {
    let ws = (label(Direction::ALL), any::<u64>(), any::<u64>()).prop_map(
        |(direction, messages, bytes)| WsTotal {
            direction,
            messages,
            bytes,
        },
    );
    let request = (
        label(Transport::ALL),
        label(McpMethod::ALL),
        label(Tool::ALL),
        label(RequestStatus::ALL),
        any::<u64>(),
    )
        .prop_map(|(transport, method, tool, status, count)| RequestTotal {
            transport,
            method,
            tool,
            status,
            count,
        });
    let provider = (
        label(Provider::ALL),
        inline(),
        label(CallStatus::ALL),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                provider,
                model,
                status,
                calls,
                input_tokens,
                output_tokens,
                (reasoning_tokens, cached_tokens),
            )| ProviderTotal {
                provider,
                model,
                status,
                calls,
                input_tokens,
                output_tokens,
                reasoning_tokens,
                cached_tokens,
            },
        );
    let storage = (
        label(StorageOp::ALL),
        label(StorageBackend::ALL),
        label(StorageResult::ALL),
        any::<u64>(),
    )
        .prop_map(|(op, backend, result, count)| StorageTotal {
            op,
            backend,
            result,
            count,
        });
    let supabase = (
        label(SupabaseOp::ALL),
        label(SupabaseTable::ALL),
        label(SupabaseResult::ALL),
        any::<u64>(),
    )
        .prop_map(|(op, table, result, count)| SupabaseTotal {
            op,
            table,
            result,
            count,
        });
    let connection = (
        label(Transport::ALL),
        label(ConnectionPhase::ALL),
        label(RefusalReason::ALL),
        any::<u64>(),
    )
        .prop_map(|(transport, phase, reason, count)| ConnectionTotal {
            transport,
            phase,
            reason,
            count,
        });
    (
        prop::collection::vec(ws, 0..3),
        prop::collection::vec(request, 0..6),
        prop::collection::vec(provider, 0..6),
        prop::collection::vec(storage, 0..4),
        prop::collection::vec(supabase, 0..4),
        prop::collection::vec(connection, 0..4),
    )
        .prop_map(
            |(ws_messages, requests, provider_calls, storage, supabase, connections)| Totals {
                ws_messages,
                requests,
                provider_calls,
                storage,
                supabase,
                connections,
            },
        )
}

fn storage_view() -> impl Strategy<Value = StorageView> {
    (
        label(StorageBackend::ALL),
        any::<bool>(),
        label(StorageErrorKind::ALL),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(backend, reachable, last_error, latency_us, checked_ms_ago)| StorageView {
                backend,
                reachable,
                last_error,
                latency_us,
                checked_ms_ago,
            },
        )
}

fn supabase_view() -> impl Strategy<Value = SupabaseView> {
    (
        any::<bool>(),
        prop::option::of(label(SupabaseResult::ALL)),
        any::<u16>(),
        any::<u64>(),
        prop::array::uniform6(any::<u64>()),
    )
        .prop_map(
            |(enabled, last_upload, last_http_status, last_upload_ms_ago, n)| SupabaseView {
                enabled,
                last_upload,
                last_http_status,
                last_upload_ms_ago,
                spool_depth: n[0],
                spool_bytes: n[1],
                refused_turns: n[2],
                write_timeouts: n[3],
                dead_letters: n[4],
                damaged_records: n[5],
            },
        )
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        any::<u64>(),
        (any::<u64>(), 0f32..6400.0),
        any::<u32>(),
        any::<u32>(),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        totals(),
        storage_view(),
        supabase_view(),
    )
        .prop_map(
            |(
                uptime_ms,
                (rss_bytes, cpu_percent),
                connections,
                in_flight,
                pipe,
                totals,
                storage,
                supabase,
            )| {
                let (queue_depth, queue_capacity, accepted, queue_full, write_error, disconnected) =
                    pipe;
                Heartbeat {
                    uptime_ms,
                    process: ProcessStats {
                        rss_bytes,
                        cpu_percent,
                    },
                    connections,
                    in_flight,
                    pipe: PipeStats {
                        queue_depth,
                        queue_capacity,
                        accepted,
                        dropped: DropCounts {
                            queue_full,
                            write_error,
                            disconnected,
                        },
                    },
                    totals,
                    storage,
                    supabase,
                }
            },
        )
}

fn models() -> impl Strategy<Value = Vec<ModelEntry>> {
    prop::collection::vec(
        (label(Provider::ALL), inline()).prop_map(|(provider, name)| ModelEntry { provider, name }),
        0..5,
    )
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (label(Direction::ALL), any::<u32>())
            .prop_map(|(direction, bytes)| EventKind::WsMessage { direction, bytes }),
        (
            label(Transport::ALL),
            label(McpMethod::ALL),
            label(Tool::ALL),
            label(RequestStatus::ALL),
            any::<u64>()
        )
            .prop_map(|(transport, method, tool, status, duration_us)| {
                EventKind::McpRequest {
                    transport,
                    method,
                    tool,
                    status,
                    duration_us,
                }
            }),
        (
            label(Provider::ALL),
            inline(),
            label(CallStatus::ALL),
            any::<u64>(),
            (any::<Option<u64>>(), any::<Option<u64>>()),
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
            (any::<u8>(), any::<u32>()),
        )
            .prop_map(
                |(
                    provider,
                    model,
                    status,
                    latency_us,
                    (ttft_us, ttfa_us),
                    (input_tokens, output_tokens, reasoning_tokens, cached_tokens),
                    (attempts, bytes),
                )| {
                    EventKind::ProviderCall(ProviderCall {
                        provider,
                        model,
                        status,
                        latency_us,
                        ttft_us,
                        ttfa_us,
                        input_tokens,
                        output_tokens,
                        reasoning_tokens,
                        cached_tokens,
                        attempts,
                        bytes,
                    })
                }
            ),
        (
            label(StorageOp::ALL),
            label(StorageBackend::ALL),
            label(StorageResult::ALL),
            any::<u64>()
        )
            .prop_map(|(op, backend, result, latency_us)| EventKind::Storage {
                op,
                backend,
                result,
                latency_us
            }),
        (
            label(SupabaseOp::ALL),
            label(SupabaseTable::ALL),
            label(SupabaseResult::ALL),
            any::<u16>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(op, table, result, http_status, latency_us, bytes)| {
                EventKind::Supabase {
                    op,
                    table,
                    result,
                    http_status,
                    latency_us,
                    bytes,
                }
            }),
        (
            label(Transport::ALL),
            label(ConnectionPhase::ALL),
            label(RefusalReason::ALL)
        )
            .prop_map(|(transport, phase, reason)| EventKind::Connection {
                transport,
                phase,
                reason
            }),
        heartbeat().prop_map(|h| EventKind::Heartbeat(Box::new(h))),
        models().prop_map(|models| EventKind::Catalogue { models }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (any::<u64>(), inline(), any::<u32>(), kind()).prop_map(
        |(at_unix_us, correlation, weight, kind)| Event {
            at_unix_us,
            correlation,
            weight,
            kind,
        },
    )
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        (inline(), inline()),
        any::<u32>(),
        inline(),
        any::<u64>(),
        prop::array::uniform7(any::<u32>()),
        (any::<u64>(), any::<u64>()),
        models(),
    )
        .prop_map(
            |(
                (instance_id, name),
                pid,
                version,
                started_at_unix_ms,
                rates,
                (next_seq, acked_seq),
                models,
            )| {
                let sampling = SampleClass::ALL
                    .iter()
                    .zip(rates)
                    .fold(SamplingPolicy::default(), |p, (class, rate)| {
                        p.with_rate(*class, rate)
                    });
                Hello {
                    instance_id,
                    name,
                    pid,
                    version,
                    started_at_unix_ms,
                    sampling,
                    next_seq,
                    acked_seq,
                    models,
                }
            },
        )
}

fn decode_all(wire: &[u8]) -> Result<Vec<DaemonFrame>, exai_proto::FrameError> {
    let mut decoder = StreamDecoder::new();
    decoder.feed(wire);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        frames.push(frame);
    }
    Ok(frames)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_event_round_trips(hello in hello(), first_seq in any::<u64>(), events in prop::collection::vec(event(), 0..20)) {
        let mut wire = Vec::new();
        frame::encode_hello(&hello, &mut wire);
        frame::encode_batch(first_seq, &events, &mut wire).unwrap();
        let frames = decode_all(&wire).unwrap();
        let len = events.len() as u64;
        prop_assert_eq!(frames, vec![
            DaemonFrame::Hello { hello, unknown: Unknown::default() },
            DaemonFrame::Batch(Batch { first_seq, events, len, unknown: Unknown::default() }),
        ]);
    }

    #[test]
    fn truncated_streams_never_yield_a_wrong_frame(events in prop::collection::vec(event(), 1..8), cut in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        frame::encode_hello(&hello_fixed(), &mut wire);
        frame::encode_batch(0, &events, &mut wire).unwrap();
        let cut = cut.index(wire.len());
        let frames = decode_all(&wire[..cut]).unwrap();
        // A cut stream yields a prefix of the frames, never a partial or altered one.
        prop_assert!(frames.len() <= 2);
        if frames.len() == 2 {
            let len = events.len() as u64;
            prop_assert_eq!(&frames[1], &DaemonFrame::Batch(Batch { first_seq: 0, events, len, unknown: Unknown::default() }));
        }
    }
}

fn hello_fixed() -> Hello {
    Hello {
        instance_id: "i".into(),
        name: "n".into(),
        pid: 1,
        version: "v".into(),
        started_at_unix_ms: 0,
        sampling: SamplingPolicy::default(),
        next_seq: 0,
        acked_seq: 0,
        models: vec![],
    }
}

/// A small deterministic generator, so the 100,000 inputs are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hostile_inputs_get_errors_not_panics() {
    let mut valid = Vec::new();
    frame::encode_hello(&hello_fixed(), &mut valid);
    let hello_len = valid.len();
    let events: Vec<Event> = (0..50)
        .map(|i| Event {
            at_unix_us: i,
            correlation: "corr".into(),
            weight: 1,
            kind: EventKind::ProviderCall(ProviderCall {
                provider: Provider::Glm,
                model: "glm-4.5-flash".into(),
                status: CallStatus::Success,
                latency_us: i * 1000,
                ttft_us: Some(i),
                ttfa_us: Some(i + 1),
                input_tokens: 3,
                output_tokens: 4,
                reasoning_tokens: 1,
                cached_tokens: 2,
                attempts: 1,
                bytes: 100,
            }),
        })
        .collect();
    frame::encode_batch(0, &events, &mut valid).unwrap();

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut errors, mut clean) = (0u32, 0u32);
    for round in 0..120_000u32 {
        let mut input = match round % 4 {
            // Pure noise.
            0 => (0..rng.next() % 512)
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>(),
            // A valid stream, truncated.
            1 => valid[..(rng.next() as usize % valid.len())].to_vec(),
            // A valid stream with bytes flipped after the Hello.
            2 => {
                let mut v = valid.clone();
                for _ in 0..1 + rng.next() % 8 {
                    let at = hello_len + rng.next() as usize % (v.len() - hello_len);
                    v[at] = rng.next() as u8;
                }
                v
            }
            // A valid Hello followed by a frame whose length field lies.
            _ => {
                let mut v = valid[..hello_len].to_vec();
                let claimed = match rng.next() % 3 {
                    0 => u32::MAX,
                    1 => MAX_FRAME_LEN as u32 + 1 + (rng.next() % 1000) as u32,
                    _ => (rng.next() % 64) as u32,
                };
                v.extend_from_slice(&claimed.to_le_bytes());
                v.extend((0..rng.next() % 64).map(|_| rng.next() as u8));
                v
            }
        };
        input.truncate(1 << 16);
        match decode_all(&input) {
            Ok(_) => clean += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                errors += 1;
            }
        }
    }
    // Both outcomes occur: the inputs really exercise the error paths.
    assert!(errors > 10_000, "only {errors} inputs were rejected");
    assert!(
        clean > 10_000,
        "only {clean} inputs decoded cleanly (truncations)"
    );
}
