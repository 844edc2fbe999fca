//! Bodies: requests read within a limit; responses whole, or scripted to pace, stall
//! or break off.

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body as _, Bytes, Frame, Incoming};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub type Body = UnsyncBoxBody<Bytes, Abort>;

/// Why a response ended without completing; hyper drops the connection on either.
#[derive(Debug, thiserror::Error)]
pub enum Abort {
    #[error("connection cut by an injected fault")]
    Cut,
    #[error("fake-llm is shutting down")]
    ShuttingDown,
    #[error("the request body could not be read")]
    RequestBody,
}

/// Reads a whole request body of at most `limit` bytes. A larger one is read to the end
/// without being kept (up to [`DRAIN_LIMIT`]), so the client, still sending, gets to read
/// the 413 instead of a reset connection.
pub async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    let mut body = body;
    let expected = body.size_hint().exact().unwrap_or(0) as usize;
    let mut kept = Vec::with_capacity(expected.min(limit));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Client)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total <= limit {
            kept.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            return Err(ReadError::TooLarge);
        } else {
            kept = Vec::new();
        }
    }
    if total > limit {
        return Err(ReadError::TooLarge);
    }
    Ok(Bytes::from(kept))
}

/// Beyond this an oversized body is not drained; the connection is dropped after the 413.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    TooLarge,
    /// The client went away or sent a broken body.
    Client,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What happens once a script's events are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// End the body normally.
    Finish,
    /// Drop the connection mid-body.
    Cut,
    /// Send nothing more until the client leaves or the server stops.
    Stall,
    /// Send [`ENDLESS_CHUNK`] after [`ENDLESS_CHUNK`], never a newline, until the client
    /// leaves or the server stops.
    Endless,
}

/// What an endless body repeats.
const ENDLESS_CHUNK: &[u8] = &[b'x'; 64 << 10];

/// A body sent piece by piece.
pub struct Script {
    /// Each event, with the pause before it.
    pub events: Vec<(Duration, Bytes)>,
    pub tail: Tail,
    /// Counts a body the client let go of before it ended (not one cut by a fault or
    /// ended by shutdown).
    pub abandoned: Option<Arc<AtomicU64>>,
}

/// Notices a body dropped before its end.
struct Watch {
    ended: bool,
    abandoned: Option<Arc<AtomicU64>>,
    stop: CancellationToken,
}

impl Watch {
    fn end(&mut self) {
        self.ended = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.ended && !self.stop.is_cancelled() {
            if let Some(counter) = &self.abandoned {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Script {
    pub fn into_body(self, stop: CancellationToken) -> Body {
        let Script {
            events,
            tail,
            abandoned,
        } = self;
        let watch = Watch {
            ended: false,
            abandoned,
            stop: stop.clone(),
        };
        let state = (events.into_iter(), Some(tail), stop, watch);
        let frames = futures_util::stream::unfold(
            state,
            move |(mut events, tail, stop, mut watch)| async move {
                if let Some((pause, event)) = events.next() {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    return Some((Ok(Frame::data(event)), (events, tail, stop, watch)));
                }
                let abort = match tail {
                    None | Some(Tail::Finish) => {
                        watch.end();
                        return None;
                    }
                    Some(Tail::Endless) => {
                        if stop.is_cancelled() {
                            watch.end();
                            Abort::ShuttingDown
                        } else {
                            let chunk = Bytes::from_static(ENDLESS_CHUNK);
                            return Some((Ok(Frame::data(chunk)), (events, tail, stop, watch)));
                        }
                    }
                    Some(Tail::Cut) => {
                        watch.end();
                        // hyper sends buffered bytes when the body is pending; erroring at once
                        // would discard what was "sent" along with the connection.
                        tokio::task::yield_now().await;
                        Abort::Cut
                    }
                    Some(Tail::Stall) => {
                        stop.cancelled().await;
                        Abort::ShuttingDown
                    }
                };
                // Nothing follows an error: the next poll ends the stream.
                Some((Err(abort), (events, None, stop, watch)))
            },
        );
        StreamBody::new(frames).boxed_unsync()
    }
}

/// Pauses for a body's events: none before the first, `pace` before each later one.
pub fn paced(events: Vec<Bytes>, pace: Option<Duration>) -> Vec<(Duration, Bytes)> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| (pace.filter(|_| i > 0).unwrap_or_default(), e))
        .collect()
}
