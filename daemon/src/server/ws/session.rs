//! One WebSocket MCP session: a reader that checks each frame before rmcp sees it, one
//! writer for rmcp's messages and the adapter's own, rmcp's service between them, and the
//! requests awaiting their answers. Drained at shutdown without polling: the reader waits
//! for the in-flight set to empty, woken by the answer that empties it.

use super::super::message::{cancelled_request, check_frame};
use super::super::Server;
use crate::mcp::McpHandler;
use exai_proto::{
    ConnectionPhase, CorrelationId, Direction, EventKind, RefusalReason, SampleClass, Transport,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use rmcp::model::{ClientJsonRpcMessage, ErrorCode, ErrorData, RequestId, ServerJsonRpcMessage};
use rmcp::ServiceExt;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::PollSender;
use tracing::{debug, info};

const NO_CORRELATION: CorrelationId = CorrelationId::empty();

/// How long a new session may take to send its first request (`initialize`, or a 2026
/// request that opens a stateless connection).
const INITIALIZE_WITHIN: Duration = Duration::from_secs(30);

/// How long one message may take to go out before the client is deemed gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages travel boxed: a channel allocates a block of 32 slots up front, and rmcp's
/// message types are ~400 bytes, so inline slots cost ~12 KiB per channel per session — a
/// tenth of the daemon's memory at 1,000 sessions.
const CHANNEL: usize = 64;

pub type Upgraded = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What the writer sends: a message from rmcp or the adapter, or a close.
enum Outbound {
    Message(Box<ServerJsonRpcMessage>),
    Close(CloseCode, &'static str),
}

impl Outbound {
    /// The error answering request `id`, which was refused before rmcp saw it.
    fn refusal(error: ErrorData, id: &RequestId) -> Self {
        Self::Message(Box::new(ServerJsonRpcMessage::error(
            error,
            Some(id.clone()),
        )))
    }

    fn going_away() -> Self {
        Self::Close(CloseCode::Away, "the server is shutting down")
    }
}

/// The requests of a session awaiting their answers.
#[derive(Default)]
struct InFlight {
    ids: Mutex<HashSet<RequestId>>,
    /// Woken when the last one is answered.
    none: Notify,
}

/// A frame, as the reader takes it.
enum Frame {
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    /// A ping or pong.
    Skip,
    /// A close, a frame that closes the session, or a broken connection.
    End,
}

/// Whether a request may go on to rmcp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    Yes,
    /// Too many requests of this connection await their answers.
    Full,
    /// A request with this id awaits its answer: answers could not be told apart.
    DuplicateId,
}

impl InFlight {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<RequestId>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self, id: &RequestId, max: usize) -> Admitted {
        let mut ids = self.ids();
        if ids.contains(id) {
            Admitted::DuplicateId
        } else if ids.len() >= max {
            Admitted::Full
        } else {
            ids.insert(id.clone());
            Admitted::Yes
        }
    }

    /// `id` was answered (or will not be): it is free again.
    fn done(&self, id: &RequestId) {
        let mut ids = self.ids();
        if ids.remove(id) && ids.is_empty() {
            self.none.notify_waiters();
        }
    }

    /// Completes once no request awaits its answer.
    async fn none(&self) {
        super::super::under_way::until(&self.none, || self.ids().is_empty()).await
    }
}

/// Counts an open session for as long as it lives.
struct OpenSession<'a>(&'a Server);

impl<'a> OpenSession<'a> {
    fn new(server: &'a Server) -> Self {
        server.occupancy.websocket.start();
        let totals = server.emitter.totals();
        totals.open_connections.fetch_add(1, Relaxed);
        server.connection_event(
            Transport::WebSocket,
            ConnectionPhase::Opened,
            RefusalReason::None,
        );
        Self(server)
    }
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.0.occupancy.websocket.end();
        let totals = self.0.emitter.totals();
        totals.open_connections.fetch_sub(1, Relaxed);
        self.0.connection_event(
            Transport::WebSocket,
            ConnectionPhase::Closed,
            RefusalReason::None,
        );
    }
}

/// One session's shared state, cheap to clone into its reader and writer.
#[derive(Clone)]
pub struct WsSession {
    server: Arc<Server>,
    in_flight: Arc<InFlight>,
    /// The adapter's own messages and closes, to the writer.
    out: mpsc::Sender<Outbound>,
}

