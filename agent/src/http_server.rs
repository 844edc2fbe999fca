//! A small HTTP/1.1 server shared by the metrics, health and dashboard ports: bind at
//! start (so a taken port fails the start with a message naming the setting), then
//! serve with a handler until shutdown.

use exai_process::accept::AcceptBackoff;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub type Body = Full<Bytes>;

/// Answers one request. Runs on the connection's task: it must not wait on a dependency.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Response<Body> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("cannot bind {setting} {addr}: {source}")]
pub struct BindError {
    pub setting: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr`; `setting` names the configuration that chose it, for the error.
pub async fn bind(setting: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        setting,
        addr,
        source,
    })
}

/// Serves until `cancel` fires, then waits for open connections to finish.
pub async fn serve(listener: TcpListener, handler: Handler, cancel: CancellationToken) {
    serve_with(listener, handler, cancel, None).await
}

/// Like [`serve`], with each connection's kernel send buffer capped at `send_buffer`
/// bytes: a client that stops reading then holds that much, not megabytes, and backs up
/// into its own bounded queue at once.
pub async fn serve_with(
    listener: TcpListener,
    handler: Handler,
    cancel: CancellationToken,
    send_buffer: Option<usize>,
) {
    let tracker = TaskTracker::new();
    let what = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut backoff = AcceptBackoff::new(what, DESCRIPTORS);
    while let Some((stream, peer)) = backoff.next(&cancel, || listener.accept()).await {
        if let Some(bytes) = send_buffer {
            if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(bytes) {
                debug!(%peer, error = %e, "cannot set the send buffer");
            }
        }
        let handler = handler.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                // The dashboard's /ws upgrades; other handlers never ask to.
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "http connection ended with an error");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    // A client that never finishes must not hold up shutdown.
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// What the agent's accept loops say to do when out of file descriptors.
pub const DESCRIPTORS: &str = "raise the limit (ulimit -n)";

/// Whether the request's `Host` names a loopback address (or there is none). A server
/// bound to loopback answers only those: anything else is a DNS-rebinding page.
pub fn loopback_host(req: &Request<Incoming>) -> bool {
    match req.headers().get(hyper::header::HOST) {
        None => true,
        Some(host) => host.to_str().is_ok_and(exai_process::host::is_loopback),
    }
}

/// The answer to a request whose `Host` is not a loopback name.
pub fn foreign_host() -> Response<Body> {
    text(
        403,
        "text/plain; charset=utf-8",
        "forbidden: bound to loopback, this server answers loopback host names only\n",
    )
}

/// A plain-text response.
pub fn text(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
