//! The background task that empties the spool into Supabase.
//!
//! It reads a batch from the spool's cursor, upserts its conversations and then its
//! messages (a message row references its conversation), and only then moves the cursor.
//! A batch that fails is read again on the next try, so nothing leaves the spool before
//! Supabase took it.
//!
//! - No answer, a timeout, 408, 429, 5xx: retried with jittered exponential backoff,
//!   from [`BACKOFF_MIN`] up to [`BACKOFF_MAX`].
//! - 401/403 (the key is wrong) or a 4xx that says the schema is wrong: uploads pause and
//!   are tried again every `EXAI_SUPABASE_AUTH_RETRY_SECS` (60 s), one request each time,
//!   so a bad key is neither hammered nor forgotten; the records wait in the spool.
//! - A 4xx about the rows' data (a value Postgres cannot store, a constraint): the batch
//!   is split in halves, and halves again, until the records Supabase refuses are found;
//!   they are set aside in the dead-letter file ([`super::dead_letter`]) with a log line
//!   and a count, and the rest are uploaded. One bad record never stops the ones after it.

use super::dead_letter::{DeadLetters, Refused};
use super::postgrest::{Answer, Failure, PostgrestClient};
use super::record;
use super::spool::SpoolReader;
use super::UploadState;
use crate::EventEmitter;
use exai_process::throttle::Throttle;
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
/// After a batch that was not full, how long records are left to gather before the next
/// read: a busy daemon then sends a few large requests a second instead of one per turn,
/// which is what keeps uploading off the chat's CPU budget. Records wait on disk meanwhile.
pub const LINGER: Duration = Duration::from_millis(200);

