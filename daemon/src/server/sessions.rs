//! Streamable HTTP sessions, bounded. rmcp's `LocalSessionManager` keeps every session
//! until it has been idle for its keep-alive (300 s): 8,000 `initialize` POSTs held
//! 430 MB. This manager wraps it and keeps at most `EXAI_HTTP_MAX_SESSIONS`. When a new
//! session needs a place, the session idle the longest is closed (a session with a
//! request in flight is never idle; one that only holds `GET` streams open is: a stream
//! that waits shields nothing, or one client's idle streams would shut everyone out);
//! when none is idle, `initialize` is answered 503. A client whose session was closed gets 404 for it and, as the
//! protocol says, starts a new one.
//!
//! Evicting rather than refusing: a burst of sessions (a client in a reconnect loop, a
//! script) then costs the oldest idle sessions, which their clients can re-open, instead
//! of shutting every new client out until the burst's sessions expire.
//!
//! Expiry is done here too ([`BoundedSessions::expire_idle`]), not by rmcp's keep-alive:
//! that one counts a session idle while a long tool call runs without progress
//! notifications, and closes it under the call.

use futures_util::{Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};
use rmcp::transport::WorkerTransport;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::under_way::UnderWay;

pub struct BoundedSessions {
    inner: LocalSessionManager,
    state: Arc<Mutex<State>>,
    max: usize,
    /// A session with nothing in flight for this long is closed.
    idle: Duration,
    /// Sessions closed to make room, since start.
    evicted: AtomicU64,
    /// Sessions created since memory was last given back to the system.
    created_since_trim: AtomicU64,
    /// Requests whose response stream is still open: at shutdown, sessions close only
    /// once these answers went out.
    answering: Arc<UnderWay>,
    /// Woken whenever a session goes: shutdown waits for the last one without polling.
    gone: tokio::sync::Notify,
}

/// Sessions created before their memory is worth giving back, once most have gone.
const TRIM_AFTER_SESSIONS: u64 = 256;

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Use>,
    /// Places promised to `initialize` requests on their way to `create_session`.
    reserved: usize,
}

struct Use {
    last_active: Instant,
    /// Requests under way now (their answer streams included).
    busy: usize,
    /// `GET` streams open now (bounded by `EXAI_HTTP_MAX_STREAMS_PER_SESSION`).
    streams: usize,
    /// Ids of the requests awaiting their answers: a second request with one of them
    /// is refused, since answers could not be told apart.
    in_flight: std::collections::HashSet<RequestId>,
    /// The client sent `notifications/initialized`: requests may be answered in place.
    initialized: bool,
    /// Calls answered in place (`server::direct`) under way, by request id: what a
    /// `notifications/cancelled` or the session's end cancels.
    direct: HashMap<RequestId, CancellationToken>,
}

impl Use {
    fn new() -> Self {
        Self {
            last_active: Instant::now(),
            busy: 0,
            streams: 0,
            in_flight: std::collections::HashSet::new(),
            initialized: false,
            direct: HashMap::new(),
        }
    }

    /// The session is gone: calls answered in place stop as rmcp's would.
    fn closed(self) {
        for call in self.direct.into_values() {
            call.cancel();
        }
    }
}

/// No session can be closed to make room: every one is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub max: usize,
}

/// A place promised to one `initialize`; given back when dropped (by then the session,
/// if it was created, counts on its own).
pub struct Reservation {
    state: Arc<Mutex<State>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.reserved = state.reserved.saturating_sub(1);
    }
}

/// Marks a session busy while it lives.
struct Busy {
    state: Arc<Mutex<State>>,
    id: SessionId,
    /// Counts an answer on its way, for a request's stream.
    answering: Option<Arc<UnderWay>>,
    /// A call answered in place, forgotten by its session when done.
    direct: Option<RequestId>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(answering) = &self.answering {
            answering.end();
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = state.sessions.get_mut(&self.id) {
            session.busy = session.busy.saturating_sub(1);
            session.last_active = Instant::now();
            if let Some(request) = &self.direct {
                session.direct.remove(request);
            }
        }
    }
}

/// A request of a session awaiting its answer; its id is free again when dropped.
pub struct SessionRequest {
    state: Arc<Mutex<State>>,
    id: SessionId,
    request: RequestId,
}

impl Drop for SessionRequest {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = state.sessions.get_mut(&self.id) {
            session.in_flight.remove(&self.request);
        }
    }
}

/// A request whose id another request of the same session, not yet answered, has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateId;

