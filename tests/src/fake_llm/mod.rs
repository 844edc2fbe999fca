//! An OpenAI-compatible chat-completions server that stands in for Kimi (Moonshot) and
//! GLM (Z.ai), which the tests cannot reach. It speaks their wire format, including the
//! ways it fails, so the daemon's retries and stream handling meet real bytes.
//!
//! `POST …/chat/completions` answers `echo: <last user message>`, one word per token,
//! as Moonshot does under `/v1` and as Z.ai does under `/api/paas/v4`: usage where each
//! puts it, each one's refusal of a model it does not serve, `GET …/models`, and a
//! thinking mode (`--think-ms`, `[think:MS]`) that streams `reasoning_content` first.
//! Directives in that message select a fault for the request (`[fault:429 retry-after=2]`,
//! `[fault:500]`, `[fault:503]`, `[fault:stall]`, `[fault:stall-stream]`, `[fault:cut]`,
//! `[fault:malformed]`, `[fault:endless-event]`; `[fault:500x2]` fails only the first two requests carrying the same
//! text) or add latency (`[latency:250]`). `POST /_control {"fault":"500","count":3}` fails
//! the next requests whatever they say, and takes precedence over directives;
//! `{"fault":null}` clears all fault state. `GET`/`DELETE /_requests` and `GET /_stats`
//! show what arrived.

mod answer;
mod body;
mod chat;
mod config;
mod directive;
mod fault;
mod fault_book;
mod flavour;
mod process;
mod record;
mod reply;
mod routes;
mod server;
mod wire;

pub use config::{parse as parse_options, FakeLlmConfig, Options, OptionsError, Parsed, USAGE};
pub use fault::{FaultKind, FaultSpec, ParseFaultError};
pub use flavour::Flavour;
pub use process::FakeLlmProc;
pub use record::{ReceivedHeaders, ReceivedRequest, Stats, LOG_CAPACITY};

use fault_book::FaultBook;
use record::{Counters, RequestLog};
use routes::Context;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// State shared by every connection of one fake.
struct Shared {
    config: FakeLlmConfig,
    faults: FaultBook,
    log: RequestLog,
    counters: Counters,
    /// Start time mixed into completion ids, so two runs do not hand out the same ids.
    id_epoch: u64,
    next_id: AtomicU64,
}

impl Shared {
    fn next_completion_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("chatcmpl-{:08x}{n:016x}", self.id_epoch)
    }
}

/// A fake server's state, readable by the test that runs it in-process.
#[derive(Clone)]
pub struct FakeLlm {
    shared: Arc<Shared>,
}

impl FakeLlm {
    pub fn new(config: FakeLlmConfig) -> Self {
        let id_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() & 0xffff_ffff);
        Self {
            shared: Arc::new(Shared {
                config,
                faults: FaultBook::default(),
                log: RequestLog::default(),
                counters: Counters::default(),
                id_epoch,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Serves until `shutdown` completes, then gives open connections a short grace.
    /// Stalled responses end at shutdown rather than holding it up.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let ctx = Arc::new(Context {
            shared: self.shared.clone(),
            stop: CancellationToken::new(),
        });
        server::run(listener, ctx, shutdown).await;
    }

    /// Chat-completions requests received, oldest first (the last [`LOG_CAPACITY`]).
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.log.snapshot()
    }

    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.stats()
    }

    /// As `POST /_control`: fail the next requests as `spec` says, or with `None` reset.
    pub fn arm(&self, spec: Option<FaultSpec>) {
        self.shared.faults.arm(spec);
    }
}

/// Runs a fake with `config` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: FakeLlmConfig,
    shutdown: impl Future<Output = ()>,
) {
    FakeLlm::new(config).serve(listener, shutdown).await;
}
