//! Threads in Redis, chosen by `REDIS_URL`.
//!
//! Each conversation is one list, `exai:thread:<continuation_id>`, one element per turn,
//! oldest first, each the JSON of a [`Turn`]:
//!
//! ```json
//! {"user":"…","assistant":"…","model":"glm-4.5-flash","at_unix_ms":1732480000000}
//! ```
//!
//! A turn is appended by one Lua script ([`scripts::APPEND`]): `RPUSH`, then `LTRIM` to the
//! newest `MAX_CONVERSATION_TURNS`, then `EXPIRE` to `CONVERSATION_TIMEOUT_HOURS × 3600`
//! (every turn restarts the time to live), with nothing from another client in between.
//! So chats continuing one conversation at once, on one daemon or on many sharing Redis,
//! each keep their turn, in the order Redis received them. Reading a conversation for a
//! prompt is one script too ([`scripts::LOAD`]): one round trip.
//!
//! Older daemons kept a conversation as one string under the same key, the JSON
//! `{"turns":[…]}` of [`Thread`], written whole with `SET … EX`. Such a key is still read
//! as it is, and is **converted on its next append**: the append script finds the string,
//! the daemon parses it and calls again with it, and the script, seeing the same string
//! still there, replaces it with the list of its turns and appends the new one, in one
//! atomic step. A daemon of the older kind still running would overwrite a converted
//! list whole with its `SET`: upgrade every daemon sharing a Redis together.
//!
//! The daemon starts whether or not Redis is up: the connection is made lazily and a
//! probe task keeps trying. While Redis is known to be unreachable, operations fail at once
//! as [`StorageError::Unavailable`] instead of each paying a connect or response timeout,
//! and the first probe that gets an answer brings the store back without a restart.
//!
//! Turns answered while Redis is away (or too slow) go to the [`Journal`] on disk; the
//! [`replay`] task appends them to their conversations once Redis answers again, oldest
//! first, skipping any a conversation already holds (an append whose answer was lost may
//! have landed), then deletes them from the journal.

pub mod connect;
mod health;
mod replay;
pub mod scripts;

use super::{ConversationStore, Journal, StorageError, StoreHealth, Thread, Turn};
use crate::cause::Cause;
use exai_proto::{StorageBackend, StorageErrorKind};
use futures_util::future::BoxFuture;
use health::{classify, describe, probe, Health};
use redis::aio::ConnectionManager;
use scripts::{Appended, Loaded};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The prefix of every thread key.
pub const KEY_PREFIX: &str = "exai:thread:";

/// Conversions of an older daemon's string tried in one append before giving up: each
/// retry means that string was rewritten in between.
const CONVERSIONS: usize = 3;

pub struct RedisStore {
    link: Link,
    /// Where turns go that Redis could not take; replayed by [`replay`].
    journal: Option<Journal>,
}

/// What every Redis operation needs; the store and the journal's replay each hold one.
#[derive(Clone)]
struct Link {
    conn: ConnectionManager,
    ttl_secs: u64,
    /// Longest one operation may take (also the connection's own response timeout).
    timeout: Duration,
    health: Arc<Health>,
}

/// A key holding a value no daemon writes.
#[derive(Debug, thiserror::Error)]
#[error("the key holds a Redis {0}, not a conversation")]
struct NotAConversation(String);

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
        let (conn, shown_url) =
            connect::connect(url, timeout).map_err(|e| StorageError::Unavailable {
                backend: StorageBackend::Redis,
                kind: StorageErrorKind::Other,
                message: e.message,
                cause: Some(Cause::new(e.cause)),
            })?;
        let health = Arc::new(Health {
            reachable: AtomicBool::new(true),
            last_error: Mutex::new((StorageErrorKind::None, String::new())),
            lost: Notify::new(),
            recovered: Notify::new(),
            shown_url,
        });
        tasks.spawn(probe(conn.clone(), health.clone(), cancel));
        Ok(Self {
            link: Link {
                conn,
                ttl_secs: ttl.as_secs().max(1),
                timeout,
                health,
            },
            journal: None,
        })
    }

    /// Keeps the turns Redis cannot take in `journal`, and appends them to their
    /// conversations (`max_turns` kept) whenever Redis answers, until `cancel`.
    pub fn with_journal(
        mut self,
        journal: Journal,
        max_turns: usize,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Self {
        tasks.spawn(replay::run(
            journal.clone(),
            self.link.clone(),
            max_turns,
            cancel,
        ));
        self.journal = Some(journal);
        self
    }
}

/// The key of conversation `id`.
fn key(id: &str) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + id.len());
    key.push_str(KEY_PREFIX);
    key.push_str(id);
    key
}