impl WsSession {
    /// Serves the session until the client, rmcp or shutdown ends it.
    pub async fn run(server: Arc<Server>, ws: Upgraded) {
        let _open = OpenSession::new(&server);
        let (ws_tx, ws_rx) = ws.split();
        let (from_rmcp_tx, from_rmcp_rx) = mpsc::channel::<Box<ServerJsonRpcMessage>>(CHANNEL);
        let (to_rmcp_tx, mut to_rmcp_rx) = mpsc::channel::<Box<ClientJsonRpcMessage>>(CHANNEL);
        let (out, out_rx) = mpsc::channel::<Outbound>(CHANNEL);
        let session = Self {
            server: server.clone(),
            in_flight: Arc::default(),
            out,
        };
        let tasks = &server.sessions;
        let writer = tasks.spawn(session.clone().write(ws_tx, from_rmcp_rx, out_rx));
        let reader = tasks.spawn(session.clone().read(ws_rx, to_rmcp_tx));

        // rmcp's side: a stream it reads from and a sink it writes to.
        let inbound = futures_util::stream::poll_fn(move |cx| {
            to_rmcp_rx.poll_recv(cx).map(|m| m.map(|m| *m))
        });
        let sink = PollSender::new(from_rmcp_tx).with(|m: ServerJsonRpcMessage| {
            std::future::ready(Ok::<
                _,
                tokio_util::sync::PollSendError<Box<ServerJsonRpcMessage>>,
            >(Box::new(m)))
        });
        let serving = McpHandler::new(server.core.clone()).serve((sink, Box::pin(inbound)));
        // A connection that never sends its first request must not hold its place.
        let refused = match tokio::time::timeout(INITIALIZE_WITHIN, serving).await {
            Ok(Ok(running)) => {
                let _ = running.waiting().await;
                None
            }
            Err(_) => {
                info!("MCP session closed: no initialize within {INITIALIZE_WITHIN:?}");
                Some("initialize was not sent in time")
            }
            Ok(Err(e)) => {
                info!(error = %e, "MCP session ended before initialize");
                Some("the first request must be initialize")
            }
        };
        if let Some(reason) = refused {
            let _ = session
                .out
                .send(Outbound::Close(CloseCode::Policy, reason))
                .await;
        }
        let Self { out, .. } = session;
        drop(out);
        reader.abort();
        let _ = writer.await;
    }

