//! WebSocket MCP: one JSON-RPC message per text frame, the `mcp` subprotocol selected when
//! offered. rmcp has no WebSocket transport, so this adapter is hand-rolled: it decides
//! what bad frames get (-32700, -32600, close codes), caps requests in flight per
//! connection, and counts every message. Valid messages go to rmcp over channels.

use super::admission::Connection;
use super::message::{cancelled_request, check_frame};
use super::{text, Body, Server};
use crate::mcp::McpHandler;
use exai_proto::{
    ConnectionPhase, CorrelationId, Direction, EventKind, RefusalReason, SampleClass, Transport,
};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rmcp::model::{ClientJsonRpcMessage, ErrorCode, ErrorData, RequestId, ServerJsonRpcMessage};
use rmcp::ServiceExt;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::PollSender;
use tracing::{debug, info};

const NO_CORRELATION: CorrelationId = CorrelationId::empty();

/// How long a new session may take to send `initialize`.
const INITIALIZE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How long one message may take to go out before the client is deemed gone.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// While draining at shutdown, how often a session checks whether its last request was
/// answered.
const DRAIN_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn offers_mcp<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "mcp")
}

/// Checks the upgrade request, answers 101, and runs the session on the upgraded socket.
pub fn upgrade(
    server: Arc<Server>,
    mut req: Request<hyper::body::Incoming>,
    connection: Arc<Connection>,
) -> Response<Body> {
    let admitted = super::admit::admit(
        &server.config,
        req.headers(),
        req.uri().query(),
        Transport::WebSocket,
    );
    if let Err(refused) = admitted {
        server.connection_event(
            Transport::WebSocket,
            ConnectionPhase::Refused,
            refused.reason,
        );
        return text(refused.status, refused.body);
    }
    let key = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let version_ok = req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let (Some(accept), true) = (key, version_ok) else {
        server.connection_event(
            Transport::WebSocket,
            ConnectionPhase::Refused,
            RefusalReason::BadRequest,
        );
        return text(
            400,
            "bad WebSocket upgrade: Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required\n",
        );
    };
    // Authenticated, and an upgrade has no body: now it may hold a place, for as long as
    // the session lives.
    let Some(place) = connection.activate() else {
        return server.too_many_connections(Transport::WebSocket);
    };
    let place = place.for_session();
    let mut response = Response::builder()
        .status(101)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header(SEC_WEBSOCKET_ACCEPT, accept);
    if offers_mcp(&req) {
        response = response.header(SEC_WEBSOCKET_PROTOCOL, "mcp");
    }
    let upgrading = hyper::upgrade::on(&mut req);
    let sessions = server.sessions.clone();
    sessions.spawn(async move {
        let _place = place;
        match upgrading.await {
            Ok(upgraded) => {
                let limit = server.config.max_frame_bytes;
                // tungstenite zero-fills its read buffer up to this size on every read; the
                // 128 KiB default made that memset the daemon's largest cost per message.
                let config = WebSocketConfig::default()
                    .read_buffer_size(8 * 1024)
                    .max_message_size(Some(limit))
                    .max_frame_size(Some(limit));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run_session(server, ws).await;
            }
            Err(e) => debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    response
        .body(Empty::new().boxed())
        .unwrap_or_else(|_| text(500, "cannot build the upgrade response\n"))
}

/// Counts an open session for as long as it lives.
struct OpenSession<'a>(&'a Server);

impl<'a> OpenSession<'a> {
    fn new(server: &'a Server) -> Self {
        server.websocket_sessions.fetch_add(1, Relaxed);
        server
            .emitter
            .totals()
            .open_connections
            .fetch_add(1, Relaxed);
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
        self.0.websocket_sessions.fetch_sub(1, Relaxed);
        self.0
            .emitter
            .totals()
            .open_connections
            .fetch_sub(1, Relaxed);
        self.0.connection_event(
            Transport::WebSocket,
            ConnectionPhase::Closed,
            RefusalReason::None,
        );
    }
}

/// Whether a request may go on to rmcp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// Too many requests of this connection await their answers.
    Full,
    /// A request with this id awaits its answer: answers could not be told apart.
    DuplicateId,
}

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
}

