//! The front door on `EXAI_WS_HOST:EXAI_WS_PORT`: WebSocket MCP on `/` and `/mcp`,
//! Streamable HTTP MCP on `/mcp`. Places are held by requests that were read whole and
//! authenticated, never by connections still sending ([`admission`]); headers and bodies
//! have deadlines ([`body`]); HTTP sessions are bounded ([`sessions`]); a failing
//! `accept` backs off (`exai_process::accept`). `/healthz` and `/readyz` answer
//! balancers ([`probes`]). Shutdown is staged ([`Server::serve`]), after a drain.

mod access;
mod admission;
mod body;
mod direct;
mod http;
mod message;
mod occupancy;
mod plain;
mod probes;
pub mod sessions;
mod streams;
mod under_way;
mod ws;

use crate::config::ServerConfig;
use crate::mcp::{McpCore, McpHandler};
use crate::EventEmitter;
use admission::Connection;
use bytes::Bytes;
use exai_proto::{ConnectionPhase, EventKind, RefusalReason, SampleClass, Transport};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sessions::BoundedSessions;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

pub use direct::call as answerable_in_place;
pub use message::{cancelled_request, check_frame};
pub use occupancy::Occupancy;

pub type Body = BoxBody<Bytes, Infallible>;

/// How long the accept loop waits for a connection closed to make room to be gone.
const EVICTION_WITHIN: Duration = Duration::from_millis(100);

/// After the calls are answered (or cancelled), how long sessions and connections get to
/// send their last answers and close frames.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Everything a connection needs, built once at start.
pub struct Server {
    config: ServerConfig,
    core: Arc<McpCore>,
    emitter: EventEmitter,
    http_mcp: StreamableHttpService<McpHandler, BoundedSessions>,
    /// Every place and count of the edge (made in `main`, read by the heartbeat and
    /// `status`).
    occupancy: Arc<Occupancy>,
    /// Upgraded WebSocket sessions, which outlive their HTTP connection's task, and the
    /// tasks each runs.
    sessions: TaskTracker,
    stages: ShutdownStages,
}

/// The steps of a shutdown, each a child of the daemon's root token.
#[derive(Clone)]
pub struct ShutdownStages {
    /// The drain has begun: `/readyz` answers 503 while everything is still served
    /// (EXAI_DRAIN_S), so balancers stop sending new work before `accepting` fires.
    pub draining: CancellationToken,
    /// Stop accepting; connections finish the request they are on; WebSocket sessions
    /// answer new requests with an error.
    pub accepting: CancellationToken,
    /// Cancel the model calls still running and answer them with an error.
    pub calls: CancellationToken,
    /// Close every session, WebSocket and HTTP.
    pub sessions: CancellationToken,
    /// How long calls may run after `accepting` (EXAI_SHUTDOWN_GRACE_S).
    pub grace: Duration,
}

impl ShutdownStages {
    pub fn new(root: &CancellationToken, grace: Duration) -> Self {
        Self {
            draining: root.child_token(),
            accepting: root.child_token(),
            calls: root.child_token(),
            sessions: root.child_token(),
            grace,
        }
    }
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
    pub fn new(
        config: ServerConfig,
        core: Arc<McpCore>,
        stages: ShutdownStages,
        occupancy: Arc<Occupancy>,
    ) -> Arc<Self> {
        let emitter = core.emitter.clone();
        let mut http_config = StreamableHttpServerConfig::default()
            .with_max_request_body_bytes(config.max_frame_bytes)
            .with_allowed_hosts(loopback_and(&config.allowed_hosts));
        http_config.cancellation_token = stages.sessions.clone();
        let handler_core = core.clone();
        let http_mcp = StreamableHttpService::new(
            move || Ok(McpHandler::new(handler_core.clone())),
            occupancy.http_sessions.clone(),
            http_config,
        );
        Arc::new(Self {
            config,
            core,
            emitter,
            http_mcp,
            occupancy,
            sessions: TaskTracker::new(),
            stages,
        })
    }

