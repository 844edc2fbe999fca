//! The spool's own thread: the only one that writes segment files. The request path
//! hands it a framed record through a bounded queue and waits for the acknowledgement
//! that comes after the record's `write` — but at most `EXAI_SPOOL_WRITE_TIMEOUT_MS`: a
//! disk that stalls then costs a chat that long, once, and never an async worker. A
//! record whose write outlasts the wait stays queued and is written when the disk
//! answers; the chat says so, and it is counted.
//!
//! The thread also syncs the spool to disk every [`SYNC_EVERY`], and once more when it
//! stops, after writing everything queued.

use super::{Spool, SpoolError};
use exai_process::throttle::Throttle;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How often appended records are synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Records that may wait for the thread.
const QUEUE_RECORDS: usize = 4096;
/// Bytes of records that may wait for the thread.
const QUEUE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Longest a chat waits for its record's `write` (EXAI_SPOOL_WRITE_TIMEOUT_MS).
    pub write_timeout: Duration,
    /// Test hook (EXAI_SPOOL_TEST_HOLD_FILE): while this file exists the thread writes
    /// nothing, as if the disk stalled.
    pub hold_while: Option<PathBuf>,
}

/// What became of a record handed to the writer.
#[derive(Debug)]
pub enum Appended {
    /// In the kernel: it survives the daemon being killed.
    Written,
    /// Queued, not yet written: the disk did not answer in time. Written when it does.
    Queued,
    /// Not kept: the spool is full, closed or failing.
    Refused(SpoolError),
}

enum Job {
    Append {
        buf: Vec<u8>,
        done: oneshot::Sender<Result<(), SpoolError>>,
    },
    /// Write what is queued, sync, and end.
    Stop,
}

