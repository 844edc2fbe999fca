//! The background task that empties the spool into Supabase.
//!
//! It reads a batch from the spool's cursor, upserts its conversations and then its
//! messages (a message row references its conversation), and only then moves the cursor.
//! A batch that fails is read again on the next try, so nothing leaves the spool before
//! Supabase took it.
//!
//! - No answer, a timeout, 408, 429, 5xx: retried with jittered exponential backoff,
//!   from [`BACKOFF_MIN`] up to [`BACKOFF_MAX`].
//! - 401/403 (the key is wrong) or another 4xx (rows or schema wrong): uploads pause and
//!   are tried again every `EXAI_SUPABASE_AUTH_RETRY_SECS` (60 s), one request each time,
//!   so a bad key is neither hammered nor forgotten; the records wait in the spool.

use super::postgrest::{Answer, Failure, PostgrestClient};
use super::record::TurnRecord;
use super::spool::{Batch, SpoolReader};
use super::UploadState;
use crate::EventEmitter;
use exai_proto::event::{EventKind, SupabaseOp};
use exai_proto::{SampleClass, SupabaseTable};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bytes read from the spool for one batch, besides the record count.
const BATCH_BYTES: usize = 4 << 20;
/// While uploads keep failing the same way, the warning is repeated at most this often.
const REPEAT_WARNING: Duration = Duration::from_secs(60);

pub struct Uploader {
    pub reader: SpoolReader,
    pub client: PostgrestClient,
    pub emitter: EventEmitter,
    pub state: Arc<UploadState>,
    pub batch_records: usize,
    pub pause_after_refusal: Duration,
}

/// How the latest attempt went, to log changes rather than every failure.
#[derive(Default)]
struct Trouble {
    failures: u32,
    warned_at: Option<Instant>,
}

impl Uploader {
    pub async fn run(self, cancel: CancellationToken) {
        let Uploader {
            reader,
            client,
            emitter,
            state,
            batch_records,
            pause_after_refusal,
        } = self;
        let spool = reader.spool().clone();
        let mut reader = Some(reader);
        let mut trouble = Trouble::default();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let mut r = reader.take().expect("reader is returned after each read");
            let (r, read) = tokio::task::spawn_blocking(move || {
                let batch = r.read(batch_records, BATCH_BYTES);
                (r, batch)
            })
            .await
            .expect("spool read does not panic");
            reader = Some(r);
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the Supabase spool; retrying in 1s");
                    sleep(Duration::from_secs(1), &cancel).await;
                    continue;
                }
            };
            emitter
                .totals()
                .spool_depth
                .store(spool.depth(), std::sync::atomic::Ordering::Relaxed);
            if batch.payloads.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = spool.appended() => {}
                    // A record appended between the read and this wait is picked up here.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let records = batch.payloads.len() as u64;
            match upload(&client, &emitter, &batch).await {
                Ok(()) => {
                    if trouble.failures > 0 {
                        tracing::info!(
                            failed_attempts = trouble.failures,
                            "Supabase uploads resumed"
                        );
                    }
                    trouble = Trouble::default();
                    state.resumed(records);
                    let mut r = reader.take().expect("reader present");
                    let end = batch.end;
                    let (r, committed) = tokio::task::spawn_blocking(move || {
                        let committed = r.commit(end, records);
                        (r, committed)
                    })
                    .await
                    .expect("spool commit does not panic");
                    reader = Some(r);
                    if let Err(e) = committed {
                        tracing::error!(error = %e, "cannot save the Supabase spool's cursor; these records may be sent again after a restart");
                    }
                    emitter
                        .totals()
                        .spool_depth
                        .store(spool.depth(), std::sync::atomic::Ordering::Relaxed);
                }
                Err(failure) => {
                    trouble.failures += 1;
                    let pause = match &failure {
                        Failure::Transient(_) => backoff(trouble.failures),
                        Failure::Auth(_) | Failure::Refused(_) => pause_after_refusal,
                    };
                    let waiting = spool.depth();
                    if trouble
                        .warned_at
                        .is_none_or(|at| at.elapsed() >= REPEAT_WARNING)
                    {
                        trouble.warned_at = Some(Instant::now());
                        warn(&failure, pause, waiting);
                    }
                    state.failed(&failure);
                    sleep(pause, &cancel).await;
                }
            }
        }
    }
}

