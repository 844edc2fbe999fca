//! Opening a spool after a clean stop or a crash, and the cursor file.

use super::reader::SpoolReader;
use super::{open_for_append, segment_path, Position, Spool, SpoolError, Writer};
use crate::supabase::frame::{self, Decoded};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

const CURSOR: &str = "cursor";
const CURSOR_TAG: &str = "exai-spool-cursor v1";

/// Opens the spool in `dir`:
/// 1. segments wholly before the cursor (uploaded, not yet deleted) are deleted;
/// 2. the newest segment is checked record by record, and a torn or damaged record at
///    its end (a crash mid-write) is cut off, so appends continue after whole records;
/// 3. the records from the cursor on are counted: the spool's depth.
pub fn open(dir: &Path, max_bytes: u64) -> Result<(Arc<Spool>, SpoolReader), SpoolError> {
    create_private_dir(dir).map_err(SpoolError::io("cannot create", dir))?;
    let mut segments = list_segments(dir)?;
    make_private(dir, &segments)?;
    let mut cursor = read_cursor(dir).unwrap_or(Position {
        segment: segments.first().copied().unwrap_or(1),
        offset: 0,
    });
    for &old in segments.iter().filter(|s| **s < cursor.segment) {
        let path = segment_path(dir, old);
        fs::remove_file(&path).map_err(SpoolError::io("cannot delete", &path))?;
    }
    segments.retain(|s| *s >= cursor.segment);
    if segments
        .first()
        .is_some_and(|first| *first > cursor.segment)
    {
        // The cursor's segment is gone: carry on from the next one there is.
        cursor = Position {
            segment: segments[0],
            offset: 0,
        };
    }
    if let Some(&last) = segments.last() {
        cut_torn_tail(dir, last)?;
    }

    let mut bytes = 0;
    let mut depth = 0;
    for &segment in &segments {
        let path = segment_path(dir, segment);
        let data = fs::read(&path).map_err(SpoolError::io("cannot read", &path))?;
        bytes += data.len() as u64;
        if segment == cursor.segment {
            cursor.offset = cursor.offset.min(data.len() as u64);
        }
        let from = if segment == cursor.segment {
            cursor.offset as usize
        } else {
            0
        };
        depth += count_records(&data[from..]);
    }
    if segments.is_empty() {
        cursor.offset = 0;
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
        None => (cursor.segment.max(1), 0),
    };
    let path = segment_path(dir, segment);
    let file = open_for_append(&path).map_err(SpoolError::io("cannot open", &path))?;
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
        bytes: AtomicU64::new(bytes),
        depth: AtomicU64::new(depth),
        refused: AtomicU64::new(0),
        appended: Notify::new(),
    });
    let reader = SpoolReader::new(spool.clone(), cursor);
    Ok((spool, reader))
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
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".spool"))
            .and_then(|n| n.parse().ok())
        {
            segments.push(n);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Whole records at the start of `data`.
fn count_records(mut data: &[u8]) -> u64 {
    let mut n = 0;
    while let Decoded::Record { len, .. } = frame::decode(data) {
        data = &data[len..];
        n += 1;
    }
    n
}

/// Truncates `segment` after its last whole record, logging what was cut.
fn cut_torn_tail(dir: &Path, segment: u64) -> Result<(), SpoolError> {
    let path = segment_path(dir, segment);
    let data = fs::read(&path).map_err(SpoolError::io("cannot read", &path))?;
    let mut at = 0;
    loop {
        match frame::decode(&data[at..]) {
            Decoded::Record { len, .. } => at += len,
            Decoded::End => return Ok(()),
            found @ (Decoded::Torn | Decoded::Corrupt) => {
                tracing::warn!(segment = %path.display(), offset = at, bytes = data.len() - at,
                    kind = if found == Decoded::Torn { "torn" } else { "damaged" },
                    "spool: cutting off an incomplete record left by a crash");
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(SpoolError::io("cannot open", &path))?;
                file.set_len(at as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(SpoolError::io("cannot truncate", &path))?;
                return Ok(());
            }
        }
    }
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
