//! Opening a spool after a clean stop or a crash, and the cursor file.

use super::reader::SpoolReader;
use super::{open_for_append, scan, segment_path, Position, Spool, SpoolError, Writer};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

const CURSOR: &str = "cursor";
const CURSOR_TAG: &str = "exai-spool-cursor v1";

/// Segment numbers above this are not from counting up (a segment a second would take
/// longer than the sun has left): a spool holding one is renumbered from 1 at open, so
/// that numbers can never wrap.
const RENUMBER_ABOVE: u64 = 1 << 62;

/// Opens the spool in `dir`:
/// 1. the segments are listed from the directory (renumbered from 1 if a number is
///    absurdly high), the directory made 0700 and its files 0600;
/// 2. the cursor is checked against them: a valid one deletes the segments wholly before
///    it (uploaded, not yet deleted); one naming a segment that is not there, or an
///    offset past its segment's end or inside a record, is not trusted: everything is
///    replayed (the idempotency keys make that harmless) and nothing deleted;
/// 3. the newest segment is cut after its last whole record (a crash mid-write), so
///    appends continue after whole records; damage before that is left for the reader
///    to skip;
/// 4. the whole records from the cursor on are counted: the spool's depth.
pub fn open(dir: &Path, max_bytes: u64) -> Result<(Arc<Spool>, SpoolReader), SpoolError> {
    create_private_dir(dir).map_err(SpoolError::io("cannot create", dir))?;
    let mut segments = list_segments(dir)?;
    make_private(dir, &segments)?;
    let mut cursor = read_cursor(dir);
    if segments.last().is_some_and(|&last| last > RENUMBER_ABOVE) {
        (segments, cursor) = renumber(dir, &segments, cursor)?;
    }
    let start = checked_cursor(dir, &segments, cursor)?;
    for &uploaded in segments.iter().filter(|s| **s < start.segment) {
        let path = segment_path(dir, uploaded);
        fs::remove_file(&path).map_err(SpoolError::io("cannot delete", &path))?;
    }
    segments.retain(|s| *s >= start.segment);
    if let Some(&last) = segments.last() {
        cut_torn_tail(dir, last)?;
    }

    let (mut bytes, mut depth, mut damaged) = (0, 0, 0);
    for &segment in &segments {
        let path = segment_path(dir, segment);
        let data = fs::read(&path).map_err(SpoolError::io("cannot read", &path))?;
        bytes += data.len() as u64;
        let from = if segment == start.segment {
            start.offset as usize
        } else {
            0
        };
        let (records, skipped) = scan::count(&data[from.min(data.len())..]);
        depth += records;
        damaged += skipped;
    }
    if damaged > 0 {
        tracing::warn!(spool = %dir.display(), damaged_stretches = damaged, records_kept = depth,
            "spool: damaged records found; they will be skipped and the records around them uploaded");
    }

    let segment_bytes = (max_bytes / 16).clamp(4 << 10, 8 << 20);
    let (segment, len) = match segments.last() {
        Some(&last) => {
            let len = fs::metadata(segment_path(dir, last))
                .map(|m| m.len())
                .unwrap_or(0);
            if len < segment_bytes {
                (last, len)
            } else {
                (last + 1, 0)
            }
        }
        None => (start.segment, 0),
    };
    let path = segment_path(dir, segment);
    let file = open_for_append(&path).map_err(SpoolError::io("cannot open", &path))?;
    let mut on_disk: BTreeSet<u64> = segments.iter().copied().collect();
    on_disk.insert(segment);
    let spool = Arc::new(Spool {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        writer: Mutex::new(Writer {
            segment,
            file,
            len,
            unsynced: Vec::new(),
            dirty: false,
            dir_dirty: true,
        }),
        active: Mutex::new(Position {
            segment,
            offset: len,
        }),
        segments: Mutex::new(on_disk),
        bytes: AtomicU64::new(bytes),
        depth: AtomicU64::new(depth),
        refused: AtomicU64::new(0),
        damaged: AtomicU64::new(0),
        appended: Notify::new(),
    });
    let reader = SpoolReader::new(spool.clone(), start);
    Ok((spool, reader))
}

/// Where reading starts: the saved cursor when it names a place in the segments present,
/// else the oldest segment's start.
fn checked_cursor(
    dir: &Path,
    segments: &[u64],
    cursor: Option<Position>,
) -> Result<Position, SpoolError> {
    let oldest = Position {
        segment: segments.first().copied().unwrap_or(1),
        offset: 0,
    };
    let Some(cursor) = cursor else {
        return Ok(oldest);
    };
    if segments.is_empty() {
        // Nothing left to read: go on numbering where the cursor was.
        return Ok(Position {
            segment: cursor.segment.clamp(1, RENUMBER_ABOVE),
            offset: 0,
        });
    }
    let distrust = |why: &str| {
        tracing::warn!(spool = %dir.display(), cursor_segment = cursor.segment, cursor_offset = cursor.offset,
            segments = segments.len(), "spool: the cursor {why}; replaying every segment, deleting none");
        Ok(oldest)
    };
    if !segments.contains(&cursor.segment) {
        return distrust("names a segment that is not in the spool");
    }
    let path = segment_path(dir, cursor.segment);
    let data = fs::read(&path).map_err(SpoolError::io("cannot read", &path))?;
    if cursor.offset > data.len() as u64 {
        return distrust("points past the end of its segment");
    }
    if !is_record_boundary(&data, cursor.offset as usize) {
        return distrust("points inside a record");
    }
    Ok(cursor)
}

