//! Reading the spool from the cursor on, and moving the cursor once a batch is uploaded.

use super::open::write_cursor;
use super::{scan, segment_path, Position, Spool, SpoolError};
use crate::supabase::frame::{self, Decoded, HEADER, MAX_PAYLOAD};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Bytes read from a segment at once.
const CHUNK: u64 = 256 << 10;
/// Most bytes read at once to find the next whole record after damage: a largest
/// record and then some, so one that starts in it is seen whole.
const RESYNC_WINDOW: u64 = 2 * (MAX_PAYLOAD as u64 + HEADER as u64);

/// Records read from the spool, not yet acknowledged.
#[derive(Debug, Default)]
pub struct Batch {
    pub payloads: Vec<Vec<u8>>,
    /// Where the next batch starts; the cursor moves here once this one is uploaded.
    pub end: Position,
}

/// The uploader's view of the spool. Only the uploader reads, so it owns the cursor.
pub struct SpoolReader {
    spool: Arc<Spool>,
    /// Everything before this position was uploaded.
    at: Position,
    /// The segment file being read, kept open between batches.
    file: Option<(u64, File)>,
    /// Fired at shutdown: a read in progress returns what it has.
    stop: CancellationToken,
}

impl SpoolReader {
    pub(super) fn new(spool: Arc<Spool>, at: Position) -> Self {
        Self {
            spool,
            at,
            file: None,
            stop: CancellationToken::new(),
        }
    }

    /// Makes reads return early once `stop` fires.
    pub fn observe(&mut self, stop: CancellationToken) {
        self.stop = stop;
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    pub fn position(&self) -> Position {
        self.at
    }

    /// Reads up to `max_records` records, stopping once about `max_bytes` were read.
    /// Blocking: run it off the async workers. A torn or damaged record (left by a power
    /// loss, or disk damage) is skipped with a warning and counted; reading goes on at the
    /// next whole record. Segments are taken in the order the spool has them on disk.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> Result<Batch, SpoolError> {
        let mut pos = self.at;
        let mut payloads = Vec::new();
        let mut taken = 0;
        while payloads.len() < max_records && taken < max_bytes && !self.stop.is_cancelled() {
            let active = self.spool.active();
            if pos.segment > active.segment {
                break;
            }
            let limit = if pos.segment == active.segment {
                active.offset
            } else {
                match fs::metadata(segment_path(&self.spool.dir, pos.segment)) {
                    Ok(m) => m.len(),
                    // A sealed segment that is gone holds nothing more to send.
                    Err(_) => 0,
                }
            };
            if pos.offset >= limit {
                if pos.segment == active.segment {
                    break;
                }
                match self.spool.segment_after(pos.segment) {
                    Some(next) => {
                        pos = Position {
                            segment: next,
                            offset: 0,
                        }
                    }
                    None => break,
                }
                continue;
            }
            // Whole records in one read where they fit; one that does not is read alone.
            let want = (limit - pos.offset).min(CHUNK);
            let chunk = self.read_at(pos, want as usize)?;
            let mut at = 0;
            let mut damaged = false;
            while payloads.len() < max_records && taken < max_bytes {
                match frame::decode(&chunk[at..]) {
                    Decoded::Record { payload, len } => {
                        payloads.push(payload.to_vec());
                        at += len;
                        taken += len;
                    }
                    Decoded::End => break,
                    // The next record goes on past this chunk: read again from it.
                    Decoded::Torn if at > 0 => break,
                    Decoded::Torn => {
                        match self.read_record(pos, limit)? {
                            Some(payload) => {
                                at = HEADER + payload.len();
                                taken += at;
                                payloads.push(payload);
                            }
                            None => damaged = true,
                        }
                        break;
                    }
                    Decoded::Corrupt => {
                        damaged = true;
                        break;
                    }
                }
            }
            pos.offset += at as u64;
            if damaged {
                pos.offset = self.skip_damage(pos, limit)?;
            }
        }
        if payloads.is_empty() && pos != self.at {
            // Only uploaded or unreadable data was passed: nothing to send, so the cursor
            // moves (and finished segments go) at once.
            self.commit(pos, 0)?;
        }
        Ok(Batch { payloads, end: pos })
    }

