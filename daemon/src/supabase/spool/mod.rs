//! The durable, append-only spool of records waiting for Supabase.
//!
//! Layout of `EXAI_SPOOL_DIR` (0700, and every file in it 0600, whatever they were
//! before: the records are users' conversations):
//! - `segment-<20-digit sequence>.spool`: records framed as in [`super::frame`], appended
//!   to the newest segment; a new one starts past [`Spool::segment_bytes`]. Segments are
//!   found by listing the directory, never by counting numbers up.
//! - `cursor`: the position up to which everything was uploaded. Written (temp file and
//!   rename) after each acknowledged batch; segments wholly before it are deleted. At
//!   open it is checked against the segments present: one that names a segment not
//!   there, or an offset past its end, is not trusted (everything is replayed, nothing
//!   deleted, and a warning logged).
//!
//! Writing: only the spool's own thread writes ([`writer::SpoolWriter`]), fed by a
//! bounded queue; the request path waits for its record's `write` at most
//! `EXAI_SPOOL_WRITE_TIMEOUT_MS`, so a stalled disk never stalls an async worker.
//!
//! Durability: a record is handed to the kernel with one `write` before the chat answers
//! (whenever the disk answers in time), so it survives the daemon being killed (SIGKILL,
//! OOM, panic). The writer thread `fdatasync`s every second ([`Spool::sync`]), so a power
//! loss or kernel crash loses at most the last second. The cursor is not synced: losing
//! its last update replays records Supabase already has, which the idempotency keys make
//! harmless.
//!
//! Damage: a torn or damaged record (a power loss, a bad disk) is skipped and counted,
//! and the records after it are kept: the reader finds the next whole record by its
//! checksum ([`scan`]).
//!
//! Bound: past `EXAI_SPOOL_MAX_BYTES` on disk, appends are refused and counted.

mod open;
mod reader;
pub mod scan;
pub mod writer;

pub use reader::{Batch, SpoolReader};
pub use writer::{Appended, SpoolWriter, WriterOptions};

use super::frame;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "spool full ({bytes} of {max} bytes); raise EXAI_SPOOL_MAX_BYTES or bring Supabase back"
    )]
    Full { bytes: u64, max: u64 },
    #[error("record of {0} bytes is larger than a spool record may be")]
    TooLarge(usize),
    #[error("the spool's disk is behind: {records} records ({bytes} bytes) already wait for it")]
    Backlog { records: u64, bytes: u64 },
    #[error("the spool is closed (the daemon is stopping)")]
    Closed,
    #[error("spool segment numbers are exhausted in {0}; move its segments away")]
    NumbersExhausted(PathBuf),
    #[error("spool {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SpoolError {
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Size past which a new segment starts: small against `max_bytes`, so space held
    /// by uploaded records waiting for their segment to be deleted stays small.
    segment_bytes: u64,
    /// Taken only by whoever appends (the writer thread): never by the reader.
    writer: Mutex<Writer>,
    /// The segment being appended to and the bytes of whole records in it: readers stop
    /// there, so they never see a record that is half written. Held only to copy it.
    active: Mutex<Position>,
    /// Segment numbers on disk, oldest first: the writer adds, the reader removes.
    segments: Mutex<BTreeSet<u64>>,
    /// Bytes of every segment file, uploaded parts included until the file is deleted.
    bytes: AtomicU64,
    /// Records appended and not yet acknowledged by Supabase.
    depth: AtomicU64,
    /// Records refused because the spool was full or could not be written.
    refused: AtomicU64,
    /// Damaged or torn stretches skipped by the reader (each at least one record).
    damaged: AtomicU64,
    /// Wakes the uploader when a record arrives.
    appended: Notify,
}

/// The segment being appended to.
struct Writer {
    segment: u64,
    file: File,
    /// Bytes of whole records in it.
    len: u64,
    /// Sealed segments not yet synced.
    unsynced: Vec<File>,
    /// Appended to since the last sync.
    dirty: bool,
    /// A segment file was created since the last sync of the directory.
    dir_dirty: bool,
}

/// Counts for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    pub depth: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub refused: u64,
    pub damaged: u64,
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("segment-{segment:020}.spool"))
}

