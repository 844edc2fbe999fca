//! Threads in Redis, chosen by `REDIS_URL`.
//!
//! Each thread is one string key, `exai:thread:<continuation_id>`, whose value is the JSON
//! of [`Thread`], oldest turn first and at most `MAX_CONVERSATION_TURNS` of them:
//!
//! ```json
//! {"turns":[{"user":"…","assistant":"…","model":"glm-4.5-flash","at_unix_ms":1732480000000}]}
//! ```
//!
//! It is written whole with `SET key value EX <CONVERSATION_TIMEOUT_HOURS × 3600>`, so every
//! turn restarts the thread's time to live.
//!
//! The daemon starts whether or not Redis is up: the connection is made lazily and a
//! probe task keeps trying. While Redis is known to be unreachable, operations fail at once
//! as [`StorageError::Unavailable`] instead of each paying a connect or response timeout,
//! and the first probe that gets an answer brings the store back without a restart.

use super::{ConversationStore, StorageError, StoreHealth, Thread};
use crate::cause::Cause;
use crate::config::redact_url;
use exai_proto::{StorageBackend, StorageErrorKind};
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The prefix of every thread key.
pub const KEY_PREFIX: &str = "exai:thread:";

/// How often the probe pings while Redis is unreachable: the longest a recovered Redis
/// goes unnoticed.
const PROBE_WHILE_DOWN: Duration = Duration::from_millis(500);
/// How often it pings while Redis answers, to notice a silent loss without traffic: the
/// heartbeat reports Redis to the agent once a second, so about as often.
const PROBE_WHILE_UP: Duration = Duration::from_secs(1);

pub struct RedisStore {
    conn: ConnectionManager,
    ttl_secs: u64,
    health: Arc<Health>,
}

/// What the probe and the operations have learnt about Redis.
struct Health {
    /// Optimistic at start: the first operation tries the lazy connection itself.
    reachable: AtomicBool,
    /// Why Redis was last found unreachable, for the fast failures and `status`.
    last_error: Mutex<(StorageErrorKind, String)>,
    /// Wakes the probe as soon as an operation sees Redis go away.
    lost: Notify,
    /// The URL without its password, for log lines.
    shown_url: String,
}

impl Health {
    fn up(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            tracing::info!(url = %self.shown_url, "Redis reachable again; conversation history restored");
        }
    }

    fn down(&self, kind: StorageErrorKind, why: String) {
        let was_up = self.reachable.swap(false, Ordering::AcqRel);
        if was_up {
            tracing::warn!(url = %self.shown_url, error = %why,
                "Redis unreachable; chats answer without history until it is back");
            self.lost.notify_one();
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = (kind, why);
    }

    fn last_error(&self) -> (StorageErrorKind, String) {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl RedisStore {
    /// A store for `url` that connects on first use. `timeout` bounds each connection
    /// attempt and each response. The probe runs until `cancel`.
    pub fn start(
        url: &str,
        ttl: Duration,
        timeout: Duration,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Self, StorageError> {
        let shown_url = redact_url(url);
        let unavailable = |message: String, e: redis::RedisError| StorageError::Unavailable {
            backend: StorageBackend::Redis,
            kind: StorageErrorKind::Other,
            message,
            cause: Some(Cause::new(e)),
        };
        let client = redis::Client::open(url).map_err(|e| {
            let why = crate::redact::redact_urls_in(&e.to_string());
            unavailable(format!("invalid REDIS_URL {shown_url}: {why}"), e)
        })?;
        // One attempt per reconnect: the probe paces the retries, so a call never waits
        // behind the manager's own backoff.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| unavailable(format!("cannot set up Redis at {shown_url}"), e))?;
        let health = Arc::new(Health {
            reachable: AtomicBool::new(true),
            last_error: Mutex::new((StorageErrorKind::None, String::new())),
            lost: Notify::new(),
            shown_url,
        });
        tasks.spawn(probe(conn.clone(), health.clone(), cancel));
        Ok(Self {
            conn,
            ttl_secs: ttl.as_secs().max(1),
            health,
        })
    }

    fn key(id: &str) -> String {
        let mut key = String::with_capacity(KEY_PREFIX.len() + id.len());
        key.push_str(KEY_PREFIX);
        key.push_str(id);
        key
    }

    fn check_reachable(&self) -> Result<(), StorageError> {
        if self.health.reachable.load(Ordering::Acquire) {
            return Ok(());
        }
        let (kind, message) = self.health.last_error();
        Err(StorageError::Unavailable {
            backend: StorageBackend::Redis,
            kind,
            message,
            cause: None,
        })
    }

    /// Classifies a failed command; a lost or silent connection marks Redis unreachable.
    fn failed(&self, e: redis::RedisError) -> StorageError {
        let (kind, message) = (classify(&e), describe(&e));
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            self.health.down(kind, message.clone());
        }
        StorageError::Unavailable {
            backend: StorageBackend::Redis,
            kind,
            message,
            cause: Some(Cause::new(e)),
        }
    }
}

fn classify(e: &redis::RedisError) -> StorageErrorKind {
    if e.is_timeout() {
        StorageErrorKind::Timeout
    } else if e.is_connection_refusal() {
        StorageErrorKind::ConnectionRefused
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        StorageErrorKind::Auth
    } else if e.is_io_error() || e.is_connection_dropped() {
        StorageErrorKind::Connection
    } else {
        StorageErrorKind::Other
    }
}

fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "no answer from Redis in time".to_string()
    } else if e.is_connection_refusal() {
        "Redis refused the connection".to_string()
    } else {
        crate::redact::redact_urls_in(&e.to_string())
    }
}