    /// Finds the next whole record after the damaged one at `pos` (or `limit`), logs and
    /// counts what is skipped, and returns where reading goes on.
    fn skip_damage(&mut self, pos: Position, limit: u64) -> Result<u64, SpoolError> {
        let window = (limit - pos.offset).min(RESYNC_WINDOW);
        let data = self.read_at(pos, window as usize)?;
        let found = scan::resync(&data, 0) as u64;
        let next = if found < window || window == limit - pos.offset {
            pos.offset + found
        } else {
            // Nothing whole in a window that does not reach the end: go on from where a
            // record could still start and be seen whole by the next window.
            pos.offset + window - (MAX_PAYLOAD + HEADER) as u64
        };
        self.spool.damaged.fetch_add(1, Relaxed);
        tracing::warn!(
            segment = %segment_path(&self.spool.dir, pos.segment).display(),
            offset = pos.offset,
            skipped_bytes = next - pos.offset,
            "spool: skipping an unreadable record; the records after it are kept"
        );
        Ok(next)
    }

    /// The open file of `segment`, positioned at `offset`.
    fn seek(&mut self, pos: Position) -> Result<&mut File, SpoolError> {
        let path = segment_path(&self.spool.dir, pos.segment);
        let file = match self.file.take() {
            Some((segment, file)) if segment == pos.segment => file,
            _ => File::open(&path).map_err(SpoolError::io("cannot open", &path))?,
        };
        let file = &mut self.file.insert((pos.segment, file)).1;
        file.seek(SeekFrom::Start(pos.offset))
            .map_err(SpoolError::io("cannot read", &path))?;
        Ok(file)
    }

    fn read_at(&mut self, pos: Position, len: usize) -> Result<Vec<u8>, SpoolError> {
        let mut buf = vec![0u8; len];
        self.seek(pos)?
            .read_exact(&mut buf)
            .map_err(SpoolError::io(
                "cannot read",
                &segment_path(&self.spool.dir, pos.segment),
            ))?;
        Ok(buf)
    }

    /// One record that did not fit a chunk: its header says how long it is. `None` when
    /// it is torn or damaged.
    fn read_record(&mut self, pos: Position, limit: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        if limit - pos.offset < HEADER as u64 {
            return Ok(None);
        }
        let header = self.read_at(pos, HEADER)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD || pos.offset + (HEADER + len) as u64 > limit {
            return Ok(None);
        }
        let mut buf = self.read_at(pos, HEADER + len)?;
        match frame::decode(&buf) {
            Decoded::Record { .. } => {
                buf.drain(..HEADER);
                Ok(Some(buf))
            }
            _ => Ok(None),
        }
    }

    /// Records that everything before `end` was uploaded (`records` of them since the
    /// last commit). The position moves at once, so a failure below never makes the
    /// uploader send the same batch again and again; then the cursor is saved and the
    /// segments wholly before it are deleted. A cursor that cannot be saved keeps the
    /// segments, so that a restart replays from the last saved cursor (duplicates that
    /// the idempotency keys make harmless).
    pub fn commit(&mut self, end: Position, records: u64) -> Result<(), SpoolError> {
        self.at = end;
        let _ = self
            .spool
            .depth
            .fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(records)));
        if self.file.as_ref().is_some_and(|(s, _)| *s < end.segment) {
            self.file = None;
        }
        write_cursor(&self.spool.dir, end)?;
        for segment in self.spool.segments_before(end.segment) {
            let path = segment_path(&self.spool.dir, segment);
            match fs::metadata(&path) {
                Ok(meta) => {
                    fs::remove_file(&path).map_err(SpoolError::io("cannot delete", &path))?;
                    self.spool.bytes.fetch_sub(meta.len(), Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::io("cannot delete", &path)(e)),
            }
            self.spool.forget_segment(segment);
        }
        Ok(())
    }
}