/// Whether a record starts at `offset` of `data` (or it is its end).
fn is_record_boundary(data: &[u8], offset: usize) -> bool {
    let mut at = 0;
    while at < offset {
        match scan::step(data, at) {
            scan::Step::Record { next, .. } | scan::Step::Damaged { next } => at = next,
            scan::Step::End => break,
        }
    }
    at == offset
}

/// Renames the segments to 1, 2, … in order, and moves the cursor with them.
fn renumber(
    dir: &Path,
    segments: &[u64],
    cursor: Option<Position>,
) -> Result<(Vec<u64>, Option<Position>), SpoolError> {
    tracing::warn!(spool = %dir.display(), highest = segments.last().copied().unwrap_or(0),
        "spool: segment numbers near the end of their range; renumbering the segments from 1");
    let mut renumbered = Vec::with_capacity(segments.len());
    let mut moved_cursor = None;
    // Ascending, each to a number no larger than its own: no rename lands on a file
    // not yet renamed.
    for (i, &old) in segments.iter().enumerate() {
        let new = i as u64 + 1;
        if new != old {
            let from = segment_path(dir, old);
            fs::rename(&from, segment_path(dir, new))
                .map_err(SpoolError::io("cannot renumber", &from))?;
        }
        if let Some(c) = cursor.filter(|c| c.segment == old) {
            moved_cursor = Some(Position {
                segment: new,
                offset: c.offset,
            });
        }
        renumbered.push(new);
    }
    match moved_cursor {
        Some(c) => write_cursor(dir, c)?,
        // A cursor that named no segment here means nothing now: everything is replayed.
        None => {
            let path = dir.join(CURSOR);
            if path.exists() {
                fs::remove_file(&path).map_err(SpoolError::io("cannot delete", &path))?;
            }
        }
    }
    Ok((renumbered, moved_cursor))
}

/// Truncates `segment` after its last whole record, logging what was cut.
fn cut_torn_tail(dir: &Path, segment: u64) -> Result<(), SpoolError> {
    let path = segment_path(dir, segment);
    let data = fs::read(&path).map_err(SpoolError::io("cannot read", &path))?;
    let end = scan::end_of_records(&data);
    if end == data.len() {
        return Ok(());
    }
    tracing::warn!(segment = %path.display(), offset = end, bytes = data.len() - end,
        "spool: cutting off an incomplete record left by a crash");
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(SpoolError::io("cannot open", &path))?;
    file.set_len(end as u64)
        .and_then(|()| file.sync_all())
        .map_err(SpoolError::io("cannot truncate", &path))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Mode 0700 for the directory and 0600 for every file the spool keeps there, whatever
/// they were: a directory that existed before keeps its mode when it is "created".
fn make_private(dir: &Path, segments: &[u64]) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: &Path, mode: u32| -> Result<(), SpoolError> {
            let current = fs::metadata(path)
                .map_err(SpoolError::io("cannot read the mode of", path))?
                .permissions()
                .mode();
            if current & 0o777 != mode {
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(SpoolError::io("cannot make private", path))?;
            }
            Ok(())
        };
        set(dir, 0o700)?;
        for &segment in segments {
            set(&segment_path(dir, segment), 0o600)?;
        }
        for name in [CURSOR, crate::supabase::dead_letter::FILE_NAME] {
            let path = dir.join(name);
            if path.exists() {
                set(&path, 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, segments);
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(SpoolError::io("cannot list", dir))? {
        let entry = entry.map_err(SpoolError::io("cannot list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".spool"))
        else {
            continue;
        };
        match digits.parse::<u64>() {
            Ok(n) if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) => {
                segments.push(n)
            }
            _ => tracing::warn!(file = %dir.join(name).display(),
                "spool: a file named like a segment whose number is not 20 digits within range; left alone, not read"),
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// The saved cursor; a missing or unreadable one means "from the oldest segment" (a
/// replay, which the idempotency keys make harmless).
fn read_cursor(dir: &Path) -> Option<Position> {
    let path = dir.join(CURSOR);
    let text = fs::read_to_string(&path).ok()?;
    let parsed = text
        .strip_prefix(CURSOR_TAG)
        .map(|rest| rest.split_whitespace().collect::<Vec<_>>())
        .and_then(|parts| match parts.as_slice() {
            [segment, offset] => Some(Position {
                segment: segment.parse().ok()?,
                offset: offset.parse().ok()?,
            }),
            _ => None,
        });
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "spool: unreadable cursor; replaying from the oldest segment");
    }
    parsed
}

/// Replaces the cursor file atomically (write a temporary file, rename it over).
pub(super) fn write_cursor(dir: &Path, at: Position) -> Result<(), SpoolError> {
    let tmp = dir.join("cursor.tmp");
    let path = dir.join(CURSOR);
    let text = format!("{CURSOR_TAG} {} {}\n", at.segment, at.offset);
    // A temporary file left by a crash may have any mode: start afresh.
    let _ = fs::remove_file(&tmp);
    let mut options = fs::File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(SpoolError::io("cannot write", &path))
}
