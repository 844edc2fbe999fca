//! How many clients the daemon holds, and for how long it waits on each: places for
//! authenticated requests, a separate and smaller pool for connections that have not
//! yet sent a whole, authenticated request, header and body deadlines, and the bound on
//! Streamable HTTP sessions.

use super::at_least;
use exai_process::settings::{EnvSource, SettingError, Settings};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// Connections serving an authenticated, fully read request, or a WebSocket session
    /// (EXAI_WS_MAX_CONNECTIONS); past it such a request gets 503.
    pub max_connections: usize,
    /// Connections whose request is not yet read and authenticated, idle keep-alive ones
    /// included (EXAI_WS_MAX_PENDING_CONNECTIONS); past it the oldest of them is closed.
    pub max_pending: usize,
    /// Both caps are defaults, so the daemon may lower them to fit its descriptor limit.
    pub caps_from_defaults: bool,
    /// A request's headers must arrive within this (EXAI_HTTP_HEADER_TIMEOUT_MS); an idle
    /// keep-alive connection is closed after it too.
    pub header_timeout: Duration,
    /// A request body must arrive within this in all (EXAI_HTTP_BODY_TIMEOUT_MS).
    pub body_timeout: Duration,
    /// ... and at this average rate or faster after its first [`BODY_GRACE`]
    /// (EXAI_HTTP_BODY_MIN_BYTES_PER_S).
    pub body_min_rate: u64,
    /// Streamable HTTP sessions kept (EXAI_HTTP_MAX_SESSIONS); past it the one idle the
    /// longest is closed, and when none is idle `initialize` gets 503.
    pub max_http_sessions: usize,
    /// A Streamable HTTP session with no request for this long is closed
    /// (EXAI_HTTP_SESSION_IDLE_S).
    pub http_session_idle: Duration,
    /// `GET /mcp` streams open at once on one session (EXAI_HTTP_MAX_STREAMS_PER_SESSION)
    /// and from one client address (EXAI_HTTP_MAX_STREAMS_PER_CLIENT); past either, 429.
    /// An open stream does not keep its session from being closed to make room.
    pub max_streams_per_session: usize,
    pub max_streams_per_client: usize,
    /// Bytes of Streamable HTTP request bodies held at once, from their first byte until
    /// answered (EXAI_REQUEST_BYTES_MAX); past it a request is answered 503.
    pub max_request_bytes: usize,
}

/// Time a body may take before its minimum rate applies.
pub const BODY_GRACE: Duration = Duration::from_secs(2);

pub(super) fn load(env: &dyn EnvSource, s: &Settings) -> Result<ConnectionLimits, SettingError> {
    let explicit = |key| env.get(key).is_some_and(|v| !v.is_empty());
    let caps_from_defaults =
        !explicit("EXAI_WS_MAX_CONNECTIONS") && !explicit("EXAI_WS_MAX_PENDING_CONNECTIONS");
    let ms = |key, default: u64, min: u64, max: u64| -> Result<Duration, SettingError> {
        s.get_checked(key, None, default, |v| {
            if (min..=max).contains(v) {
                Ok(())
            } else {
                Err(format!("expected {min} to {max} ms"))
            }
        })
        .map(Duration::from_millis)
    };
    Ok(ConnectionLimits {
        max_connections: s.get_checked("EXAI_WS_MAX_CONNECTIONS", None, 2048usize, at_least(1))?,
        max_pending: s.get_checked(
            "EXAI_WS_MAX_PENDING_CONNECTIONS",
            None,
            256usize,
            at_least(1),
        )?,
        caps_from_defaults,
        header_timeout: ms("EXAI_HTTP_HEADER_TIMEOUT_MS", 10_000, 100, 600_000)?,
        body_timeout: ms("EXAI_HTTP_BODY_TIMEOUT_MS", 30_000, 100, 3_600_000)?,
        body_min_rate: s.get_checked(
            "EXAI_HTTP_BODY_MIN_BYTES_PER_S",
            None,
            16_384u64,
            |n| match n {
                1.. => Ok(()),
                _ => Err("must be at least 1".into()),
            },
        )?,
        max_http_sessions: s.get_checked("EXAI_HTTP_MAX_SESSIONS", None, 1024usize, at_least(1))?,
        http_session_idle: Duration::from_secs(s.get_checked(
            "EXAI_HTTP_SESSION_IDLE_S",
            None,
            300u64,
            |n| match n {
                1..=86_400 => Ok(()),
                _ => Err("expected 1 to 86400 seconds".into()),
            },
        )?),
        max_streams_per_session: s.get_checked(
            "EXAI_HTTP_MAX_STREAMS_PER_SESSION",
            None,
            2usize,
            at_least(1),
        )?,
        max_streams_per_client: s.get_checked(
            "EXAI_HTTP_MAX_STREAMS_PER_CLIENT",
            None,
            32usize,
            at_least(1),
        )?,
        max_request_bytes: s.get_checked(
            "EXAI_REQUEST_BYTES_MAX",
            None,
            64usize << 20,
            at_least(1024),
        )?,
    })
}
