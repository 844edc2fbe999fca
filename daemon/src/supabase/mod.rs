//! Supabase persistence (on when `SUPABASE_URL` and `SUPABASE_SERVICE_ROLE_KEY` are set):
//! every chat turn is appended to a durable spool before the chat answers (by the spool's
//! own thread, waited for at most `EXAI_SPOOL_WRITE_TIMEOUT_MS`), and a background task
//! uploads the spool through PostgREST. An outage neither slows the chat nor loses a
//! turn; the spool replays after a restart. Schema: `compose/supabase/schema.sql`.

pub mod dead_letter;
pub mod frame;
pub mod postgrest;
pub mod record;
pub mod spool;
pub mod uploader;

use crate::config::SupabaseConfig;
use crate::storage::Turn;
use crate::EventEmitter;
use dead_letter::DeadLetters;
use exai_proto::{SupabaseResult, SupabaseView};
use postgrest::{Failure, PostgrestClient};
use record::TurnRecord;
use spool::{Appended, Spool, SpoolError, SpoolStats, SpoolWriter, WriterOptions};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uploader::Uploader;

/// While the spool refuses records, the error is logged at most this often.
const REFUSAL_LOG_EVERY_S: u64 = 10;

/// The request path's handle: [`Persistence::record_turn`] appends; the rest runs in the
/// background.
pub struct Persistence {
    spool: Arc<Spool>,
    /// The spool's writer thread: the only writer of its files.
    writer: SpoolWriter,
    emitter: EventEmitter,
    uploads: Arc<UploadState>,
    /// Records Supabase refused for their data, set aside so the rest flow on.
    dead_letters: Arc<DeadLetters>,
    /// Seconds since start before which no refusal is logged again.
    next_refusal_log: AtomicU64,
    /// Refusals not yet reported in a log line.
    refusals_unlogged: AtomicU64,
    /// Seconds since start before which no late write is logged again.
    next_late_log: AtomicU64,
    started: std::time::Instant,
}

/// What `status` and the heartbeat show about uploads.
#[derive(Debug, Default)]
pub struct UploadState {
    /// Records Supabase acknowledged since start.
    uploaded: AtomicU64,
    /// The failure that pauses uploads now, if any.
    failing: Mutex<Option<String>>,
    /// The last request's outcome, its HTTP status (0: none) and when, for the heartbeat.
    last: Mutex<Option<(SupabaseResult, u16, std::time::Instant)>>,
}

impl UploadState {
    fn resumed(&self, records: u64) {
        self.uploaded.fetch_add(records, Relaxed);
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// One request to Supabase got this answer.
    fn answered(&self, answer: &postgrest::Answer) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((answer.result, answer.status, std::time::Instant::now()));
    }

    fn failed(&self, failure: &Failure) {
        let text = match failure {
            Failure::Auth(why) => format!("service role key rejected ({why}); uploads paused"),
            Failure::Refused(why) | Failure::RowsRefused(why) => {
                format!("rows refused ({why}); uploads paused")
            }
            Failure::Transient { why, .. } => format!("{why}; retrying"),
        };
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }
}

/// Persistence as `status` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistenceStatus {
    pub spool: SpoolStats,
    pub uploaded: u64,
    pub failing: Option<String>,
    /// Records set aside in the dead-letter file since start.
    pub dead_lettered: u64,
    /// Turns whose spool write outlasted EXAI_SPOOL_WRITE_TIMEOUT_MS since start.
    pub write_timeouts: u64,
    /// Turns waiting for the spool's writer now.
    pub queued: u64,
}