fn warn(failure: &Failure, pause: Duration, waiting: u64) {
    match failure {
        Failure::Auth(why) => tracing::error!(
            records_waiting = waiting,
            retry_in_s = pause.as_secs(),
            "Supabase rejected the service role key ({why}); uploads paused, records kept in the spool. Check SUPABASE_SERVICE_ROLE_KEY"
        ),
        Failure::Refused(why) => tracing::error!(
            records_waiting = waiting,
            retry_in_s = pause.as_secs(),
            "Supabase refused the rows ({why}); uploads paused, records kept in the spool. Check the schema (compose/supabase/schema.sql)"
        ),
        Failure::Transient(why) => tracing::warn!(
            records_waiting = waiting,
            "Supabase upload failed ({why}); retrying with backoff, records kept in the spool"
        ),
    }
}

/// Conversations first (deduplicated: one statement may not upsert a row twice), then
/// messages.
async fn upload(
    client: &PostgrestClient,
    emitter: &EventEmitter,
    batch: &Batch,
) -> Result<(), Failure> {
    let mut records = Vec::with_capacity(batch.payloads.len());
    for payload in &batch.payloads {
        match serde_json::from_slice::<TurnRecord>(payload) {
            Ok(record) => records.push(record),
            Err(e) => {
                tracing::warn!(error = %e, "spool: skipping a record that is not a chat turn")
            }
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    let mut latest: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        latest.insert(&r.conversation_id, i);
    }
    let mut order: Vec<usize> = latest.into_values().collect();
    order.sort_unstable();
    let conversations: Vec<_> = order.iter().map(|&i| records[i].conversation()).collect();
    let messages: Vec<_> = records.iter().flat_map(|r| r.messages()).collect();
    for (table, body) in [
        (
            SupabaseTable::Conversations,
            serde_json::to_vec(&conversations),
        ),
        (SupabaseTable::Messages, serde_json::to_vec(&messages)),
    ] {
        let body = body.map_err(|e| Failure::Refused(format!("cannot encode rows: {e}")))?;
        let answer = client.upsert(table, body).await;
        record(emitter, table, &answer);
        if let Some(failure) = answer.failure {
            return Err(failure);
        }
    }
    Ok(())
}

fn record(emitter: &EventEmitter, table: SupabaseTable, answer: &Answer) {
    emitter
        .totals()
        .supabase(SupabaseOp::Upsert, table, answer.result);
    emitter.record_uncorrelated(SampleClass::Supabase, || EventKind::Supabase {
        op: SupabaseOp::Upsert,
        table,
        result: answer.result,
        http_status: answer.status,
        latency_us: answer.latency.as_micros().min(u64::MAX as u128) as u64,
        bytes: answer.bytes.min(u32::MAX as usize) as u32,
    });
}

/// Full jitter over the upper half: `d/2 + rand(0..d/2)`, with `d` doubling from
/// [`BACKOFF_MIN`] up to [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    let d = BACKOFF_MIN
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

async fn sleep(pause: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(pause) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_bounded() {
        for failures in 1..40 {
            let d = backoff(failures);
            let ceiling = BACKOFF_MIN
                .saturating_mul(1 << (failures - 1).min(16))
                .min(BACKOFF_MAX);
            assert!(d >= ceiling / 2 && d <= ceiling, "{failures}: {d:?}");
        }
        assert!(backoff(1) <= BACKOFF_MIN);
        assert!(backoff(30) >= BACKOFF_MAX / 2);
    }
}
