//! A bounded journal on disk for turns Redis could not take (unreachable, or no answer
//! in time), so that they join their conversation once it answers again instead of
//! being lost.
//!
//! Layout of `EXAI_STORAGE_JOURNAL_DIR` (0700, made when the first turn is kept; by
//! default `journal/<daemon name>` beside the Supabase spool): a `lock` file, held by
//! the daemon using the directory, and one file per kept turn, numbered in the order
//! the turns were kept ([`file`]).
//!
//! Durability, as the Supabase spool's: a turn is written (to a temporary file, renamed
//! into place) before the chat is told it was kept, so it survives the daemon being
//! killed; the files are synced to the disk within a second ([`Journal::sync`], from the
//! replay task), so a power loss or kernel crash loses at most the last second's turns.
//! A record the disk damaged, or a power loss left empty, is skipped, deleted and
//! counted, never replayed wrong.
//!
//! Bound: past `EXAI_STORAGE_JOURNAL_MAX_BYTES` a turn is refused and counted; the chat
//! says so.
//!
//! Writing happens on the blocking pool, one turn at a time (so numbers follow the
//! order turns were kept); a chat waits for its turn's write at most the storage
//! timeout. Replaying, in that order, is the Redis store's
//! ([`crate::storage::redis`]): it reads the oldest turns, appends each to its
//! conversation, then [`Journal::remove`]s them.

pub mod file;

pub use file::Record;

use crate::storage::Turn;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Turns whose write may be waiting for the disk at once; more are refused, so a
/// stalled disk cannot fill the blocking pool.
const MAX_WRITING: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the storage journal is full ({bytes} of {max} bytes, this turn needs {needed}); raise EXAI_STORAGE_JOURNAL_MAX_BYTES or bring Redis back")]
    Full { bytes: u64, needed: u64, max: u64 },
    #[error("the storage journal's disk is behind: {0} turns already wait for it")]
    Behind(usize),
    #[error("the storage journal {0} is in use by another process; give each daemon its own EXAI_STORAGE_JOURNAL_DIR (or EXAI_DAEMON_NAME)")]
    InUse(PathBuf),
    #[error("storage journal: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl JournalError {
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What became of a turn handed to [`Journal::keep`].
#[derive(Debug)]
pub enum Kept {
    /// On disk: it joins its conversation when Redis answers, even after a restart.
    Written,
    /// Handed to a disk that did not finish within the wait; written when it does.
    Late,
    /// Not kept.
    Refused(JournalError),
}

/// What the journal holds and has done, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Turns waiting for Redis.
    pub turns: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Turns not kept since start (journal full, disk behind or failing).
    pub refused: u64,
    /// Damaged records skipped (and deleted) since start.
    pub damaged: u64,
    /// Turns appended to their conversation since start.
    pub replayed: u64,
    /// Turns Redis would not take on replay for a reason that does not pass (the
    /// conversation's key holds something else), logged and deleted.
    pub discarded: u64,
}

/// How a replayed turn ended, for [`Journal::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In its conversation.
    Replayed,
    /// Refused by Redis for good.
    Discarded,
    /// Unreadable (already counted when read).
    Damaged,
}

/// The journal; cheap to clone, every clone the same journal.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    /// Longest a chat waits for its turn's write.
    write_wait: Duration,
    /// Held while a turn is written: numbers are taken, and turns named, in order.
    disk: Mutex<Disk>,
    /// The turns on disk. Held only to look or to count, never across I/O, so a chat
    /// asking [`Journal::holds`] never waits for the disk.
    index: Mutex<Index>,
    /// Writes handed to the blocking pool and not finished.
    writing: AtomicUsize,
    /// Turns written since the last sync.
    unsynced: Mutex<Vec<u64>>,
    /// The last sync failed: said once, not every time.
    sync_failing: AtomicBool,
    refused: AtomicU64,
    damaged: AtomicU64,
    replayed: AtomicU64,
    discarded: AtomicU64,
    /// Wakes the replay when a turn is kept.
    kept: Notify,
}

struct Disk {
    /// The directory's lock, once the directory is in use.
    lock: Option<File>,
    next_seq: u64,
}

#[derive(Default)]
struct Index {
    /// Each turn's conversation and bytes on disk, by sequence number.
    turns: BTreeMap<u64, (String, u64)>,
    /// Turns waiting per conversation: a later turn of one of these must queue behind
    /// them, or it would land before them.
    conversations: HashMap<String, usize>,
    bytes: u64,
}