impl ConversationStore for RedisStore {
    fn backend(&self) -> StorageBackend {
        StorageBackend::Redis
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StorageError>> {
        Box::pin(async move {
            self.check_reachable()?;
            let mut conn = self.conn.clone();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(Self::key(id))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            self.health.up();
            match value {
                None => Ok(None),
                Some(bytes) => {
                    serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|e| StorageError::Corrupt {
                            what: Self::key(id),
                            cause: Cause::new(e),
                        })
                }
            }
        })
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        thread: &'a Thread,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            self.check_reachable()?;
            let value = serde_json::to_vec(thread).map_err(|e| StorageError::Corrupt {
                what: format!("{} (to be written)", Self::key(id)),
                cause: Cause::new(e),
            })?;
            let mut conn = self.conn.clone();
            let () = redis::cmd("SET")
                .arg(Self::key(id))
                .arg(value)
                .arg("EX")
                .arg(self.ttl_secs)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            self.health.up();
            Ok(())
        })
    }

    fn health(&self) -> StoreHealth {
        let reachable = self.health.reachable.load(Ordering::Acquire);
        StoreHealth {
            reachable,
            error: (!reachable).then(|| self.health.last_error().1),
        }
    }
}

/// Pings Redis: often while it is unreachable (each ping also makes the manager try a
/// new connection), rarely while it answers.
async fn probe(conn: ConnectionManager, health: Arc<Health>, cancel: CancellationToken) {
    let mut first = true;
    loop {
        let mut c = conn.clone();
        match redis::cmd("PING").query_async::<String>(&mut c).await {
            Ok(_) if first => {
                tracing::info!(url = %health.shown_url, "Redis reachable; conversations are kept there");
                health.reachable.store(true, Ordering::Release);
            }
            Ok(_) => health.up(),
            Err(e) => {
                let (kind, why) = (classify(&e), describe(&e));
                if first {
                    // A chat may have found out first and said so already.
                    if health.reachable.swap(false, Ordering::AcqRel) {
                        tracing::warn!(url = %health.shown_url, error = %why,
                            "Redis unreachable at start; chats answer without history until it is up");
                    }
                    *health.last_error.lock().unwrap_or_else(|e| e.into_inner()) = (kind, why);
                } else {
                    health.down(kind, why);
                }
            }
        }
        first = false;
        let pause = if health.reachable.load(Ordering::Acquire) {
            PROBE_WHILE_UP
        } else {
            PROBE_WHILE_DOWN
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = health.lost.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_and_says_why() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cancel = CancellationToken::new();
        let store = RedisStore::start(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            cancel.clone(),
            &TaskTracker::new(),
        )
        .unwrap();
        let first = store.load("t").await.unwrap_err();
        assert!(
            first.to_string().contains("refused the connection"),
            "{first}"
        );
        assert!(!store.health().reachable);
        // The Redis error is kept as the source, not only flattened into the text.
        let source = std::error::Error::source(&first).expect("a source");
        let cause = source
            .downcast_ref::<crate::cause::Cause>()
            .expect("the cause");
        assert!(cause.get().downcast_ref::<redis::RedisError>().is_some());
        let started = std::time::Instant::now();
        let again = store.save("t", &Thread::default()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(50), "fails fast");
        assert!(matches!(again, StorageError::Unavailable { .. }), "{again}");
        cancel.cancel();
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let err = RedisStore::start(
            "redis://:sekrit@host:notaport",
            Duration::from_secs(1),
            Duration::from_secs(1),
            CancellationToken::new(),
            &TaskTracker::new(),
        )
        .err()
        .expect("bad URL");
        let text = err.to_string();
        assert!(text.contains("invalid REDIS_URL"), "{text}");
        assert!(!text.contains("sekrit"), "{text}");
    }
}
