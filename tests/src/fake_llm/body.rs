//! Bodies: requests read within a limit; responses whole, or scripted to pace, stall
//! or break off.

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body as _, Bytes, Frame, Incoming};
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
    pub events: Vec<Bytes>,
    /// Pause before every event after the first; `None` sends them back to back.
    pub pace: Option<Duration>,
    pub tail: Tail,
}

impl Script {
    pub fn into_body(self, stop: CancellationToken) -> Body {
        let Script { events, pace, tail } = self;
        let state = (events.into_iter().enumerate(), Some(tail), stop);
        let frames =
            futures_util::stream::unfold(state, move |(mut events, tail, stop)| async move {
                if let Some((i, event)) = events.next() {
                    if let (Some(pace), true) = (pace, i > 0) {
                        tokio::time::sleep(pace).await;
                    }
                    return Some((Ok(Frame::data(event)), (events, tail, stop)));
                }
                let abort = match tail? {
                    Tail::Finish => return None,
                    Tail::Endless => {
                        if stop.is_cancelled() {
                            Abort::ShuttingDown
                        } else {
                            let chunk = Bytes::from_static(ENDLESS_CHUNK);
                            return Some((Ok(Frame::data(chunk)), (events, tail, stop)));
                        }
                    }
                    Tail::Cut => {
                        // hyper sends buffered bytes when the body is pending; erroring at once
                        // would discard what was "sent" along with the connection.
                        tokio::task::yield_now().await;
                        Abort::Cut
                    }
                    Tail::Stall => {
                        stop.cancelled().await;
                        Abort::ShuttingDown
                    }
                };
                // Nothing follows an error: the next poll ends the stream.
                Some((Err(abort), (events, None, stop)))
            });
        StreamBody::new(frames).boxed_unsync()
    }
}
