//! The dashboard's HTTP side: the page at `/` and `/monitoring_dashboard.html`, its
//! assets, and the `/ws` upgrade with one task per client.

use super::Dashboard;
use crate::http_server::{self, Body, Handler};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Largest message a client may send (a search is a few dozen bytes).
const MAX_CLIENT_MESSAGE: usize = 4096;

/// A client that has not taken a frame for this long is gone (lid closed, cable pulled,
/// or never meant to read): its place goes to the next.
const SEND_WITHIN: Duration = Duration::from_secs(5);

/// Searches one client may make per second; more are ignored.
const SEARCHES_PER_SECOND: u32 = 4;

const PLAIN: &str = "text/plain; charset=utf-8";

/// `loopback_only`: the dashboard is bound to a loopback address, so a `Host` naming
/// anything else is a DNS-rebinding page, not a local browser.
pub fn handler(
    dashboard: Arc<Dashboard>,
    loopback_only: bool,
    cancel: CancellationToken,
) -> Handler {
    Arc::new(move |req| {
        if loopback_only && !http_server::loopback_host(&req) {
            return http_server::text(
                403,
                PLAIN,
                "forbidden: this dashboard answers loopback host names only\n",
            );
        }
        if req.uri().path() == "/ws" {
            return upgrade(&dashboard, req, cancel.clone());
        }
        if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
            return http_server::text(405, PLAIN, "only GET here\n");
        }
        match super::assets::lookup(req.uri().path(), dashboard.config.static_dir.as_deref()) {
            Some(Ok((content_type, bytes))) => http_server::text(200, content_type, bytes),
            Some(Err(e)) => http_server::text(500, PLAIN, format!("{e}\n")),
            None => http_server::text(
                404,
                PLAIN,
                "not found; the dashboard is at / and its stream at /ws\n",
            ),
        }
    })
}

/// A browser page from another site must not read the stream: an `Origin`, when sent,
/// must name the host the request was sent to.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn upgrade(
    dashboard: &Arc<Dashboard>,
    mut req: Request<Incoming>,
    cancel: CancellationToken,
) -> Response<Body> {
    if !same_origin(&req) {
        return http_server::text(
            403,
            PLAIN,
            "forbidden: the page's origin is not this host\n",
        );
    }
    let wants_ws = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let accept = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (true, true, Some(accept)) = (wants_ws, version_ok, accept) else {
        return http_server::text(
            400,
            PLAIN,
            "bad WebSocket upgrade: Upgrade: websocket, Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required\n",
        );
    };
    let Some((id, frames)) = dashboard.join() else {
        return http_server::text(
            503,
            PLAIN,
            "too many dashboard clients (MONITORING_MAX_CLIENTS)\n",
        );
    };
    let upgrading = hyper::upgrade::on(&mut req);
    let dashboard = dashboard.clone();
    tokio::spawn(async move {
        match upgrading.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve_client(&dashboard, ws, frames, cancel).await;
            }
            Err(e) => debug!(error = %e, "dashboard WebSocket upgrade failed"),
        }
        dashboard.leave(id);
    });
    Response::builder()
        .status(101)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header(SEC_WEBSOCKET_ACCEPT, accept)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| http_server::text(500, PLAIN, "cannot build the upgrade response\n"))
}

/// Sends the snapshot, then the queued frames; answers searches. Ends when the client
/// goes, the agent shuts down, or a send fails.
async fn serve_client<S>(
    dashboard: &Dashboard,
    ws: WebSocketStream<S>,
    mut frames: mpsc::Receiver<Utf8Bytes>,
    cancel: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    // The snapshot is the largest frame (a few hundred KB): a client that does not take it
    // in time gives its place back like any other slow client.
    let snapshot = Utf8Bytes::from(dashboard.snapshot());
    tokio::select! {
        sent = tokio::time::timeout(SEND_WITHIN, tx.send(Message::Text(snapshot))) => {
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
        _ = cancel.cancelled() => return,
    }
    let mut searches = (Instant::now(), 0u32);
    loop {
        let outgoing = tokio::select! {
            _ = cancel.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                return;
            }
            frame = frames.recv() => match frame {
                Some(text) => Message::Text(text),
                None => return,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(text))) => match search_request(&text) {
                    Some(needle) if allow_search(&mut searches) => {
                        Message::Text(Utf8Bytes::from(dashboard.search(&needle).to_string()))
                    }
                    _ => continue,
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        // A client that stopped reading must not keep its place, nor this task past
        // shutdown.
        tokio::select! {
            sent = tokio::time::timeout(SEND_WITHIN, tx.send(outgoing)) => {
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
            _ = cancel.cancelled() => return,
        }
    }
}

/// Counts a search against this second's allowance.
fn allow_search(window: &mut (Instant, u32)) -> bool {
    if window.0.elapsed() >= Duration::from_secs(1) {
        *window = (Instant::now(), 0);
    }
    window.1 += 1;
    window.1 <= SEARCHES_PER_SECOND
}

/// `{"type":"search","correlation_id":"…"}` → the id searched for.
fn search_request(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value["type"] != "search" {
        return None;
    }
    value["correlation_id"]
        .as_str()
        .map(|s| s.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemons::{Daemons, DaemonsConfig};
    use crate::health::Health;
    use crate::metrics::{Families, Registry};

    fn dashboard() -> Dashboard {
        let registry = Registry::new();
        let families = Arc::new(Families::new(&registry));
        let daemons = Arc::new(Daemons::new(
            families,
            DaemonsConfig {
                ttl: Duration::from_secs(60),
                max_daemons: 8,
                max_models: 8,
            },
        ));
        let config = crate::config::AgentConfig::load(&[("X", "1")], &Default::default()).unwrap();
        let (_publish, findings) = tokio::sync::watch::channel(Arc::default());
        let health = Arc::new(Health::new(config.health_checks, daemons.clone(), findings));
        Dashboard::new(config.dashboard, &registry, daemons, health)
    }

    /// A client that takes nothing, not even the snapshot, gives its place back after the
    /// time limit instead of holding it for as long as it keeps the socket open.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_is_let_go_after_the_time_limit() {
        let dashboard = dashboard();
        // A pipe with room for 64 bytes: the snapshot alone does not fit.
        let (ours, _theirs) = tokio::io::duplex(64);
        let ws = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
        let (_id, frames) = dashboard.join().unwrap();
        let started = tokio::time::Instant::now();
        serve_client(&dashboard, ws, frames, CancellationToken::new()).await;
        // Paused time: this is the limit the task waited, not the machine's speed.
        assert_eq!(started.elapsed(), SEND_WITHIN);
    }

    #[test]
    fn reads_a_search_and_ignores_anything_else() {
        assert_eq!(
            search_request(r#"{"type":"search","correlation_id":"abc"}"#),
            Some("abc".into())
        );
        assert_eq!(search_request(r#"{"type":"other"}"#), None);
        assert_eq!(search_request("not json"), None);
        let long = format!(
            r#"{{"type":"search","correlation_id":"{}"}}"#,
            "x".repeat(500)
        );
        assert_eq!(search_request(&long).unwrap().len(), 64);
    }
}
