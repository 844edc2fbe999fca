//! Accepts connections, serves HTTP/1.1 on each, and drains them at shutdown.

use super::routes::{route, Context};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

/// How long open connections get to finish after shutdown starts.
const GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed accept (usually out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub async fn run(listener: TcpListener, ctx: Arc<Context>, shutdown: impl Future<Output = ()>) {
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, ctx.clone()));
                }
                Err(e) => {
                    eprintln!("fake-llm: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    ctx.stop.cancel();
    connections.close();
    if tokio::time::timeout(GRACE, connections.wait())
        .await
        .is_err()
    {
        eprintln!("fake-llm: connections still open after {GRACE:?}; exiting anyway");
    }
}

async fn connection(stream: TcpStream, ctx: Arc<Context>) {
    // Small responses and stream chunks must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let stop = ctx.stop.clone();
    let service = service_fn(move |req| route(ctx.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    // Errors here are clients hanging up or injected cuts: nothing to report.
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}
