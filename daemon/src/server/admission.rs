//! Who holds a place. A connection is *pending* while the request it is on has not been
//! read whole and authenticated (slow headers, a slow body, an idle keep-alive): pending
//! connections are bounded on their own (`EXAI_WS_MAX_PENDING_CONNECTIONS`), and when
//! that pool is full the one pending the longest is closed to make room, so clients that
//! dribble bytes can delay no one. A connection is *active* while it serves a request
//! that was read and authenticated, or a WebSocket session: those take the places of
//! `EXAI_WS_MAX_CONNECTIONS`, and only those — a busy pool answers 503.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub struct Admission {
    active: Arc<Semaphore>,
    max_active: usize,
    pending: Mutex<Pending>,
    max_pending: usize,
    /// Pending connections closed to make room, since start.
    evicted: AtomicU64,
}

#[derive(Default)]
struct Pending {
    /// Each pending connection's signals, by the order it became pending.
    by_age: BTreeMap<u64, Signals>,
    next: u64,
}

/// A connection's two signals: one asks it to close, the other says it has.
#[derive(Clone)]
struct Signals {
    close: CancellationToken,
    gone: CancellationToken,
}

impl Admission {
    pub fn new(max_active: usize, max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            active: Arc::new(Semaphore::new(max_active)),
            max_active,
            pending: Mutex::new(Pending::default()),
            max_pending: max_pending.max(1),
            evicted: AtomicU64::new(0),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection as pending, asking the oldest pending connection to close
    /// if the pool is full. Returns its ticket, and the signal that the one asked has
    /// closed.
    fn enter(&self, signals: &Signals) -> (u64, Option<CancellationToken>) {
        let mut pending = self.pending();
        let mut evicted = None;
        while pending.by_age.len() >= self.max_pending {
            match pending.by_age.pop_first() {
                Some((_, oldest)) => {
                    oldest.close.cancel();
                    self.evicted.fetch_add(1, Relaxed);
                    evicted = Some(oldest.gone);
                }
                None => break,
            }
        }
        let ticket = pending.next;
        pending.next += 1;
        pending.by_age.insert(ticket, signals.clone());
        (ticket, evicted)
    }

    fn leave(&self, ticket: u64) {
        self.pending().by_age.remove(&ticket);
    }

    /// Connections pending now.
    pub fn pending_now(&self) -> usize {
        self.pending().by_age.len()
    }

    /// Active places taken now.
    pub fn active_now(&self) -> usize {
        self.max_active - self.active.available_permits()
    }

    /// Pending connections closed to make room, since start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }
}

/// One TCP connection's standing, shared by the requests it carries.
pub struct Connection {
    admission: Arc<Admission>,
    /// The client's address: what per-client bounds count by.
    pub peer: std::net::IpAddr,
    /// Fired to close the connection (to make room), and by it once closed.
    signals: Signals,
    /// Its place in the pending pool, while it has one.
    ticket: Mutex<Option<u64>>,
    /// False once its task ended: an active place given back does not re-enter it.
    open: AtomicBool,
}

impl Connection {
    /// A connection just accepted: pending until its first request is read and
    /// authenticated. Also returns, when the pool was full, the signal that the oldest
    /// pending connection has closed: the accept loop waits for it, so that descriptors
    /// are freed as fast as new ones are taken.
    pub fn accepted(
        admission: &Arc<Admission>,
        peer: std::net::IpAddr,
    ) -> (Arc<Self>, Option<CancellationToken>) {
        let signals = Signals {
            close: CancellationToken::new(),
            gone: CancellationToken::new(),
        };
        let (ticket, evicted) = admission.enter(&signals);
        let connection = Arc::new(Self {
            admission: admission.clone(),
            peer,
            signals,
            ticket: Mutex::new(Some(ticket)),
            open: AtomicBool::new(true),
        });
        (connection, evicted)
    }

    /// Completes when the connection must close to make room.
    pub async fn evicted(&self) {
        self.signals.close.cancelled().await
    }

    /// Takes an active place for a request that was read and authenticated; `None` when
    /// all are taken. While the place is held the connection is not pending.
    pub fn activate(self: &Arc<Self>) -> Option<Active> {
        let permit = self.admission.active.clone().try_acquire_owned().ok()?;
        if let Some(ticket) = self.ticket().take() {
            self.admission.leave(ticket);
        }
        Some(Active {
            permit: Some(permit),
            connection: Some(self.clone()),
        })
    }

    /// The connection's task ended (its socket is closed).
    pub fn closed(&self) {
        self.open.store(false, Relaxed);
        if let Some(ticket) = self.ticket().take() {
            self.admission.leave(ticket);
        }
        self.signals.gone.cancel();
    }

    fn ticket(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.ticket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Back to pending (between keep-alive requests), if the connection is still open.
    fn pending_again(&self) {
        if !self.open.load(Relaxed) {
            return;
        }
        let mut ticket = self.ticket();
        if ticket.is_none() {
            *ticket = Some(self.admission.enter(&self.signals).0);
        }
    }
}

/// An active place, held for as long as a request's response (or a session) lives.
pub struct Active {
    permit: Option<OwnedSemaphorePermit>,
    /// Becomes pending again when the place is given back; `None` for a WebSocket
    /// session, which outlives its HTTP connection.
    connection: Option<Arc<Connection>>,
}

impl Active {
    /// The place, no longer tied to the connection that took it: an upgraded WebSocket
    /// session keeps it after the HTTP connection's task ends.
    pub fn for_session(mut self) -> Self {
        self.connection = None;
        self
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Some(connection) = self.connection.take() {
            connection.pending_again();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Connection {
        fn closing(&self) -> bool {
            self.signals.close.is_cancelled()
        }
    }

    #[test]
    fn a_full_pending_pool_closes_its_oldest_and_active_places_are_apart() {
        let admission = Admission::new(1, 2);
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        let accept = || Connection::accepted(&admission, loopback).0;
        let a = accept();
        let b = accept();
        assert_eq!(admission.pending_now(), 2);
        let (c, evicted) = Connection::accepted(&admission, loopback);
        assert!(a.closing(), "the oldest pending connection is closed");
        assert!(!b.closing() && !c.closing());
        let gone = evicted.expect("a connection was asked to close");
        assert!(!gone.is_cancelled());
        a.closed();
        assert!(gone.is_cancelled(), "its socket is closed");
        assert_eq!(admission.evicted(), 1);

        let active = b.activate().expect("a free place");
        assert_eq!((admission.pending_now(), admission.active_now()), (1, 1));
        assert!(c.activate().is_none(), "the one place is taken");
        // Pending connections never push out an active one.
        let d = accept();
        let _e = accept();
        assert!(!b.closing());
        assert!(c.closing() && !d.closing());

        drop(active);
        assert_eq!(admission.active_now(), 0);
        assert_eq!(admission.pending_now(), 2, "b is pending again, d went");
        assert!(d.closing());

        let session = b.activate().unwrap().for_session();
        b.closed();
        drop(session);
        assert_eq!(admission.active_now(), 0);
        assert_eq!(
            admission.pending_now(),
            1,
            "a closed connection is not pending"
        );
    }
}