pub struct Uploader {
    pub reader: SpoolReader,
    pub client: PostgrestClient,
    pub emitter: EventEmitter,
    pub state: Arc<UploadState>,
    pub dead_letters: Arc<DeadLetters>,
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
            dead_letters,
            batch_records,
            pause_after_refusal,
        } = self;
        let spool = reader.spool().clone();
        let mut reader = Some(reader);
        let mut trouble = Trouble::default();
        // Disk errors are logged apart from upload failures, at most once a minute.
        let mut disk_failures = Throttle::new(REPEAT_WARNING);
        let mut linger = false;
        loop {
            if linger {
                sleep(LINGER, &cancel).await;
            }
            if cancel.is_cancelled() {
                return;
            }
            let Some(read) =
                off_workers(&mut reader, move |r| r.read(batch_records, BATCH_BYTES)).await
            else {
                return;
            };
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    if let Some(failures) = disk_failures.due() {
                        tracing::error!(error = %e, failures, "cannot read the Supabase spool; retrying every second");
                    }
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
                linger = true;
                continue;
            }
            linger = batch.payloads.len() < batch_records;
            let records = batch.payloads.len() as u64;
            match upload_isolating(&client, &emitter, &state, &batch.payloads).await {
                Ok(refused) => {
                    if !refused.is_empty() {
                        let dead = dead_letters.clone();
                        let set_aside = set_aside(dead, &batch.payloads, refused);
                        match tokio::task::spawn_blocking(set_aside).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                // Not committed: the batch is read, sent and split again.
                                tracing::error!(error = %e, "cannot set aside the records Supabase refused; retrying every second");
                                sleep(Duration::from_secs(1), &cancel).await;
                                continue;
                            }
                            Err(_) => return,
                        }
                    }
                    if trouble.failures > 0 {
                        tracing::info!(
                            failed_attempts = trouble.failures,
                            "Supabase uploads resumed"
                        );
                    }
                    trouble = Trouble::default();
                    state.resumed(records);
                    let end = batch.end;
                    let Some(committed) =
                        off_workers(&mut reader, move |r| r.commit(end, records)).await
                    else {
                        return;
                    };
                    if let Err(e) = committed {
                        if let Some(failures) = disk_failures.due() {
                            tracing::error!(error = %e, failures, "cannot save the Supabase spool's cursor or delete uploaded segments; records uploaded since may be sent again after a restart");
                        }
                    }
                    emitter
                        .totals()
                        .spool_depth
                        .store(spool.depth(), std::sync::atomic::Ordering::Relaxed);
                }
                Err(failure) => {
                    // The pause below is long enough for records to gather.
                    linger = false;
                    trouble.failures += 1;
                    let pause = match &failure {
                        Failure::Transient { .. } => backoff(trouble.failures),
                        Failure::Auth(_) | Failure::Refused(_) | Failure::RowsRefused(_) => {
                            pause_after_refusal
                        }
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

/// Runs `work` on the reader in the blocking pool (it reads and writes files) and puts
/// the reader back. `None` only when the task could not finish (it panicked, or the
/// runtime is shutting down): the uploader then stops, the records stay in the spool.
async fn off_workers<T: Send + 'static>(
    slot: &mut Option<SpoolReader>,
    work: impl FnOnce(&mut SpoolReader) -> T + Send + 'static,
) -> Option<T> {
    let mut reader = slot.take()?;
    match tokio::task::spawn_blocking(move || {
        let out = work(&mut reader);
        (reader, out)
    })
    .await
    {
        Ok((reader, out)) => {
            *slot = Some(reader);
            Some(out)
        }
        Err(e) => {
            tracing::error!(error = %e, "Supabase spool task failed; uploads stop until a restart, records stay in the spool");
            None
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
        Failure::Refused(why) | Failure::RowsRefused(why) => tracing::error!(
            records_waiting = waiting,
            retry_in_s = pause.as_secs(),
            "Supabase refused the rows ({why}); uploads paused, records kept in the spool. Check the schema (compose/supabase/schema.sql)"
        ),
        Failure::Transient { why, .. } => tracing::warn!(
            records_waiting = waiting,
            "Supabase upload failed ({why}); retrying with backoff, records kept in the spool"
        ),
    }
}

/// Uploads `payloads`. When Supabase refuses their data, halves are tried, and halves of
/// those, until the single records it refuses are found: their indexes come back with
/// the refusal, everything else is uploaded. About 2·log2(n) requests per bad record.
async fn upload_isolating(
    client: &PostgrestClient,
    emitter: &EventEmitter,
    state: &UploadState,
    payloads: &[Vec<u8>],
) -> Result<Vec<(usize, String)>, Failure> {
    let mut refused = Vec::new();
    // Left halves first, so that a conversation's latest row is written last.
    let mut pending = vec![(0, payloads.len())];
    while let Some((from, to)) = pending.pop() {
        match upload(client, emitter, state, &payloads[from..to]).await {
            Ok(()) => {}
            Err(Failure::RowsRefused(why)) if to - from == 1 => refused.push((from, why)),
            Err(Failure::RowsRefused(_)) => {
                let middle = from + (to - from) / 2;
                pending.push((middle, to));
                pending.push((from, middle));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(refused)
}

/// Writes the refused records of `payloads` to the dead-letter file, logging each.
fn set_aside(
    dead: Arc<DeadLetters>,
    payloads: &[Vec<u8>],
    refused: Vec<(usize, String)>,
) -> impl FnOnce() -> Result<(), super::spool::SpoolError> + Send + 'static {
    let records: Vec<(Vec<u8>, String)> = refused
        .into_iter()
        .map(|(i, why)| (payloads[i].clone(), why))
        .collect();
    move || {
        let lines: Vec<Refused<'_>> = records
            .iter()
            .map(|(record, refusal)| Refused { record, refusal })
            .collect();
        dead.set_aside(&lines)?;
        for (record, refusal) in &records {
            let conversation = record::parts(record)
                .map(|p| String::from_utf8_lossy(p.conversation_key).into_owned());
            tracing::error!(refusal = %refusal, conversation = conversation.as_deref().unwrap_or("?"),
                dead_letter = %dead.path().display(), dead_lettered = dead.count(),
                "Supabase refused a record; set aside in the dead-letter file, the records after it go on");
        }
        Ok(())
    }
}

/// Conversations first (deduplicated: one statement may not upsert a row twice, and the
/// latest turn's row wins), then messages. The rows are the records' own bytes, joined.
async fn upload(
    client: &PostgrestClient,
    emitter: &EventEmitter,
    state: &UploadState,
    payloads: &[Vec<u8>],
) -> Result<(), Failure> {
    let Some((conversations, messages)) = bodies(payloads) else {
        return Ok(());
    };
    for (table, body) in [
        (SupabaseTable::Conversations, conversations),
        (SupabaseTable::Messages, messages),
    ] {
        let answer = client.upsert(table, body).await;
        count(emitter, table, &answer);
        state.answered(&answer);
        if let Some(failure) = answer.failure {
            return Err(failure);
        }
    }
    Ok(())
}

/// The request bodies for `payloads`: conversations (each once, with its latest turn's
/// row) and messages. `None` when no record could be used.
fn bodies(payloads: &[Vec<u8>]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut records = Vec::with_capacity(payloads.len());
    for payload in payloads {
        match record::parts(payload) {
            Some(parts) => records.push(parts),
            None => tracing::warn!(
                bytes = payload.len(),
                "spool: skipping a record in a format this build does not know"
            ),
        }
    }
    if records.is_empty() {
        return None;
    }
    let mut latest: HashMap<&[u8], usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        latest.insert(r.conversation_key, i);
    }
    let mut order: Vec<usize> = latest.into_values().collect();
    order.sort_unstable();
    Some((
        json_array(order.iter().map(|&i| records[i].conversation_row)),
        json_array(records.iter().map(|r| r.message_rows)),
    ))
}

/// `[a,b,…]` from JSON values (or comma-separated runs of them).
fn json_array<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 << 10);
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
    out
}

/// Counts a request exactly and samples it as an event.
fn count(emitter: &EventEmitter, table: SupabaseTable, answer: &Answer) {
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

    fn payload(conversation: &str, prompt: &str, at: u64) -> Vec<u8> {
        let mut out = Vec::new();
        record::TurnRecord {
            conversation_id: conversation,
            model: "m",
            user_message_id: &format!("u-{prompt}"),
            assistant_message_id: &format!("a-{prompt}"),
            user: prompt,
            assistant: "answer",
            input_tokens: 1,
            output_tokens: 2,
            correlation_id: "c",
            at_unix_ms: at,
        }
        .encode(&mut out)
        .unwrap();
        out
    }

    #[test]
    fn a_batch_sends_each_conversation_once_with_its_latest_turn() {
        let payloads = vec![
            payload("c1", "p1", 1000),
            b"9\nfrom a later build".to_vec(),
            payload("c2", "p2", 2000),
            payload("c1", "p3", 3000),
        ];
        let (conversations, messages) = bodies(&payloads).unwrap();
        let conversations: serde_json::Value = serde_json::from_slice(&conversations).unwrap();
        assert_eq!(conversations.as_array().unwrap().len(), 2);
        assert_eq!(conversations[0]["id"], "c2");
        assert_eq!(conversations[1]["id"], "c1");
        assert_eq!(conversations[1]["updated_at"], "1970-01-01T00:00:03.000Z");
        let messages: serde_json::Value = serde_json::from_slice(&messages).unwrap();
        let ids: Vec<&str> = messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["u-p1", "a-p1", "u-p2", "a-p2", "u-p3", "a-p3"]);
        assert_eq!(bodies(&[b"garbage".to_vec()]), None);
    }

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