/// The request path's handle on the writer thread.
pub struct SpoolWriter {
    spool: Arc<Spool>,
    jobs: SyncSender<Job>,
    options: WriterOptions,
    /// Records queued and not yet written, and their bytes.
    queued: Arc<Queued>,
    /// Records whose write outlasted the wait, since start.
    write_timeouts: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Queued {
    records: AtomicU64,
    bytes: AtomicU64,
}

impl SpoolWriter {
    /// Starts the writer thread for `spool`.
    pub fn start(spool: Arc<Spool>, options: WriterOptions) -> Result<Self, SpoolError> {
        let (jobs, inbox) = mpsc::sync_channel(QUEUE_RECORDS);
        let queued = Arc::new(Queued::default());
        let thread = {
            let (spool, queued) = (spool.clone(), queued.clone());
            let hold = options.hold_while.clone();
            std::thread::Builder::new()
                .name("exai-spool-writer".into())
                .spawn(move || run(spool, inbox, queued, hold))
        }
        .map_err(SpoolError::io(
            "cannot start the writer thread of",
            &spool.dir,
        ))?;
        Ok(Self {
            spool,
            jobs,
            options,
            queued,
            write_timeouts: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Hands `buf` (a record framed as [`Spool::append`] wants it) to the thread and waits
    /// for its write, at most the write timeout. Never blocks the async worker.
    pub async fn append(&self, buf: Vec<u8>) -> Appended {
        let n = buf.len() as u64;
        let (records, bytes) = (
            self.queued.records.load(Relaxed),
            self.queued.bytes.load(Relaxed),
        );
        if bytes + n > QUEUE_BYTES && records > 0 {
            self.spool.refused.fetch_add(1, Relaxed);
            return Appended::Refused(SpoolError::Backlog { records, bytes });
        }
        let (done, written) = oneshot::channel();
        self.queued.records.fetch_add(1, Relaxed);
        self.queued.bytes.fetch_add(n, Relaxed);
        if let Err(e) = self.jobs.try_send(Job::Append { buf, done }) {
            self.queued.records.fetch_sub(1, Relaxed);
            self.queued.bytes.fetch_sub(n, Relaxed);
            self.spool.refused.fetch_add(1, Relaxed);
            return Appended::Refused(match e {
                TrySendError::Full(_) => SpoolError::Backlog { records, bytes },
                TrySendError::Disconnected(_) => SpoolError::Closed,
            });
        }
        match tokio::time::timeout(self.options.write_timeout, written).await {
            Ok(Ok(Ok(()))) => Appended::Written,
            Ok(Ok(Err(e))) => Appended::Refused(e),
            Ok(Err(_)) => Appended::Refused(SpoolError::Closed),
            Err(_) => {
                self.write_timeouts.fetch_add(1, Relaxed);
                Appended::Queued
            }
        }
    }

    pub fn write_timeout(&self) -> Duration {
        self.options.write_timeout
    }

    /// Records whose write outlasted `EXAI_SPOOL_WRITE_TIMEOUT_MS` since start: their
    /// chats answered before the turn was on disk.
    pub fn write_timeouts(&self) -> u64 {
        self.write_timeouts.load(Relaxed)
    }

    /// Records waiting for the thread now.
    pub fn queued(&self) -> u64 {
        self.queued.records.load(Relaxed)
    }

    /// Writes what is queued, syncs, and stops the thread, waiting at most `limit` (a disk
    /// that does not answer is not waited for forever). `false` when it did not finish.
    pub async fn close(&self, limit: Duration) -> bool {
        let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return true;
        };
        // A full queue is drained by the thread; the stop waits its turn off the workers.
        let jobs = self.jobs.clone();
        let finished = tokio::task::spawn_blocking(move || {
            let _ = jobs.send(Job::Stop);
            thread.join().is_ok()
        });
        match tokio::time::timeout(limit, finished).await {
            Ok(Ok(true)) => true,
            _ => {
                tracing::error!(queued = self.queued(), ?limit,
                    "the Supabase spool's disk did not take the last turns before shutdown; they are lost");
                false
            }
        }
    }
}

fn run(spool: Arc<Spool>, inbox: mpsc::Receiver<Job>, queued: Arc<Queued>, hold: Option<PathBuf>) {
    let mut synced_at = Instant::now();
    let mut dirty = false;
    let mut sync_failures = Throttle::new(Duration::from_secs(60));
    let mut sync = |dirty: &mut bool, synced_at: &mut Instant| {
        if let Err(e) = spool.sync() {
            if let Some(failures) = sync_failures.due() {
                tracing::error!(error = %e, failures, "cannot sync the Supabase spool to disk");
            }
        }
        *dirty = false;
        *synced_at = Instant::now();
    };
    loop {
        let wait = if dirty {
            SYNC_EVERY.saturating_sub(synced_at.elapsed())
        } else {
            Duration::from_secs(3600)
        };
        match inbox.recv_timeout(wait) {
            Ok(Job::Append { mut buf, done }) => {
                hold_while(hold.as_deref());
                let result = spool.append(&mut buf);
                dirty |= result.is_ok();
                queued.records.fetch_sub(1, Relaxed);
                queued.bytes.fetch_sub(buf.len() as u64, Relaxed);
                let _ = done.send(result);
            }
            Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => {
                // Whatever was queued before the stop is written first.
                while let Ok(Job::Append { mut buf, done }) = inbox.try_recv() {
                    hold_while(hold.as_deref());
                    let result = spool.append(&mut buf);
                    queued.records.fetch_sub(1, Relaxed);
                    queued.bytes.fetch_sub(buf.len() as u64, Relaxed);
                    let _ = done.send(result);
                }
                sync(&mut dirty, &mut synced_at);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if dirty && synced_at.elapsed() >= SYNC_EVERY {
            sync(&mut dirty, &mut synced_at);
        }
    }
}

/// The test hook: waits while `path` exists.
fn hold_while(path: Option<&std::path::Path>) {
    let Some(path) = path else { return };
    while path.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supabase::frame::HEADER;

    fn framed(text: &str) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER];
        buf.extend_from_slice(text.as_bytes());
        buf
    }

    #[tokio::test]
    async fn a_held_disk_costs_the_timeout_once_and_the_record_is_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let hold = dir.path().join("hold");
        let (spool, mut reader) = Spool::open(&dir.path().join("spool"), 1 << 20).unwrap();
        let writer = SpoolWriter::start(
            spool.clone(),
            WriterOptions {
                write_timeout: Duration::from_millis(50),
                hold_while: Some(hold.clone()),
            },
        )
        .unwrap();
        assert!(matches!(
            writer.append(framed("1\na")).await,
            Appended::Written
        ));
        std::fs::write(&hold, "").unwrap();
        assert!(matches!(
            writer.append(framed("1\nb")).await,
            Appended::Queued
        ));
        assert_eq!(writer.write_timeouts(), 1);
        assert_eq!(writer.queued(), 1);
        std::fs::remove_file(&hold).unwrap();
        assert!(writer.close(Duration::from_secs(10)).await);
        assert_eq!(writer.queued(), 0);
        let batch = reader.read(10, usize::MAX).unwrap();
        assert_eq!(batch.payloads, [b"1\na".to_vec(), b"1\nb".to_vec()]);
        assert!(matches!(
            writer.append(framed("1\nc")).await,
            Appended::Refused(SpoolError::Closed)
        ));
    }
}