impl Index {
    fn insert(&mut self, seq: u64, conversation: String, bytes: u64) {
        *self.conversations.entry(conversation.clone()).or_default() += 1;
        self.turns.insert(seq, (conversation, bytes));
        self.bytes += bytes;
    }

    fn remove(&mut self, seq: u64) {
        let Some((conversation, bytes)) = self.turns.remove(&seq) else {
            return;
        };
        self.bytes -= bytes;
        if let Some(n) = self.conversations.get_mut(&conversation) {
            *n -= 1;
            if *n == 0 {
                self.conversations.remove(&conversation);
            }
        }
    }
}

impl Journal {
    /// Opens the journal in `dir`: when the directory exists (turns kept before a
    /// restart), takes its lock and reads what it holds, deleting and counting damaged
    /// records; when it does not, nothing is created until a turn must be kept.
    /// Blocking: called at start-up.
    pub fn open(dir: &Path, max_bytes: u64, write_wait: Duration) -> Result<Self, JournalError> {
        let mut disk = Disk {
            lock: None,
            next_seq: 1,
        };
        let mut index = Index::default();
        let mut damaged = 0;
        if dir.exists() {
            disk.lock = Some(file::claim(dir)?);
            for (seq, path) in file::list(dir)? {
                disk.next_seq = seq.saturating_add(1);
                match file::read(&path, max_bytes) {
                    (bytes, Ok(record)) => index.insert(seq, record.conversation, bytes),
                    (_, Err(why)) => {
                        damaged += 1;
                        skip_damaged(dir, seq, &why);
                    }
                }
            }
            if !index.turns.is_empty() {
                tracing::info!(journal = %dir.display(), turns = index.turns.len(), bytes = index.bytes,
                    "storage journal: turns kept while Redis was away wait for it");
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                max_bytes,
                write_wait,
                disk: Mutex::new(disk),
                index: Mutex::new(index),
                writing: AtomicUsize::new(0),
                unsynced: Mutex::new(Vec::new()),
                sync_failing: AtomicBool::new(false),
                refused: AtomicU64::new(0),
                damaged: AtomicU64::new(damaged),
                replayed: AtomicU64::new(0),
                discarded: AtomicU64::new(0),
                kept: Notify::new(),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Writes `turn` of conversation `id` to disk, off the async workers, waiting at most
    /// the write wait.
    pub async fn keep(&self, id: &str, turn: &Turn) -> Kept {
        let shared = &self.shared;
        let record = Record {
            conversation: id.to_string(),
            turn: turn.clone(),
        };
        let content = match file::encode(&record) {
            Ok(content) => content,
            Err(e) => {
                let e = JournalError::io("cannot encode a turn for", &shared.dir)(e.into());
                return shared.refuse(e);
            }
        };
        let writing = shared.writing.fetch_add(1, Relaxed);
        if writing >= MAX_WRITING {
            shared.writing.fetch_sub(1, Relaxed);
            return shared.refuse(JournalError::Behind(writing));
        }
        let worker = self.shared.clone();
        let write = tokio::task::spawn_blocking(move || {
            let result = worker.write(record.conversation, &content);
            worker.writing.fetch_sub(1, Relaxed);
            match result {
                Ok(()) => worker.kept.notify_one(),
                Err(ref e) => {
                    worker.refused.fetch_add(1, Relaxed);
                    tracing::warn!(error = %crate::cause::chain(e), "storage journal: a turn was not kept");
                }
            }
            result
        });
        match tokio::time::timeout(shared.write_wait, write).await {
            Ok(Ok(Ok(()))) => Kept::Written,
            // Counted and logged by the write itself.
            Ok(Ok(Err(e))) => Kept::Refused(e),
            Ok(Err(panicked)) => shared.refuse(JournalError::io("cannot write to", &shared.dir)(
                std::io::Error::other(panicked.to_string()),
            )),
            Err(_) => Kept::Late,
        }
    }

    /// Whether turns of conversation `id` wait here: its next turn must queue behind them.
    pub fn holds(&self, id: &str) -> bool {
        self.shared.index().conversations.contains_key(id)
    }

    pub fn is_empty(&self) -> bool {
        self.shared.index().turns.is_empty()
    }

    /// Up to `n` of the oldest turns' sequence numbers, in the order they were kept.
    pub fn oldest(&self, n: usize) -> Vec<u64> {
        self.shared.index().turns.keys().take(n).copied().collect()
    }

    /// Reads the turns numbered `seqs`; a damaged or vanished one is counted, logged,
    /// deleted, and comes back as `None`. Blocking.
    pub fn read(&self, seqs: &[u64]) -> Vec<(u64, Option<Record>)> {
        let shared = &self.shared;
        seqs.iter()
            .map(
                |&seq| match file::read(&file::path(&shared.dir, seq), shared.max_bytes).1 {
                    Ok(record) => (seq, Some(record)),
                    Err(why) => {
                        shared.damaged.fetch_add(1, Relaxed);
                        skip_damaged(&shared.dir, seq, &why);
                        (seq, None)
                    }
                },
            )
            .collect()
    }

    /// Deletes replayed (or unusable) turns and counts them. Blocking. A file that cannot
    /// be deleted leaves the journal anyway: replaying it again after a restart is
    /// harmless, as a replay skips a turn its conversation already holds.
    pub fn remove(&self, done: &[(u64, Outcome)]) {
        let shared = &self.shared;
        for &(seq, outcome) in done {
            if let Err(e) = file::remove(&shared.dir, seq) {
                tracing::warn!(file = %file::path(&shared.dir, seq).display(), error = %e,
                    "storage journal: cannot delete a replayed turn");
            }
            shared.index().remove(seq);
            match outcome {
                Outcome::Replayed => shared.replayed.fetch_add(1, Relaxed),
                Outcome::Discarded => shared.discarded.fetch_add(1, Relaxed),
                Outcome::Damaged => 0,
            };
        }
    }

    /// Whether turns were written since the last [`Journal::sync`].
    pub fn needs_sync(&self) -> bool {
        !self
            .shared
            .unsynced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Flushes the turns written since the last call, and the directory, to the disk.
    /// Blocking. A failure is logged when it starts, and those turns are tried again
    /// next time.
    pub fn sync(&self) {
        let shared = &self.shared;
        let seqs = std::mem::take(&mut *shared.unsynced.lock().unwrap_or_else(|e| e.into_inner()));
        if seqs.is_empty() {
            return;
        }
        match file::sync(&shared.dir, &seqs) {
            Ok(()) => {
                if shared.sync_failing.swap(false, Relaxed) {
                    tracing::info!(journal = %shared.dir.display(), "storage journal: syncing to the disk again");
                }
            }
            Err(e) => {
                if !shared.sync_failing.swap(true, Relaxed) {
                    tracing::error!(journal = %shared.dir.display(), error = %e,
                        "storage journal: cannot sync kept turns to the disk; they are lost if the machine stops");
                }
                let mut unsynced = shared.unsynced.lock().unwrap_or_else(|e| e.into_inner());
                unsynced.extend(seqs);
            }
        }
    }

    /// Completes when a turn was kept since the last wake-up.
    pub async fn kept(&self) {
        self.shared.kept.notified().await
    }

    pub fn stats(&self) -> JournalStats {
        let shared = &self.shared;
        let (turns, bytes) = {
            let index = shared.index();
            (index.turns.len() as u64, index.bytes)
        };
        JournalStats {
            turns,
            bytes,
            max_bytes: shared.max_bytes,
            refused: shared.refused.load(Relaxed),
            damaged: shared.damaged.load(Relaxed),
            replayed: shared.replayed.load(Relaxed),
            discarded: shared.discarded.load(Relaxed),
        }
    }
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refuse(&self, e: JournalError) -> Kept {
        self.refused.fetch_add(1, Relaxed);
        tracing::warn!(error = %crate::cause::chain(&e), "storage journal: a turn was not kept");
        Kept::Refused(e)
    }

    /// Numbers, writes and indexes one turn. Blocking.
    fn write(&self, conversation: String, content: &[u8]) -> Result<(), JournalError> {
        let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        let needed = content.len() as u64;
        let bytes = self.index().bytes;
        // Only this writer adds bytes, and it holds `disk`: the room seen here stays.
        if bytes + needed > self.max_bytes {
            return Err(JournalError::Full {
                bytes,
                needed,
                max: self.max_bytes,
            });
        }
        if disk.lock.is_none() {
            disk.lock = Some(file::claim(&self.dir)?);
            tracing::info!(journal = %self.dir.display(), "storage journal: keeping turns until Redis answers");
        }
        let seq = disk.next_seq;
        file::write(&self.dir, seq, content)?;
        disk.next_seq += 1;
        self.index().insert(seq, conversation, needed);
        self.unsynced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seq);
        Ok(())
    }
}

fn skip_damaged(dir: &Path, seq: u64, why: &str) {
    let path = file::path(dir, seq);
    tracing::warn!(file = %path.display(), why,
        "storage journal: skipping a damaged turn; the turns around it are kept");
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), error = %e, "storage journal: cannot delete a damaged turn");
        }
    }
}

#[cfg(test)]
mod tests;