/// One `GET` stream's place in its session, given back when dropped.
pub struct SessionStream {
    state: Arc<Mutex<State>>,
    id: SessionId,
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = state.sessions.get_mut(&self.id) {
            session.streams = session.streams.saturating_sub(1);
        }
    }
}

/// A call a session lets `server::direct` answer in place: its cancellation, and the
/// session kept busy (never idle, its answer counted as on its way) until dropped.
pub struct DirectCall {
    pub ct: CancellationToken,
    /// Keeps a session's call counted as its own; a stateless call has no session.
    _busy: Option<Busy>,
}

impl DirectCall {
    /// A stateless (2026-07-28) call's place: cancelled at shutdown through `parent`.
    pub fn stateless(parent: &CancellationToken) -> Self {
        Self {
            ct: parent.child_token(),
            _busy: None,
        }
    }
}

impl BoundedSessions {
    pub fn new(max: usize, idle: Duration) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = None;
        Self {
            inner,
            state: Arc::default(),
            max: max.max(1),
            idle,
            evicted: AtomicU64::new(0),
            created_since_trim: AtomicU64::new(0),
            answering: Arc::default(),
            gone: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more session, closing the one idle the longest if needed.
    pub async fn reserve(&self) -> Result<Reservation, Full> {
        let victim = {
            let mut state = self.lock();
            let victim = if state.sessions.len() + state.reserved >= self.max {
                let oldest_idle = state
                    .sessions
                    .iter()
                    .filter(|(_, u)| u.busy == 0)
                    .min_by_key(|(_, u)| u.last_active)
                    .map(|(id, _)| id.clone());
                match oldest_idle {
                    Some(id) => {
                        if let Some(gone) = state.sessions.remove(&id) {
                            gone.closed();
                        }
                        Some(id)
                    }
                    None => return Err(Full { max: self.max }),
                }
            } else {
                None
            };
            state.reserved += 1;
            victim
        };
        if let Some(id) = victim {
            self.gone.notify_waiters();
            self.evicted.fetch_add(1, Relaxed);
            tracing::debug!(session = %id, "closing the MCP session idle the longest to make room");
            let _ = self.inner.close_session(&id).await;
        }
        Ok(Reservation {
            state: self.state.clone(),
        })
    }

    /// Closes sessions idle for longer than the idle time, every fraction of it, until
    /// `stop`.
    pub async fn expire_idle(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        // Sessions open at most since the memory was last given back.
        let mut peak = 0;
        // Sessions still open when it was last given back: once they are gone too, and a
        // tick later their workers with them, what they held goes back as well.
        let mut left_at_trim = 0;
        let mut rest_gone = false;
        loop {
            peak = peak.max(self.open());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let expired: Vec<SessionId> = {
                let mut state = self.lock();
                let expired: Vec<SessionId> = state
                    .sessions
                    .iter()
                    .filter(|(_, u)| u.busy == 0 && u.last_active.elapsed() >= self.idle)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &expired {
                    if let Some(gone) = state.sessions.remove(id) {
                        gone.closed();
                    }
                }
                expired
            };
            if !expired.is_empty() {
                self.gone.notify_waiters();
            }
            for id in expired {
                let _ = self.inner.close_session(&id).await;
            }
            // After a burst, once most of its sessions are gone, their memory goes back.
            let open = self.open();
            let burst_over =
                self.created_since_trim.load(Relaxed) >= TRIM_AFTER_SESSIONS && open <= peak / 4;
            let rest_over = left_at_trim > 0 && open == 0 && rest_gone;
            rest_gone = left_at_trim > 0 && open == 0;
            if burst_over || rest_over {
                self.created_since_trim.store(0, Relaxed);
                peak = open;
                left_at_trim = open;
                rest_gone = false;
                let _ = tokio::task::spawn_blocking(crate::memory::give_back_free_memory).await;
            }
        }
    }

    /// A place for one more `GET` stream on session `id`, unless it holds `max`; an
    /// unknown session gets one (rmcp answers it 404).
    pub fn open_stream(&self, id: &SessionId, max: usize) -> Option<SessionStream> {
        let mut state = self.lock();
        if let Some(session) = state.sessions.get_mut(id) {
            if session.streams >= max {
                return None;
            }
            session.streams += 1;
        }
        Some(SessionStream {
            state: self.state.clone(),
            id: id.clone(),
        })
    }

    /// Registers request `request` of session `id` as awaiting its answer; a request
    /// with the id of one still awaiting is refused. Nothing is held for a session this
    /// manager does not know (rmcp answers it 404).
    pub fn begin_request(
        &self,
        id: &SessionId,
        request: &RequestId,
    ) -> Result<Option<SessionRequest>, DuplicateId> {
        let mut state = self.lock();
        let Some(session) = state.sessions.get_mut(id) else {
            return Ok(None);
        };
        if !session.in_flight.insert(request.clone()) {
            return Err(DuplicateId);
        }
        Ok(Some(SessionRequest {
            state: self.state.clone(),
            id: id.clone(),
            request: request.clone(),
        }))
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Sessions closed to make room, since start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    fn touch(&self, id: &SessionId) {
        if let Some(session) = self.lock().sessions.get_mut(id) {
            session.last_active = Instant::now();
        }
    }

    fn busy(&self, id: &SessionId) -> Busy {
        if let Some(session) = self.lock().sessions.get_mut(id) {
            session.busy += 1;
            session.last_active = Instant::now();
        }
        Busy {
            state: self.state.clone(),
            id: id.clone(),
            answering: None,
            direct: None,
        }
    }

    /// A place for a call answered in place, if the session is open and initialized
    /// and has no call under way with that id; else the request goes through rmcp,
    /// which answers every other case as the protocol says. `parent` is cancelled at
    /// shutdown, as rmcp's sessions are.
    pub async fn direct_call(
        &self,
        id: &SessionId,
        request: &RequestId,
        parent: &CancellationToken,
    ) -> Option<DirectCall> {
        // A session rmcp has closed on its own is answered by rmcp (404).
        if !self.inner.has_session(id).await.unwrap_or(false) {
            return None;
        }
        let ct = parent.child_token();
        {
            let mut state = self.lock();
            let session = state.sessions.get_mut(id)?;
            if !session.initialized || session.direct.contains_key(request) {
                return None;
            }
            session.direct.insert(request.clone(), ct.clone());
            session.busy += 1;
            session.last_active = Instant::now();
        }
        self.answering.start();
        Some(DirectCall {
            ct,
            _busy: Some(Busy {
                state: self.state.clone(),
                id: id.clone(),
                answering: Some(self.answering.clone()),
                direct: Some(request.clone()),
            }),
        })
    }

    /// Notes what a client's notification means here: `initialized` opens the session to
    /// calls answered in place, `cancelled` cancels one of them.
    fn notified(&self, id: &SessionId, message: &ClientJsonRpcMessage) {
        let ClientJsonRpcMessage::Notification(notification) = message else {
            return self.touch(id);
        };
        let mut state = self.lock();
        let Some(session) = state.sessions.get_mut(id) else {
            return;
        };
        session.last_active = Instant::now();
        match &notification.notification {
            ClientNotification::InitializedNotification(_) => session.initialized = true,
            ClientNotification::CancelledNotification(cancelled) => {
                let call = cancelled.params.request_id.as_ref();
                if let Some(call) = call.and_then(|request| session.direct.get(request)) {
                    call.cancel();
                }
            }
            _ => {}
        }
    }

    /// Requests whose answer is still on its way to the client.
    pub fn answering(&self) -> usize {
        self.answering.now()
    }

    /// Completes once no answer is on its way.
    pub async fn answered(&self) {
        self.answering.none().await
    }

    /// Completes once every session is gone.
    pub async fn all_closed(&self) {
        super::under_way::until(&self.gone, || self.open() == 0).await
    }
}

/// `stream`, marking its session busy until it ends.
fn tracked<S>(stream: S, busy: Busy) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static
where
    S: Stream<Item = ServerSseMessage> + Send + Sync + 'static,
{
    stream.map(move |message| {
        let _ = &busy;
        message
    })
}

impl SessionManager for BoundedSessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.created_since_trim.fetch_add(1, Relaxed);
        self.lock().sessions.insert(id.clone(), Use::new());
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let _busy = self.busy(id);
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let gone = self.lock().sessions.remove(id);
        if let Some(gone) = gone {
            gone.closed();
            self.gone.notify_waiters();
        }
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let mut busy = self.busy(id);
        self.answering.start();
        busy.answering = Some(self.answering.clone());
        let stream = self.inner.create_stream(id, message).await?;
        Ok(tracked(stream, busy))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.notified(id, &message);
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // Not busy: a stream that only waits must not keep its session from eviction.
        self.touch(id);
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.inner.resume(id, last_event_id).await
    }
}