impl Persistence {
    /// Opens the spool (recovering from a crash), starts its writer thread, and starts
    /// the uploader on `tasks`, which stops at `cancel`; [`Persistence::close`] then
    /// writes what is queued and syncs.
    pub fn start(
        config: &SupabaseConfig,
        http: reqwest::Client,
        emitter: EventEmitter,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, SpoolError> {
        let (spool, mut reader) = Spool::open(&config.spool_dir, config.spool_max_bytes)?;
        reader.observe(cancel.clone());
        let depth = spool.depth();
        emitter.totals().spool_depth.store(depth, Relaxed);
        tracing::info!(url = %crate::redact::redact_url(&config.url), spool = %config.spool_dir.display(), records_waiting = depth,
            max_bytes = config.spool_max_bytes, "Supabase persistence on");
        let uploads = Arc::new(UploadState::default());
        let dead_letters = Arc::new(DeadLetters::new(&config.spool_dir));
        let client = PostgrestClient::new(
            http,
            &config.url,
            config.service_role_key.clone(),
            config.request_timeout,
        );
        let uploader = Uploader {
            reader,
            client,
            emitter: emitter.clone(),
            state: uploads.clone(),
            dead_letters: dead_letters.clone(),
            batch_records: config.batch_records,
            pause_after_refusal: config.auth_retry,
        };
        let writer = SpoolWriter::start(
            spool.clone(),
            WriterOptions {
                write_timeout: config.write_timeout,
                hold_while: config.test_hold_file.clone(),
            },
        )?;
        tasks.spawn(uploader.run(cancel));
        Ok(Arc::new(Self {
            spool,
            writer,
            emitter,
            uploads,
            dead_letters,
            next_refusal_log: AtomicU64::new(0),
            refusals_unlogged: AtomicU64::new(0),
            next_late_log: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }))
    }

    /// Appends one answered turn to the spool: one `write` by the spool's thread, no
    /// waiting on the network, and no waiting on the disk past the write timeout. A
    /// refusal (spool full, disk error) or a late write is logged, at most every 10 s, and
    /// counted; the chat answers all the same, and says what became of its turn.
    pub async fn record_turn(
        &self,
        conversation_id: &str,
        turn: &Turn,
        input_tokens: u64,
        output_tokens: u64,
        correlation_id: &str,
    ) -> Persisted {
        let (user_id, assistant_id) = (new_id(), new_id());
        let record = TurnRecord {
            conversation_id,
            model: &turn.model,
            user_message_id: &user_id,
            assistant_message_id: &assistant_id,
            user: &turn.user,
            assistant: &turn.assistant,
            input_tokens,
            output_tokens,
            correlation_id,
            at_unix_ms: turn.at_unix_ms,
        };
        let mut buf = Vec::with_capacity(
            frame::HEADER
                + 512
                + turn.user.len()
                + turn.assistant.len()
                + 3 * conversation_id.len(),
        );
        buf.resize(frame::HEADER, 0);
        let appended = match record.encode(&mut buf) {
            Ok(()) => self.writer.append(buf).await,
            Err(e) => Appended::Refused(SpoolError::Io {
                what: "cannot encode a record for",
                path: self.spool.dir().to_path_buf(),
                source: e.into(),
            }),
        };
        self.emitter
            .totals()
            .spool_depth
            .store(self.spool.depth(), Relaxed);
        match appended {
            Appended::Written => Persisted::Written,
            Appended::Queued => {
                self.late();
                Persisted::Queued {
                    waited: self.writer.write_timeout(),
                }
            }
            Appended::Refused(e) => {
                self.refused(&e);
                Persisted::Refused(e.to_string())
            }
        }
    }

    #[cold]
    fn late(&self) {
        let now = self.started.elapsed().as_secs();
        let next = self.next_late_log.load(Relaxed);
        if now >= next
            && self
                .next_late_log
                .compare_exchange(next, now + REFUSAL_LOG_EVERY_S, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(timeout_ms = self.writer.write_timeout().as_millis() as u64,
                late_turns = self.writer.write_timeouts(), queued = self.writer.queued(),
                "the Supabase spool's disk did not take a chat turn within EXAI_SPOOL_WRITE_TIMEOUT_MS; the chat answered, the turn stays queued and is written when the disk answers");
        }
    }

    /// Writes the turns still queued for the spool and syncs it, waiting at most `limit`.
    pub async fn close(&self, limit: Duration) {
        self.writer.close(limit).await;
    }

    /// Turns whose spool write outlasted `EXAI_SPOOL_WRITE_TIMEOUT_MS` since start (for
    /// the heartbeat).
    pub fn spool_write_timeouts(&self) -> u64 {
        self.writer.write_timeouts()
    }

    /// Turns waiting for the spool's writer thread now (for the heartbeat).
    pub fn spool_queued(&self) -> u64 {
        self.writer.queued()
    }

    /// Turns refused by the spool since start: full, too large, disk error, writer
    /// backlog (for the heartbeat).
    pub fn spool_refused(&self) -> u64 {
        self.spool.refused()
    }

    /// Damaged or torn stretches of the spool skipped since start (for the heartbeat).
    pub fn spool_damaged(&self) -> u64 {
        self.spool.damaged()
    }

    #[cold]
    fn refused(&self, e: &SpoolError) {
        let now = self.started.elapsed().as_secs();
        let next = self.next_refusal_log.load(Relaxed);
        let unlogged = self.refusals_unlogged.fetch_add(1, Relaxed) + 1;
        if now >= next
            && self
                .next_refusal_log
                .compare_exchange(next, now + REFUSAL_LOG_EVERY_S, Relaxed, Relaxed)
                .is_ok()
        {
            self.refusals_unlogged.fetch_sub(unlogged, Relaxed);
            tracing::error!(error = %e, refused_turns = unlogged, total_refused = self.spool.stats().refused,
                "Supabase spool refused a chat turn: it will not reach Supabase (the chat was answered)");
        }
    }

    /// Persistence as the heartbeat reports it.
    pub fn view(&self) -> SupabaseView {
        let spool = self.spool.stats();
        let last = *self.uploads.last.lock().unwrap_or_else(|e| e.into_inner());
        SupabaseView {
            enabled: true,
            last_upload: last.map(|(result, _, _)| result),
            last_http_status: last.map_or(0, |(_, status, _)| status),
            last_upload_ms_ago: last.map_or(u64::MAX, |(_, _, at)| at.elapsed().as_millis() as u64),
            spool_depth: spool.depth,
            spool_bytes: spool.bytes,
            refused_turns: self.spool_refused(),
            write_timeouts: self.spool_write_timeouts(),
            dead_letters: self.dead_lettered(),
            damaged_records: self.spool_damaged(),
        }
    }

    pub fn status(&self) -> PersistenceStatus {
        PersistenceStatus {
            spool: self.spool.stats(),
            uploaded: self.uploads.uploaded.load(Relaxed),
            failing: self
                .uploads
                .failing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            dead_lettered: self.dead_letters.count(),
            write_timeouts: self.writer.write_timeouts(),
            queued: self.writer.queued(),
        }
    }

    /// Records Supabase refused for their data and that were set aside in the dead-letter
    /// file since start (for the heartbeat).
    pub fn dead_lettered(&self) -> u64 {
        self.dead_letters.count()
    }
}

/// A message key: random, drawn once when the record is spooled.
fn new_id() -> String {
    crate::mcp::correlation::fast_uuid()
        .hyphenated()
        .to_string()
}

/// What became of a chat turn handed to the spool.
#[derive(Debug, Clone, PartialEq)]
pub enum Persisted {
    /// In the kernel: it reaches Supabase even if the daemon is killed now.
    Written,
    /// Waiting for a disk that did not answer within `waited`; written when it does.
    Queued { waited: Duration },
    /// Not kept, and why: it will not reach Supabase.
    Refused(String),
}
