//! A connection to the Redis at `REDIS_URL`, made the one way both of its users need it
//! (conversations and tasks): lazily, so the daemon starts whether or not Redis is up,
//! one attempt per command, each connection attempt and answer bounded by `timeout` —
//! a call waits at most that on a Redis that is away, never behind the manager's own
//! backoff.

use crate::config::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Why no connection could be set up: said without the URL's password.
#[derive(Debug)]
pub struct ConnectError {
    pub message: String,
    pub cause: redis::RedisError,
}

/// A lazily connecting manager for `url`, and the URL as it may be shown.
pub fn connect(url: &str, timeout: Duration) -> Result<(ConnectionManager, String), ConnectError> {
    let shown_url = redact_url(url);
    let client = redis::Client::open(url).map_err(|cause| {
        let why = crate::redact::redact_urls_in(&cause.to_string());
        ConnectError {
            message: format!("invalid REDIS_URL {shown_url}: {why}"),
            cause,
        }
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(0);
    let conn =
        ConnectionManager::new_lazy_with_config(client, config).map_err(|cause| ConnectError {
            message: format!("cannot set up Redis at {shown_url}"),
            cause,
        })?;
    Ok((conn, shown_url))
}
