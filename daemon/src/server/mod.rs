//! The front door on `EXAI_WS_HOST:EXAI_WS_PORT`: WebSocket MCP on `/` and `/mcp`,
//! Streamable HTTP MCP on `/mcp`, a cap on open connections.

mod http;
mod ws;

use crate::config::ServerConfig;
use crate::mcp::{McpCore, McpHandler};
use crate::EventEmitter;
use bytes::Bytes;
use exai_proto::{ConnectionPhase, EventKind, RefusalReason, SampleClass, Transport};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

pub type Body = BoxBody<Bytes, Infallible>;

/// A connection that has not sent a request's headers within this is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole answer to a connection over `EXAI_WS_MAX_CONNECTIONS`.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: 58\r\n\r\ntoo many connections (EXAI_WS_MAX_CONNECTIONS); try later\n";

/// Everything a connection needs, built once at start.
pub struct Server {
    config: ServerConfig,
    core: Arc<McpCore>,
    emitter: EventEmitter,
    http_mcp: StreamableHttpService<McpHandler, LocalSessionManager>,
    /// One permit per open connection; none left means refuse.
    connections: Arc<Semaphore>,
    /// Upgraded WebSocket sessions, which outlive their HTTP connection's task.
    sessions: TaskTracker,
    /// Fired at shutdown: sessions finish what is in flight and close.
    shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot bind EXAI_WS_PORT {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

impl Server {
    pub fn new(config: ServerConfig, core: Arc<McpCore>, cancel: CancellationToken) -> Arc<Self> {
        let emitter = core.emitter.clone();
        let mut http_config = StreamableHttpServerConfig::default()
            .with_max_request_body_bytes(config.max_frame_bytes)
            .with_allowed_hosts(loopback_and(&config.allowed_hosts));
        http_config.cancellation_token = cancel.clone();
        let handler_core = core.clone();
        let http_mcp = StreamableHttpService::new(
            move || Ok(McpHandler::new(handler_core.clone())),
            Arc::new(LocalSessionManager::default()),
            http_config,
        );
        let connections = Arc::new(Semaphore::new(config.max_connections));
        Arc::new(Self {
            config,
            core,
            emitter,
            http_mcp,
            connections,
            sessions: TaskTracker::new(),
            shutdown: cancel,
        })
    }

    /// Accepts connections until `cancel` fires, then gives open ones `grace` to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        cancel: CancellationToken,
        grace: Duration,
    ) {
        let tracker = TaskTracker::new();
        loop {
            let (mut stream, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        debug!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                self.connection_event(
                    Transport::WebSocket,
                    ConnectionPhase::Refused,
                    RefusalReason::TooManyConnections,
                );
                tracker.spawn(async move {
                    // Read what the client sent first: closing a socket with unread
                    // input resets it, and the reset can discard the 503.
                    let mut request = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut request))
                            .await;
                    let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
                    let _ = stream.shutdown().await;
                });
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let cancel = cancel.clone();
            // Shared with an upgraded WebSocket session, which outlives this connection's
            // HTTP task: the place is freed when both are done.
            let permit = Arc::new(permit);
            tracker.spawn(async move {
                let service = service_fn(move |req| {
                    let server = server.clone();
                    let permit = permit.clone();
                    async move { Ok::<_, Infallible>(server.route(req, permit).await) }
                });
                let conn = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tokio::pin!(conn);
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    _ = cancel.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.as_mut().await;
                    }
                }
            });
        }
        tracker.close();
        self.sessions.close();
        let drained = async {
            tracker.wait().await;
            self.sessions.wait().await;
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            info!(
                ?grace,
                "connections still open after the grace period; closing them"
            );
        }
    }

    async fn route(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
        permit: Arc<OwnedSemaphorePermit>,
    ) -> Response<Body> {
        let path = req.uri().path();
        let is_mcp_path = path == "/mcp" || path == "/mcp/";
        if (path == "/" || is_mcp_path) && ws::is_upgrade(&req) {
            return ws::upgrade(self, req, permit);
        }
        if is_mcp_path {
            return http::handle(&self, req).await;
        }
        text(
            404,
            "not found: MCP is served on /mcp (Streamable HTTP or WebSocket) and / (WebSocket)\n",
        )
    }

    fn connection_event(
        &self,
        transport: Transport,
        phase: ConnectionPhase,
        reason: RefusalReason,
    ) {
        self.emitter.totals().connection(transport, phase, reason);
        self.emitter
            .record_uncorrelated(SampleClass::Connections, || EventKind::Connection {
                transport,
                phase,
                reason,
            });
    }
}

fn loopback_and(extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    hosts.extend(extra.iter().cloned());
    hosts
}

pub fn text(status: u16, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}