    /// Serves until `stages.accepting` fires, then shuts down in order: no new
    /// connections; calls in flight get `stages.grace` to finish, then are cancelled and
    /// answered with an error; then every session closes (WebSocket with 1001) and the
    /// connections end. Returns once they are gone, or [`CLOSE_WITHIN`] after the calls.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let connections = TaskTracker::new();
        connections.spawn(
            self.occupancy
                .http_sessions
                .clone()
                .expire_idle(self.stages.sessions.clone()),
        );
        let mut backoff = exai_process::accept::AcceptBackoff::new(
            "MCP",
            "raise the limit (ulimit -n) or lower EXAI_WS_MAX_CONNECTIONS / EXAI_WS_MAX_PENDING_CONNECTIONS",
        );
        let accepting = self.stages.accepting.clone();
        while let Some((stream, peer)) = backoff.next(&accepting, || listener.accept()).await {
            let _ = stream.set_nodelay(true);
            let (connection, evicted) = Connection::accepted(&self.occupancy.admission, peer.ip());
            connections.spawn(self.clone().connection(stream, peer, connection));
            if let Some(gone) = evicted {
                // Its descriptor is freed before another is taken.
                let _ = tokio::time::timeout(EVICTION_WITHIN, gone.cancelled()).await;
            }
        }
        drop(listener);
        info!(grace = ?self.stages.grace, calls_in_flight = self.core.calls_in_flight(),
            "no longer accepting connections; calls in flight have the grace period to finish");
        if tokio::time::timeout(self.stages.grace, self.core.calls_finished())
            .await
            .is_err()
        {
            info!(
                calls_in_flight = self.core.calls_in_flight(),
                "grace period over: cancelling the calls still running"
            );
        }
        self.stages.calls.cancel();
        let closed = async {
            self.core.calls_finished().await;
            // Their answers go out before the sessions close: WebSocket sessions close
            // by themselves once answered; HTTP answers end their request's stream.
            self.occupancy.websocket.none().await;
            self.occupancy.http_sessions.answered().await;
            self.stages.sessions.cancel();
            connections.close();
            self.sessions.close();
            connections.wait().await;
            self.sessions.wait().await;
            self.http_sessions_closed().await;
        };
        if tokio::time::timeout(CLOSE_WITHIN, closed).await.is_err() {
            self.stages.sessions.cancel();
            info!(
                websocket = self.sessions.len(),
                http_sessions = self.occupancy.http_sessions(),
                "sessions still open {CLOSE_WITHIN:?} after the calls; closing them"
            );
        }
    }

    /// Completes once rmcp has closed every HTTP session (their workers end on
    /// `stages.sessions`).
    async fn http_sessions_closed(&self) {
        self.occupancy.http_sessions.all_closed().await
    }

    /// Serves one connection: HTTP/1.1 with a header deadline (which also closes an idle
    /// keep-alive connection), until it ends, is closed to make room, or shutdown.
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        connection: Arc<Connection>,
    ) {
        let server = self.clone();
        let conn_state = connection.clone();
        let service = service_fn(move |req| {
            let server = server.clone();
            let connection = conn_state.clone();
            async move { Ok::<_, Infallible>(server.route(req, connection).await) }
        });
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.config.limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            _ = connection.evicted() => {
                debug!(%peer, "closing a connection that has not sent a whole authenticated request, to make room");
            }
            _ = self.stages.accepting.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = connection.evicted() => {}
                    _ = self.stages.sessions.cancelled() => {}
                }
            }
        }
        connection.closed();
    }

    async fn route(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
        connection: Arc<Connection>,
    ) -> Response<Body> {
        let path = req.uri().path();
        // Before any Host, Origin or token check: balancers send their own Host.
        if let Some(probe) = probes::Probe::of(path) {
            return probe.answer(&req, &self.stages.draining);
        }
        let is_mcp_path = path == "/mcp" || path == "/mcp/";
        if (path == "/" || is_mcp_path) && ws::is_upgrade(&req) {
            return ws::upgrade(self, req, connection);
        }
        if is_mcp_path {
            return http::handle(&self, req, connection).await;
        }
        text(
            404,
            "not found: MCP is served on /mcp (Streamable HTTP or WebSocket) and / (WebSocket); health on /healthz and /readyz\n",
        )
    }

    /// The answer when every place is taken, counted.
    fn too_many_connections(&self, transport: Transport) -> Response<Body> {
        self.connection_event(
            transport,
            ConnectionPhase::Refused,
            RefusalReason::TooManyConnections,
        );
        let mut response = text(
            503,
            "too many connections (EXAI_WS_MAX_CONNECTIONS); try later\n",
        );
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        response
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
