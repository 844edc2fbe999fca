//! Records Supabase refuses for their data are set aside here, so that the records
//! after them flow on: `dead-letter.jsonl` in the spool directory (mode 0600), one JSON
//! object a line:
//!
//! ```json
//! {"at_unix_ms":1732480000000,"refusal":"HTTP 400: {\"code\":\"22P05\",…}","record":"1\n\"id\"\n{…}\n{…},{…}"}
//! ```
//!
//! `record` is the spool record as it was (see [`super::record`]): an operator can fix
//! and replay it by hand. Each line is synced to disk before the spool's cursor moves past
//! its record, so a crash never loses a record from both places.

use super::spool::SpoolError;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The file's name in the spool directory.
pub const FILE_NAME: &str = "dead-letter.jsonl";

pub struct DeadLetters {
    path: PathBuf,
    /// Records set aside since start.
    count: AtomicU64,
}

/// One record Supabase refused, and why.
pub struct Refused<'a> {
    pub record: &'a [u8],
    pub refusal: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    at_unix_ms: u64,
    refusal: &'a str,
    record: std::borrow::Cow<'a, str>,
}

impl DeadLetters {
    pub fn new(spool_dir: &Path) -> Self {
        Self {
            path: spool_dir.join(FILE_NAME),
            count: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records set aside since start.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Appends `refused` and syncs the file. Blocking: run it off the async workers.
    pub fn set_aside(&self, refused: &[Refused<'_>]) -> Result<(), SpoolError> {
        let at_unix_ms = crate::clock::now_unix_us() / 1000;
        let mut text = Vec::new();
        for r in refused {
            let line = Line {
                at_unix_ms,
                refusal: r.refusal,
                record: String::from_utf8_lossy(r.record),
            };
            serde_json::to_writer(&mut text, &line).map_err(|e| SpoolError::Io {
                what: "cannot encode a dead letter for",
                path: self.path.clone(),
                source: e.into(),
            })?;
            text.push(b'\n');
        }
        let mut file =
            open_private_append(&self.path).map_err(SpoolError::io("cannot open", &self.path))?;
        file.write_all(&text)
            .and_then(|()| file.sync_data())
            .map_err(SpoolError::io("cannot write", &self.path))?;
        self.count.fetch_add(refused.len() as u64, Relaxed);
        Ok(())
    }
}

fn open_private_append(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_records_are_kept_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetters::new(dir.path());
        dead.set_aside(&[Refused {
            record: b"1\n\"a\\u0000\"\n{}\n{}",
            refusal: "HTTP 400: nul",
        }])
        .unwrap();
        dead.set_aside(&[Refused {
            record: b"second",
            refusal: "HTTP 409: fk",
        }])
        .unwrap();
        assert_eq!(dead.count(), 2);
        let text = std::fs::read_to_string(dead.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["record"], "1\n\"a\\u0000\"\n{}\n{}");
        assert_eq!(lines[1]["refusal"], "HTTP 409: fk");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dead.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