impl Link {
    fn check_reachable(&self) -> Result<(), StorageError> {
        if self.health.is_up() {
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

    /// The conversation `id`, in either layout, in one round trip.
    async fn load(&self, id: &str) -> Result<Option<Thread>, StorageError> {
        self.check_reachable()?;
        let key = key(id);
        let mut conn = self.conn.clone();
        let reply: Vec<Vec<u8>> = redis::cmd("EVAL")
            .arg(scripts::LOAD)
            .arg(1)
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        self.health.up();
        match scripts::loaded(&key, reply) {
            None => Ok(None),
            Some(Loaded::Thread(thread)) => Ok(Some(thread)),
            Some(Loaded::Other(kind)) => Err(StorageError::Corrupt {
                what: key,
                cause: Cause::new(NotAConversation(kind)),
            }),
        }
    }

    /// Appends `turn` to conversation `id` atomically (see the module's description),
    /// converting an older daemon's string on the way. `replay`: skip a turn the list
    /// already holds.
    pub(super) async fn append(
        &self,
        id: &str,
        turn: &Turn,
        max_turns: usize,
        replay: bool,
    ) -> Result<(), StorageError> {
        self.check_reachable()?;
        let key = key(id);
        let unwritable = |e: serde_json::Error| StorageError::Corrupt {
            what: format!("{key} (to be written)"),
            cause: Cause::new(e),
        };
        let turn = serde_json::to_vec(turn).map_err(unwritable)?;
        // An older daemon's string and its turns, once the script has shown it.
        let mut conversion: Option<(Vec<u8>, Vec<Vec<u8>>)> = None;
        for _ in 0..CONVERSIONS {
            let cmd = self.append_command(&key, &turn, max_turns, replay, conversion.as_ref());
            let mut conn = self.conn.clone();
            let reply: Vec<Vec<u8>> = cmd
                .query_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
            self.health.up();
            match scripts::appended(reply) {
                Appended::Done => return Ok(()),
                Appended::Other(kind) => {
                    return Err(StorageError::Corrupt {
                        what: key,
                        cause: Cause::new(NotAConversation(kind)),
                    })
                }
                Appended::Convert(old) => {
                    let old_turns = scripts::older(&key, &old)
                        .turns
                        .iter()
                        .map(serde_json::to_vec)
                        .collect::<Result<_, _>>()
                        .map_err(unwritable)?;
                    if conversion.is_none() {
                        tracing::info!(key, "converting an older daemon's conversation to a list");
                    }
                    conversion = Some((old, old_turns));
                }
            }
        }
        Err(StorageError::Unavailable {
            backend: StorageBackend::Redis,
            kind: StorageErrorKind::Other,
            message: format!(
                "{key} was rewritten as a string during each of {CONVERSIONS} conversions; is a daemon of an older version still writing it?"
            ),
            cause: None,
        })
    }

    /// The `EVAL` of [`scripts::APPEND`] for one turn (its JSON), converting an older
    /// daemon's string (its value and its turns' JSON) when given one.
    fn append_command(
        &self,
        key: &str,
        turn: &[u8],
        max_turns: usize,
        replay: bool,
        conversion: Option<&(Vec<u8>, Vec<Vec<u8>>)>,
    ) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::APPEND)
            .arg(1)
            .arg(key)
            .arg(max_turns.max(1))
            .arg(self.ttl_secs)
            .arg(u8::from(replay))
            .arg(turn);
        if let Some((old, old_turns)) = conversion {
            cmd.arg(old);
            for old_turn in old_turns {
                cmd.arg(old_turn);
            }
        }
        cmd
    }

    /// Appends kept turns, each to its conversation, in order and in one round trip,
    /// each skipped where its conversation already holds it. Each turn's answer, or the
    /// error that stopped them all: sending them all again then is harmless, as the ones
    /// that landed are skipped. An older daemon's string is not converted here (its
    /// turns answer [`Appended::Convert`], nothing changed): [`Link::append`] does it.
    async fn replay(
        &self,
        turns: &[(&str, &Turn)],
        max_turns: usize,
    ) -> Result<Vec<Appended>, StorageError> {
        self.check_reachable()?;
        let mut pipe = redis::pipe();
        for (id, turn) in turns {
            let json = serde_json::to_vec(turn).map_err(|e| StorageError::Corrupt {
                what: format!("{} (to be written)", key(id)),
                cause: Cause::new(e),
            })?;
            pipe.add_command(self.append_command(&key(id), &json, max_turns, true, None));
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Vec<Vec<u8>>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        self.health.up();
        Ok(replies.into_iter().map(scripts::appended).collect())
    }
}

impl ConversationStore for RedisStore {
    fn backend(&self) -> StorageBackend {
        StorageBackend::Redis
    }

    fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Thread>, StorageError>> {
        Box::pin(self.link.load(id))
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        turn: &'a Turn,
        max_turns: usize,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(self.link.append(id, turn, max_turns, false))
    }

    fn health(&self) -> StoreHealth {
        let reachable = self.link.health.is_up();
        StoreHealth {
            reachable,
            error: (!reachable).then(|| self.link.health.last_error().1),
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
        let turn = Turn {
            user: "q".into(),
            assistant: "a".into(),
            model: "m".into(),
            at_unix_ms: 0,
        };
        let again = store.append("t", &turn, 20).await.unwrap_err();
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
