//! The durable, append-only spool of records waiting for Supabase.
//!
//! Layout of `EXAI_SPOOL_DIR` (0700, and every file in it 0600, whatever they were
//! before: the records are users' conversations):
//! - `segment-<20-digit sequence>.spool`: records framed as in [`super::frame`], appended
//!   to the newest segment; a new one starts past [`Spool::segment_bytes`].
//! - `cursor`: the position up to which everything was uploaded. Written (temp file and
//!   rename) after each acknowledged batch; segments wholly before it are deleted.
//!
//! Durability: a record is handed to the kernel with one `write` before the chat answers,
//! so it survives the daemon being killed (SIGKILL, OOM, panic). Data is `fdatasync`ed
//! every second by the flusher ([`Spool::sync`]), so a power loss or kernel crash loses at
//! most the last second; a record torn by one is detected by its checksum and skipped.
//! The cursor is not synced: losing its last update replays records Supabase already has,
//! which the idempotency keys make harmless.
//!
//! Bound: past `EXAI_SPOOL_MAX_BYTES` on disk, appends are refused and counted.

mod open;
mod reader;

pub use reader::{Batch, SpoolReader};

use super::frame;
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
    #[error("spool {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
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
    writer: Mutex<Writer>,
    /// Bytes of every segment file, uploaded parts included until the file is deleted.
    bytes: AtomicU64,
    /// Records appended and not yet acknowledged by Supabase.
    depth: AtomicU64,
    /// Records refused because the spool was full or could not be written.
    refused: AtomicU64,
    /// Wakes the uploader when a record arrives.
    appended: Notify,
}

/// The segment being appended to.
struct Writer {
    segment: u64,
    file: File,
    /// Bytes of whole records in it: readers stop here, so they never see a record
    /// that is half written.
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
    /// stays in front of the next.
    pub fn append(&self, buf: &mut [u8]) -> Result<(), SpoolError> {
        if buf.len() - frame::HEADER > frame::MAX_PAYLOAD {
            self.refused.fetch_add(1, Relaxed);
            return Err(SpoolError::TooLarge(buf.len() - frame::HEADER));
        }
        frame::finish(buf);
        let n = buf.len() as u64;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = self.bytes.load(Relaxed);
        if bytes + n > self.max_bytes {
            drop(w);
            self.refused.fetch_add(1, Relaxed);
            return Err(SpoolError::Full {
                bytes,
                max: self.max_bytes,
            });
        }
        if w.len > 0 && w.len + n > self.segment_bytes {
            if let Err(e) = self.rotate(&mut w) {
                drop(w);
                self.refused.fetch_add(1, Relaxed);
                return Err(e);
            }
        }
        if let Err(source) = w.file.write_all(buf) {
            let _ = w.file.set_len(w.len);
            let path = segment_path(&self.dir, w.segment);
            drop(w);
            self.refused.fetch_add(1, Relaxed);
            return Err(SpoolError::Io {
                what: "cannot append to",
                path,
                source,
            });
        }
        w.len += n;
        w.dirty = true;
        self.bytes.fetch_add(n, Relaxed);
        self.depth.fetch_add(1, Relaxed);
        drop(w);
        self.appended.notify_one();
        Ok(())
    }

    fn rotate(&self, w: &mut Writer) -> Result<(), SpoolError> {
        let next = w.segment + 1;
        let path = segment_path(&self.dir, next);
        let file = open_for_append(&path).map_err(SpoolError::io("cannot create", &path))?;
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

    /// The segment being written and how many bytes of whole records it holds.
    fn active(&self) -> Position {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Position {
            segment: w.segment,
            offset: w.len,
        }
    }

    /// Starts a new segment if `segment` is still the active one, so a reader can skip
    /// past damage in it.
    fn seal(&self, segment: u64) -> Result<(), SpoolError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.segment == segment {
            self.rotate(&mut w)?;
        }
        Ok(())
    }

    /// Flushes what was appended since the last call to the disk. Blocking: run it off
    /// the async workers.
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
        }
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Relaxed)
    }

    /// Completes when a record was appended since the last wake-up.
    pub async fn appended(&self) {
        self.appended.notified().await
    }
}

#[cfg(test)]
mod tests;
