//! What spooling a chat turn for Supabase costs the request path: encoding its rows and
//! one `write` to the spool (no fsync; the writer thread syncs once a second). The
//! request path hands the record to that thread and waits for this write.
//! Run: cargo bench -p exai-daemon --bench spool

use criterion::{criterion_group, criterion_main, Criterion};
use exai_daemon::supabase::frame::HEADER;
use exai_daemon::supabase::record::TurnRecord;
use exai_daemon::supabase::spool::Spool;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary spool directory");
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 30).expect("open the spool");
    let user = "Explain how a write-ahead log makes a crash safe, briefly. ".repeat(3);
    let assistant = "A write-ahead log records each change before it is applied, so after a crash the log is replayed. ".repeat(4);
    let record = TurnRecord {
        conversation_id: "0b7e4f2c-8a51-4c1e-9b0e-3d2f6a7c9e10",
        model: "glm-4.5-flash",
        user_message_id: "5d0c6f8e-2b1a-4f3c-8e7d-9a0b1c2d3e4f",
        assistant_message_id: "7e1d2c3b-4a5f-4e6d-8c7b-0a1b2c3d4e5f",
        user: &user,
        assistant: &assistant,
        input_tokens: 42,
        output_tokens: 96,
        correlation_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        at_unix_ms: 1_764_000_000_000,
    };
    c.bench_function("spool/encode_turn", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(HEADER + 1024);
            buf.resize(HEADER, 0);
            black_box(&record).encode(&mut buf).expect("encode");
            buf
        })
    });
    c.bench_function("spool/append_turn", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // In chunks, emptied between them untimed, so the spool stays small.
                let chunk = left.min(50_000);
                let started = Instant::now();
                for _ in 0..chunk {
                    let mut buf = Vec::with_capacity(HEADER + 1024);
                    buf.resize(HEADER, 0);
                    black_box(&record).encode(&mut buf).expect("encode");
                    spool.append(&mut buf).expect("append");
                }
                elapsed += started.elapsed();
                left -= chunk;
                loop {
                    let batch = reader.read(10_000, usize::MAX).expect("read");
                    if batch.payloads.is_empty() {
                        break;
                    }
                    let n = batch.payloads.len() as u64;
                    reader.commit(batch.end, n).expect("commit");
                }
            }
            elapsed
        })
    });
}

criterion_group!(benches, append);
criterion_main!(benches);