    /// The single writer: the adapter's own messages first (a close the reader queued
    /// must still go out after rmcp's side has ended), then rmcp's, in order.
    async fn write(
        self,
        mut ws_tx: SplitSink<Upgraded, Message>,
        mut from_rmcp: mpsc::Receiver<Box<ServerJsonRpcMessage>>,
        mut own: mpsc::Receiver<Outbound>,
    ) {
        // Only the adapter's sender is dropped once the session ends; the reader's clone
        // goes with the reader.
        drop(self.out);
        let mut rmcp_open = true;
        loop {
            let next = tokio::select! {
                biased;
                m = own.recv() => m,
                m = from_rmcp.recv(), if rmcp_open => match m {
                    Some(m) => Some(Outbound::Message(m)),
                    None => {
                        rmcp_open = false;
                        continue;
                    }
                },
            };
            match next {
                Some(Outbound::Message(message)) => {
                    if let Some(id) = answered(&message) {
                        self.in_flight.done(id);
                    }
                    let Ok(json) = crate::mcp::compat::to_json(&message) else {
                        continue;
                    };
                    count_message(&self.server, Direction::Outbound, json.len());
                    // A client that stops reading for this long is gone: end the session,
                    // which cancels its work and frees its places.
                    if send_within(&mut ws_tx, Message::text(json), WRITE_TIMEOUT)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = ws_tx.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            }
        }
        let _ = ws_tx.close().await;
    }

    /// The reader: checks each frame before rmcp sees it. Once the server stops
    /// accepting, new requests are answered with an error, those in flight are answered
    /// (or cancelled after the grace), then the session closes with 1001. Dropping
    /// `to_rmcp` at the end ends rmcp's stream: the service quits and cancels whatever
    /// still runs for this client.
    async fn read(
        self,
        mut ws_rx: SplitStream<Upgraded>,
        to_rmcp: mpsc::Sender<Box<ClientJsonRpcMessage>>,
    ) {
        // Built once: a `cancelled()` made per frame would register a waiter on the token
        // every session shares, under its lock, for every message.
        let draining_begins = self.server.stages.accepting.cancelled();
        let closing = self.server.stages.sessions.cancelled();
        tokio::pin!(draining_begins, closing);
        let mut draining = false;
        loop {
            let frame = tokio::select! {
                frame = ws_rx.next() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                _ = &mut draining_begins, if !draining => {
                    draining = true;
                    continue;
                }
                _ = self.in_flight.none(), if draining => {
                    let _ = self.out.send(Outbound::going_away()).await;
                    break;
                }
                _ = &mut closing => {
                    let _ = self.out.send(Outbound::going_away()).await;
                    break;
                }
            };
            let text = match self.text_of(frame).await {
                Frame::Text(text) => text,
                Frame::Skip => continue,
                Frame::End => break,
            };
            count_message(&self.server, Direction::Inbound, text.len());
            let message = match check_frame(text.as_str()) {
                Ok(message) => message,
                Err(error) => {
                    crate::mcp::count_early(&self.server.emitter, Transport::WebSocket);
                    let _ = self.out.send(Outbound::Message(error)).await;
                    continue;
                }
            };
            if let Some(refusal) = self.refusal(&message, draining) {
                let _ = self.out.send(refusal).await;
                continue;
            }
            if let Some(cancelled) = cancelled_request(&message) {
                self.in_flight.done(&cancelled);
            }
            if to_rmcp.send(Box::new(message)).await.is_err() {
                break;
            }
        }
    }

    /// What a frame is to the reader; a frame that ends the session (a binary or
    /// oversized one) is answered with its close code.
    async fn text_of(&self, frame: Result<Message, WsError>) -> Frame {
        let close = |code, reason| Outbound::Close(code, reason);
        match frame {
            Ok(Message::Text(text)) => Frame::Text(text),
            Ok(Message::Binary(_)) => {
                let why = "binary frames are not supported: send JSON-RPC as text";
                let _ = self.out.send(close(CloseCode::Unsupported, why)).await;
                Frame::End
            }
            Ok(Message::Close(_)) => Frame::End,
            // Pings and pongs: tungstenite answers pings itself.
            Ok(_) => Frame::Skip,
            Err(WsError::Capacity(_)) => {
                let why = "message too big (EXAI_WS_MAX_FRAME_BYTES)";
                let _ = self.out.send(close(CloseCode::Size, why)).await;
                Frame::End
            }
            Err(e) => {
                debug!(error = %e, "WebSocket read failed");
                Frame::End
            }
        }
    }

    /// What refuses a request before rmcp sees it: the server draining, its id already
    /// awaiting an answer, or too many awaiting on this connection.
    fn refusal(&self, message: &ClientJsonRpcMessage, draining: bool) -> Option<Outbound> {
        let ClientJsonRpcMessage::Request(request) = message else {
            return None;
        };
        let id = &request.id;
        if draining {
            crate::mcp::count_early(&self.server.emitter, Transport::WebSocket);
            let error = ErrorData::new(
                ErrorCode(-32000),
                "the server is shutting down; send the request again once it is back",
                None,
            );
            return Some(Outbound::refusal(error, id));
        }
        let max = self.server.config.max_inflight_per_connection;
        match self.in_flight.admit(id, max) {
            Admitted::Yes => None,
            Admitted::DuplicateId => Some(Outbound::refusal(
                ErrorData::invalid_request(
                    "Invalid Request: this id is already in use by a request awaiting its answer",
                    None,
                ),
                id,
            )),
            Admitted::Full => Some(Outbound::refusal(
                ErrorData::new(
                    ErrorCode(-32000),
                    format!("too many requests in flight on this connection (at most {max}: EXAI_WS_MAX_INFLIGHT_PER_CONNECTION); wait for an answer"),
                    None,
                ),
                id,
            )),
        }
    }
}

/// The request a message answers, if it is an answer.
fn answered(message: &ServerJsonRpcMessage) -> Option<&RequestId> {
    match message {
        ServerJsonRpcMessage::Response(r) => Some(&r.id),
        ServerJsonRpcMessage::Error(e) => e.id.as_ref(),
        _ => None,
    }
}

/// Sends `message`, giving up after `limit`. The timer is armed only when the socket is
/// backed up: registering one for every message would cost more than the send.
async fn send_within<S>(
    sink: &mut S,
    message: Message,
    limit: std::time::Duration,
) -> Result<(), ()>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut send = sink.send(message);
    match std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut send).poll(cx)))
        .await
    {
        std::task::Poll::Ready(result) => result.map_err(|_| ()),
        std::task::Poll::Pending => match tokio::time::timeout(limit, send).await {
            Ok(result) => result.map_err(|_| ()),
            Err(_) => Err(()),
        },
    }
}

fn count_message(server: &Server, direction: Direction, bytes: usize) {
    server.emitter.totals().ws_message(direction, bytes);
    server
        .emitter
        .record(SampleClass::WsMessages, &NO_CORRELATION, || {
            EventKind::WsMessage {
                direction,
                bytes: bytes.min(u32::MAX as usize) as u32,
            }
        });
}
