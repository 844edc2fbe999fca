//! What the daemon knows of Redis's health, and the probe that keeps it current: often
//! while Redis is unreachable (each ping also makes the connection manager try a new
//! connection), rarely while it answers.

use exai_proto::StorageErrorKind;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the probe pings while Redis is unreachable: the longest a recovered Redis
/// goes unnoticed.
const PROBE_WHILE_DOWN: Duration = Duration::from_millis(500);
/// How often it pings while Redis answers, to notice a silent loss without traffic: the
/// heartbeat reports Redis to the agent once a second, so about as often.
const PROBE_WHILE_UP: Duration = Duration::from_secs(1);

/// What the probe and the operations have learnt about Redis.
pub(super) struct Health {
    /// Optimistic at start: the first operation tries the lazy connection itself.
    pub(super) reachable: AtomicBool,
    /// Why Redis was last found unreachable, for the fast failures and `status`.
    pub(super) last_error: Mutex<(StorageErrorKind, String)>,
    /// Wakes the probe as soon as an operation sees Redis go away.
    pub(super) lost: Notify,
    /// Wakes the journal's replay as soon as Redis answers again.
    pub(super) recovered: Notify,
    /// The URL without its password, for log lines.
    pub(super) shown_url: String,
}

impl Health {
    pub(super) fn up(&self) {
        if !self.reachable.swap(true, Ordering::AcqRel) {
            tracing::info!(url = %self.shown_url, "Redis reachable again; conversation history restored");
            self.recovered.notify_one();
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    pub(super) fn down(&self, kind: StorageErrorKind, why: String) {
        let was_up = self.reachable.swap(false, Ordering::AcqRel);
        if was_up {
            tracing::warn!(url = %self.shown_url, error = %why,
                "Redis unreachable; chats answer without history until it is back");
            self.lost.notify_one();
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = (kind, why);
    }

    pub(super) fn last_error(&self) -> (StorageErrorKind, String) {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub(super) fn classify(e: &redis::RedisError) -> StorageErrorKind {
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

pub(super) fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "no answer from Redis in time".to_string()
    } else if e.is_connection_refusal() {
        "Redis refused the connection".to_string()
    } else {
        crate::redact::redact_urls_in(&e.to_string())
    }
}

/// Pings Redis: often while it is unreachable (each ping also makes the manager try a
/// new connection), rarely while it answers.
pub(super) async fn probe(conn: ConnectionManager, health: Arc<Health>, cancel: CancellationToken) {
    let mut first = true;
    loop {
        let mut c = conn.clone();
        match redis::cmd("PING").query_async::<String>(&mut c).await {
            Ok(_) if first => {
                tracing::info!(url = %health.shown_url, "Redis reachable; conversations are kept there");
                if !health.reachable.swap(true, Ordering::AcqRel) {
                    health.recovered.notify_one();
                }
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
