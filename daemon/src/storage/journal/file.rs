//! The journal's files. Blocking: only the blocking pool and start-up call these.
//!
//! Each kept turn is one file, `turn-<20-digit sequence number>.turn`, holding a first
//! line `exai-journal v1 <CRC-32 of the rest, 8 hex digits>` and then the JSON of a
//! [`Record`]. One file per turn makes removing a replayed turn one `unlink`, and its
//! checksum makes a file the disk damaged (or a power loss left empty or half written)
//! a skipped record instead of a wrong turn.

use super::JournalError;
use crate::storage::Turn;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const TAG: &str = "exai-journal v1 ";
const PREFIX: &str = "turn-";
const SUFFIX: &str = ".turn";
const TEMPORARY: &str = ".tmp";
const LOCK: &str = "lock";

/// One kept turn and the conversation it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub conversation: String,
    pub turn: Turn,
}

/// The file's whole content for `record`.
pub fn encode(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(record)?;
    let mut out = Vec::with_capacity(TAG.len() + 9 + json.len());
    out.extend_from_slice(TAG.as_bytes());
    out.extend_from_slice(format!("{:08x}\n", crc32fast::hash(&json)).as_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// The record in `bytes`, or why it cannot be trusted.
pub fn decode(bytes: &[u8]) -> Result<Record, String> {
    let rest = bytes
        .strip_prefix(TAG.as_bytes())
        .ok_or("it does not start with the journal's tag")?;
    let (crc, json) = rest
        .split_at_checked(9)
        .filter(|(crc, _)| crc.ends_with(b"\n"))
        .ok_or("its checksum line is cut short")?;
    let crc = std::str::from_utf8(&crc[..8])
        .ok()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("its checksum is not 8 hex digits")?;
    if crc32fast::hash(json) != crc {
        return Err("its checksum does not match".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("it is not a turn: {e}"))
}

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:020}{SUFFIX}"))
}

/// Creates `dir` (0700) if needed and takes its lock, held for as long as the returned
/// file is open: two daemons numbering turns in one directory would overwrite each
/// other's.
pub fn claim(dir: &Path) -> Result<File, JournalError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(JournalError::io("cannot create", dir))?;
    make_private(dir, 0o700)?;
    let path = dir.join(LOCK);
    let mut options = File::options();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options
        .open(&path)
        .map_err(JournalError::io("cannot open", &path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(JournalError::InUse(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(JournalError::io("cannot lock", &path)(e)),
    }
}

/// The records in `dir` by sequence number, oldest first. Temporary files a crash left
/// (a turn whose write never finished, so no chat was told it was kept) are deleted.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(JournalError::io("cannot list", dir))? {
        let entry = entry.map_err(JournalError::io("cannot list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(PREFIX) && name.ends_with(TEMPORARY) {
            tracing::warn!(file = %entry.path().display(),
                "storage journal: deleting a turn whose write a crash interrupted");
            let _ = fs::remove_file(entry.path());
            continue;
        }
        let Some(digits) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
        else {
            continue;
        };
        match digits.parse::<u64>() {
            Ok(seq) if digits.len() == 20 => found.push((seq, entry.path())),
            _ => tracing::warn!(file = %entry.path().display(),
                "storage journal: a file named like a turn without a 20-digit number; left alone"),
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Reads the record at `path`: its bytes on disk and the record, or why it is damaged.
/// A file larger than `max_bytes` is not read (no turn the journal wrote is).
pub fn read(path: &Path, max_bytes: u64) -> (u64, Result<Record, String>) {
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > max_bytes {
        return (
            size,
            Err(format!("it is {size} bytes, more than the whole journal")),
        );
    }
    match fs::read(path) {
        Ok(bytes) => (bytes.len() as u64, decode(&bytes)),
        Err(e) => (size, Err(format!("it cannot be read: {e}"))),
    }
}

/// Writes `content` as record `seq`: to a temporary file, then renamed into place, so a
/// reader never sees a record half written. Not synced here: see [`sync`].
pub fn write(dir: &Path, seq: u64, content: &[u8]) -> Result<(), JournalError> {
    let path = path(dir, seq);
    let tmp = dir.join(format!("{PREFIX}{seq:020}{SUFFIX}{TEMPORARY}"));
    let mut options = File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut file| file.write_all(content))
        .and_then(|()| fs::rename(&tmp, &path));
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        JournalError::io("cannot write", &path)(e)
    })
}

/// Flushes records `seqs` (those still there) and the directory to the disk.
pub fn sync(dir: &Path, seqs: &[u64]) -> io::Result<()> {
    for &seq in seqs {
        match File::open(path(dir, seq)) {
            Ok(file) => file.sync_data()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    File::open(dir)?.sync_all()
}

/// Deletes record `seq`; one already gone is not an error.
pub fn remove(dir: &Path, seq: u64) -> io::Result<()> {
    match fs::remove_file(path(dir, seq)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Mode `mode` for `path`, whatever it was: a directory that existed keeps its mode when
/// it is "created".
fn make_private(path: &Path, mode: u32) -> Result<(), JournalError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = fs::metadata(path)
            .map_err(JournalError::io("cannot read the mode of", path))?
            .permissions()
            .mode();
        if current & 0o777 != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(JournalError::io("cannot make private", path))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