/// Opens a segment for appending, creating it readable by the daemon's user only.
fn open_for_append(path: &Path) -> io::Result<File> {
    let mut options = File::options();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering from a crash: see [`open::open`].
    pub fn open(
        dir: &Path,
        max_bytes: u64,
    ) -> Result<(std::sync::Arc<Self>, SpoolReader), SpoolError> {
        open::open(dir, max_bytes)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Appends one framed record: `buf` is [`frame::HEADER`] placeholder bytes followed by
    /// the payload. One `write`; a failed one is cut off again so that no partial record
    /// stays in front of the next. Blocking: only the writer thread (and tests) call it.
    pub fn append(&self, buf: &mut [u8]) -> Result<(), SpoolError> {
        let result = self.append_inner(buf);
        if result.is_err() {
            self.refused.fetch_add(1, Relaxed);
        }
        result
    }

    fn append_inner(&self, buf: &mut [u8]) -> Result<(), SpoolError> {
        if buf.len() - frame::HEADER > frame::MAX_PAYLOAD {
            return Err(SpoolError::TooLarge(buf.len() - frame::HEADER));
        }
        frame::finish(buf);
        let n = buf.len() as u64;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = self.bytes.load(Relaxed);
        if bytes + n > self.max_bytes {
            return Err(SpoolError::Full {
                bytes,
                max: self.max_bytes,
            });
        }
        if w.len > 0 && w.len + n > self.segment_bytes {
            self.rotate(&mut w)?;
        }
        if let Err(source) = w.file.write_all(buf) {
            let _ = w.file.set_len(w.len);
            return Err(SpoolError::Io {
                what: "cannot append to",
                path: segment_path(&self.dir, w.segment),
                source,
            });
        }
        w.len += n;
        w.dirty = true;
        self.publish(&w);
        self.bytes.fetch_add(n, Relaxed);
        self.depth.fetch_add(1, Relaxed);
        drop(w);
        self.appended.notify_one();
        Ok(())
    }

    fn rotate(&self, w: &mut Writer) -> Result<(), SpoolError> {
        let next = w
            .segment
            .checked_add(1)
            .ok_or_else(|| SpoolError::NumbersExhausted(self.dir.clone()))?;
        let path = segment_path(&self.dir, next);
        let file = open_for_append(&path).map_err(SpoolError::io("cannot create", &path))?;
        self.segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(next);
        let sealed = std::mem::replace(&mut w.file, file);
        if w.dirty {
            w.unsynced.push(sealed);
        }
        w.segment = next;
        w.len = 0;
        w.dirty = false;
        w.dir_dirty = true;
        Ok(())
    }

    /// Makes what `w` wrote visible to the reader.
    fn publish(&self, w: &Writer) {
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = Position {
            segment: w.segment,
            offset: w.len,
        };
    }

    /// The segment being written and how many bytes of whole records it holds.
    fn active(&self) -> Position {
        *self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first segment on disk after `segment`.
    fn segment_after(&self, segment: u64) -> Option<u64> {
        let segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        segments
            .range((
                std::ops::Bound::Excluded(segment),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .copied()
    }

    /// Segments on disk before `segment`, oldest first.
    fn segments_before(&self, segment: u64) -> Vec<u64> {
        let segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        segments.range(..segment).copied().collect()
    }

    fn forget_segment(&self, segment: u64) {
        self.segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&segment);
    }

    /// Flushes what was appended since the last call to the disk. Blocking: the writer
    /// thread calls it.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let (files, dir_dirty) = {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let mut files = std::mem::take(&mut w.unsynced);
            if w.dirty {
                w.dirty = false;
                let path = segment_path(&self.dir, w.segment);
                files.push(
                    w.file
                        .try_clone()
                        .map_err(SpoolError::io("cannot sync", &path))?,
                );
            }
            (files, std::mem::take(&mut w.dir_dirty))
        };
        for file in &files {
            file.sync_data()
                .map_err(SpoolError::io("cannot sync a segment in", &self.dir))?;
        }
        if dir_dirty {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(SpoolError::io("cannot sync", &self.dir))?;
        }
        Ok(())
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            depth: self.depth.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            max_bytes: self.max_bytes,
            refused: self.refused.load(Relaxed),
            damaged: self.damaged.load(Relaxed),
        }
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Relaxed)
    }

    /// Records refused since start (spool full, too large, disk error, writer backlog).
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Damaged or torn stretches the reader skipped since start.
    pub fn damaged(&self) -> u64 {
        self.damaged.load(Relaxed)
    }

    /// Completes when a record was appended since the last wake-up.
    pub async fn appended(&self) {
        self.appended.notified().await
    }
}

#[cfg(test)]
mod tests;
