//! WebSocket MCP: one JSON-RPC message per text frame, the `mcp` subprotocol selected when
//! offered. rmcp has no WebSocket transport, so this adapter is hand-rolled: it decides
//! what bad frames get (-32700, -32600, close codes), caps requests in flight per
//! connection, and counts every message. Valid messages go to rmcp over channels.

mod session;

use super::admission::Connection;
use super::{text, Body, Server};
use exai_proto::{ConnectionPhase, RefusalReason, Transport};
use http_body_util::{BodyExt, Empty};
use hyper::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

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
    let admitted = super::access::admit(
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
                session::WsSession::run(server, ws).await;
            }
            Err(e) => debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    response
        .body(Empty::new().boxed())
        .unwrap_or_else(|_| text(500, "cannot build the upgrade response\n"))
}
