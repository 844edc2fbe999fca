//! Replaying the journal: once Redis answers, the turns kept while it was away join
//! their conversations, oldest first, a batch per round trip, and then leave the
//! journal.
//!
//! A turn is appended with its conversation's duplicates skipped, so one sent twice is
//! there once: a batch sent again whole after a failure part of it survived, a turn
//! whose deletion from the journal failed or was cut short by a stop, one whose first
//! append landed although its answer was lost. A failure that passes (Redis away again,
//! no answer) stops the replay where it is, so no later turn overtakes it; one that
//! does not (the key holds something else) discards that turn with an error in the log
//! and goes on.

use super::scripts::Appended;
use super::Link;
use crate::storage::journal::{Journal, Outcome, Record};
use crate::storage::{StorageError, Turn};
use exai_proto::StorageBackend;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Turns read from disk at once.
const BATCH: usize = 64;
/// How often the replay looks again while turns wait, besides being woken: a wake-up
/// missed costs at most this. Also how often kept turns are synced to the disk.
const LOOK_EVERY: Duration = Duration::from_millis(500);

pub(super) async fn run(journal: Journal, link: Link, max_turns: usize, cancel: CancellationToken) {
    // Set while a replay is under way, so that its start, its stops and its end are
    // each logged once.
    let mut replaying = false;
    let mut failing = false;
    let mut synced_at = Instant::now();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        if journal.needs_sync() && synced_at.elapsed() >= LOOK_EVERY {
            sync(&journal).await;
            synced_at = Instant::now();
        }
        if !journal.is_empty() && link.health.is_up() {
            if !replaying {
                replaying = true;
                let stats = journal.stats();
                tracing::info!(journal = %journal.dir().display(), turns = stats.turns,
                    "storage journal: Redis answers; adding the turns kept meanwhile to their conversations");
            }
            match replay_batch(&journal, &link, max_turns).await {
                Ok(()) => {
                    failing = false;
                    continue;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %crate::cause::chain(&e), turns = journal.stats().turns,
                            "storage journal: replay stopped; it goes on when Redis answers");
                    }
                    failing = true;
                }
            }
        } else if replaying && journal.is_empty() {
            replaying = false;
            let stats = journal.stats();
            tracing::info!(
                replayed = stats.replayed,
                discarded = stats.discarded,
                damaged = stats.damaged,
                "storage journal: every kept turn is in its conversation"
            );
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = journal.kept() => {}
            _ = link.health.recovered.notified() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
    // Turns kept in the last moments reach the disk before the daemon stops.
    sync(&journal).await;
}

async fn sync(journal: &Journal) {
    let journal = journal.clone();
    let _ = tokio::task::spawn_blocking(move || journal.sync()).await;
}

/// Appends the oldest turns, then removes those done. `Err` when Redis failed in a way
/// that passes: the turns from that one on stay for the next try.
async fn replay_batch(
    journal: &Journal,
    link: &Link,
    max_turns: usize,
) -> Result<(), StorageError> {
    let seqs = journal.oldest(BATCH);
    let reader = journal.clone();
    let read = tokio::task::spawn_blocking(move || reader.read(&seqs))
        .await
        .unwrap_or_default();
    let mut done = Vec::with_capacity(read.len());
    let mut records = Vec::with_capacity(read.len());
    for (seq, record) in read {
        match record {
            Some(record) => records.push((seq, record)),
            None => done.push((seq, Outcome::Damaged)),
        }
    }
    let replayed = replay_records(&records, link, max_turns, &mut done).await;
    if !done.is_empty() {
        let remover = journal.clone();
        let _ = tokio::task::spawn_blocking(move || remover.remove(&done)).await;
    }
    replayed
}

/// Appends `records` in one round trip, then alone each one that needs it (an older
/// daemon's string to convert, or a refusal to tell apart), adding to `done` the ones
/// finished with.
async fn replay_records(
    records: &[(u64, Record)],
    link: &Link,
    max_turns: usize,
    done: &mut Vec<(u64, Outcome)>,
) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    let turns: Vec<(&str, &Turn)> = records
        .iter()
        .map(|(_, r)| (r.conversation.as_str(), &r.turn))
        .collect();
    let answers: Vec<Option<Appended>> = match within(link, link.replay(&turns, max_turns)).await {
        Ok(answers) => answers.into_iter().map(Some).collect(),
        Err(e) if e.is_transient() => return Err(e),
        // Refused for one of them, for good: each alone tells which.
        Err(_) => records.iter().map(|_| None).collect(),
    };
    for ((seq, record), answer) in records.iter().zip(answers) {
        let appended = match answer {
            Some(Appended::Done) => Ok(()),
            _ => {
                let alone = link.append(&record.conversation, &record.turn, max_turns, true);
                within(link, alone).await
            }
        };
        match appended {
            Ok(()) => done.push((*seq, Outcome::Replayed)),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::error!(conversation = %record.conversation, error = %crate::cause::chain(&e),
                    "storage journal: Redis will not take a kept turn; it is discarded");
                done.push((*seq, Outcome::Discarded));
            }
        }
    }
    Ok(())
}

/// `work` under the storage timeout.
async fn within<T>(
    link: &Link,
    work: impl std::future::Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(link.timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(StorageError::Timeout {
                backend: StorageBackend::Redis,
                millis: link.timeout.as_millis() as u64,
            })
        })
}