type Upgraded = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn run_session(server: Arc<Server>, ws: Upgraded) {
    let _open = OpenSession::new(&server);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let in_flight: Arc<Mutex<HashSet<RequestId>>> = Arc::default();

    // rmcp's side: a sink it writes to and a stream it reads from.
    // Messages travel boxed: a channel allocates a block of 32 slots up front, and
    // rmcp's message types are ~400 bytes, so inline slots cost ~12 KiB per channel per
    // session — a tenth of the daemon's memory at 1,000 sessions.
    let (from_rmcp_tx, mut from_rmcp_rx) = mpsc::channel::<Box<ServerJsonRpcMessage>>(64);
    let (to_rmcp_tx, mut to_rmcp_rx) = mpsc::channel::<Box<ClientJsonRpcMessage>>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(64);

    // Single writer: rmcp's messages and the adapter's own answers, in order.
    let writer = {
        let server = server.clone();
        let in_flight = in_flight.clone();
        server.sessions.clone().spawn(async move {
            // The adapter's own messages first, and after rmcp's side has closed too:
            // a close frame queued by the reader must still go out.
            let mut rmcp_open = true;
            loop {
                let next = tokio::select! {
                    biased;
                    m = out_rx.recv() => m,
                    m = from_rmcp_rx.recv(), if rmcp_open => match m {
                        Some(m) => Some(Outbound::Message(m)),
                        None => {
                            rmcp_open = false;
                            continue;
                        }
                    },
                };
                match next {
                    Some(Outbound::Message(message)) => {
                        if let ServerJsonRpcMessage::Response(r) = message.as_ref() {
                            in_flight
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&r.id);
                        } else if let ServerJsonRpcMessage::Error(e) = message.as_ref() {
                            if let Some(id) = &e.id {
                                in_flight
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .remove(id);
                            }
                        }
                        let Ok(json) = crate::mcp::compat::to_json(&message) else {
                            continue;
                        };
                        count_message(&server, Direction::Outbound, json.len());
                        // A client that stops reading for this long is gone: end the
                        // session, which cancels its work and frees its places.
                        if send_within(&mut ws_tx, Message::text(json), WRITE_TIMEOUT)
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Some(Outbound::Close(code, reason)) => {
                        let _ = ws_tx
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        break;
                    }
                    None => break,
                }
            }
            let _ = ws_tx.close().await;
        })
    };

    // Reader: checks each frame before rmcp sees it.
    let reader = {
        let server = server.clone();
        let in_flight = in_flight.clone();
        let out_tx = out_tx.clone();
        server.sessions.clone().spawn(async move {
            let max_in_flight = server.config.max_inflight_per_connection;
            // Built once: a `cancelled()` made per frame would register a waiter on the
            // token every session shares, under its lock, for every message.
            let draining_begins = server.stages.accepting.cancelled();
            let closing = server.stages.sessions.cancelled();
            tokio::pin!(draining_begins, closing);
            // Once the server stops accepting: new requests are answered with an error,
            // those in flight are answered (or cancelled after the grace), then the
            // session closes with 1001.
            let mut draining = false;
            loop {
                if draining && in_flight.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                    let _ = out_tx.send(Outbound::Close(CloseCode::Away, "the server is shutting down")).await;
                    break;
                }
                let frame = tokio::select! {
                    frame = ws_rx.next() => match frame {
                        Some(frame) => frame,
                        None => break,
                    },
                    _ = &mut draining_begins, if !draining => {
                        draining = true;
                        continue;
                    }
                    _ = tokio::time::sleep(DRAIN_CHECK), if draining => continue,
                    _ = &mut closing => {
                        let _ = out_tx.send(Outbound::Close(CloseCode::Away, "the server is shutting down")).await;
                        break;
                    }
                };
                let text = match frame {
                    Ok(Message::Text(text)) => text,
                    Ok(Message::Binary(_)) => {
                        let _ = out_tx
                            .send(Outbound::Close(
                                CloseCode::Unsupported,
                                "binary frames are not supported: send JSON-RPC as text",
                            ))
                            .await;
                        break;
                    }
                    Ok(Message::Close(_)) => break,
                    Ok(_) => continue,
                    Err(WsError::Capacity(_)) => {
                        let _ = out_tx
                            .send(Outbound::Close(
                                CloseCode::Size,
                                "message too big (EXAI_WS_MAX_FRAME_BYTES)",
                            ))
                            .await;
                        break;
                    }
                    Err(e) => {
                        debug!(error = %e, "WebSocket read failed");
                        break;
                    }
                };
                count_message(&server, Direction::Inbound, text.len());
                match check_frame(text.as_str()) {
                    Err(error) => {
                        crate::mcp::count_early(&server.emitter, Transport::WebSocket);
                        let _ = out_tx.send(Outbound::Message(error)).await;
                    }
                    Ok(message) => {
                        if let (ClientJsonRpcMessage::Request(r), true) = (&message, draining) {
                            crate::mcp::count_early(&server.emitter, Transport::WebSocket);
                            let error = ErrorData::new(
                                ErrorCode(-32000),
                                "the server is shutting down; send the request again once it is back",
                                None,
                            );
                            let _ = out_tx.send(Outbound::refusal(error, &r.id)).await;
                            continue;
                        }
                        if let ClientJsonRpcMessage::Request(r) = &message {
                            let admitted = {
                                let mut ids = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                                if ids.contains(&r.id) {
                                    Admission::DuplicateId
                                } else if ids.len() >= max_in_flight {
                                    Admission::Full
                                } else {
                                    ids.insert(r.id.clone());
                                    Admission::Admitted
                                }
                            };
                            if admitted == Admission::DuplicateId {
                                let error = ErrorData::invalid_request(
                                    "Invalid Request: this id is already in use by a request awaiting its answer",
                                    None,
                                );
                                let _ = out_tx.send(Outbound::refusal(error, &r.id)).await;
                                continue;
                            }
                            if admitted == Admission::Full {
                                let error = ErrorData::new(
                                    ErrorCode(-32000),
                                    format!("too many requests in flight on this connection (at most {max_in_flight}: EXAI_WS_MAX_INFLIGHT_PER_CONNECTION); wait for an answer"),
                                    None,
                                );
                                let _ = out_tx.send(Outbound::refusal(error, &r.id)).await;
                                continue;
                            }
                        }
                        if let Some(cancelled) = cancelled_request(&message) {
                            in_flight
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&cancelled);
                        }
                        if to_rmcp_tx.send(Box::new(message)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Dropping `to_rmcp_tx` ends rmcp's stream: the service quits and cancels
            // whatever is still running for this client.
        })
    };

    let inbound =
        futures_util::stream::poll_fn(move |cx| to_rmcp_rx.poll_recv(cx).map(|m| m.map(|m| *m)));
    let sink = PollSender::new(from_rmcp_tx).with(|m: ServerJsonRpcMessage| {
        std::future::ready(Ok::<
            _,
            tokio_util::sync::PollSendError<Box<ServerJsonRpcMessage>>,
        >(Box::new(m)))
    });
    let serving = McpHandler::new(server.core.clone()).serve((sink, Box::pin(inbound)));
    // A connection that never initializes must not hold its place.
    match tokio::time::timeout(INITIALIZE_WITHIN, serving).await {
        Ok(Ok(running)) => {
            let _ = running.waiting().await;
        }
        Err(_) => {
            info!("MCP session closed: no initialize within {INITIALIZE_WITHIN:?}");
            let _ = out_tx
                .send(Outbound::Close(
                    CloseCode::Policy,
                    "initialize was not sent in time",
                ))
                .await;
        }
        Ok(Err(e)) => {
            info!(error = %e, "MCP session ended before initialize");
            let _ = out_tx
                .send(Outbound::Close(
                    CloseCode::Policy,
                    "the first request must be initialize",
                ))
                .await;
        }
    }
    drop(out_tx);
    reader.abort();
    let _ = writer.await;
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
