//! Supabase persistence (on when `SUPABASE_URL` and `SUPABASE_SERVICE_ROLE_KEY` are set):
//! every chat turn is appended to a durable spool before the chat answers, and a
//! background task uploads the spool through PostgREST. An outage neither slows the chat
//! nor loses a turn; the spool replays after a restart. Schema: `compose/supabase/schema.sql`.

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
use postgrest::{Failure, PostgrestClient};
use record::TurnRecord;
use spool::{Spool, SpoolError, SpoolStats};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uploader::Uploader;

/// How often appended records are synced to disk (see [`spool`] for the policy).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// While the spool refuses records, the error is logged at most this often.
const REFUSAL_LOG_EVERY_S: u64 = 10;

/// The request path's handle: [`Persistence::record_turn`] appends; the rest runs in the
/// background.
pub struct Persistence {
    spool: Arc<Spool>,
    emitter: EventEmitter,
    uploads: Arc<UploadState>,
    /// Records Supabase refused for their data, set aside so the rest flow on.
    dead_letters: Arc<DeadLetters>,
    /// Seconds since start before which no refusal is logged again.
    next_refusal_log: AtomicU64,
    /// Refusals not yet reported in a log line.
    refusals_unlogged: AtomicU64,
    started: std::time::Instant,
}

/// What `status` shows about uploads.
#[derive(Debug, Default)]
pub struct UploadState {
    /// Records Supabase acknowledged since start.
    uploaded: AtomicU64,
    /// The failure that pauses uploads now, if any.
    failing: Mutex<Option<String>>,
}

impl UploadState {
    fn resumed(&self, records: u64) {
        self.uploaded.fetch_add(records, Relaxed);
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn failed(&self, failure: &Failure) {
        let text = match failure {
            Failure::Auth(why) => format!("service role key rejected ({why}); uploads paused"),
            Failure::Refused(why) | Failure::RowsRefused(why) => {
                format!("rows refused ({why}); uploads paused")
            }
            Failure::Transient(why) => format!("{why}; retrying"),
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
}

impl Persistence {
    /// Opens the spool (recovering from a crash) and starts the uploader and the flusher
    /// on `tasks`; both stop at `cancel`, the flusher after a last sync.
    pub fn start(
        config: &SupabaseConfig,
        http: reqwest::Client,
        emitter: EventEmitter,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, SpoolError> {
        let (spool, reader) = Spool::open(&config.spool_dir, config.spool_max_bytes)?;
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
        tasks.spawn(uploader.run(cancel.clone()));
        tasks.spawn(flush(spool.clone(), cancel));
        Ok(Arc::new(Self {
            spool,
            emitter,
            uploads,
            dead_letters,
            next_refusal_log: AtomicU64::new(0),
            refusals_unlogged: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }))
    }

    /// Appends one answered turn to the spool: one `write`, no waiting on the network.
    /// A refusal (spool full, disk error) is logged, at most every 10 s, and counted; the
    /// chat answers all the same.
    pub fn record_turn(
        &self,
        conversation_id: &str,
        turn: &Turn,
        input_tokens: u64,
        output_tokens: u64,
        correlation_id: &str,
    ) {
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
        let appended = record
            .encode(&mut buf)
            .map_err(|e| SpoolError::Io {
                what: "cannot encode a record for",
                path: self.spool.dir().to_path_buf(),
                source: e.into(),
            })
            .and_then(|()| self.spool.append(&mut buf));
        self.emitter
            .totals()
            .spool_depth
            .store(self.spool.depth(), Relaxed);
        if let Err(e) = appended {
            self.refused(&e);
        }
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

/// Syncs the spool to disk every [`SYNC_EVERY`], and once more at shutdown.
async fn flush(spool: Arc<Spool>, cancel: CancellationToken) {
    loop {
        let stop = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tokio::time::sleep(SYNC_EVERY) => false,
        };
        let s = spool.clone();
        match tokio::task::spawn_blocking(move || s.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot sync the Supabase spool to disk"),
            Err(e) => tracing::error!(error = %e, "spool sync task failed"),
        }
        if stop {
            return;
        }
    }
}
