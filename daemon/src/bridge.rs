//! `exai-daemon bridge [URL]`: stdio ↔ WebSocket, for clients that only spawn stdio
//! servers (Claude Desktop, Claude Code, IDEs). Each stdin line goes out as one text
//! frame; each text frame comes back as one stdout line. stdout carries only MCP
//! messages; diagnostics go to stderr. Requests are tracked by id, so when stdin ends
//! the answers still owed are delivered before the bridge exits.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid daemon URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot connect to the daemon at {url}: {why}")]
    Connect { url: String, why: String },
    #[error("the daemon closed the connection: {0}")]
    Closed(String),
    #[error("stdout is gone: {0}")]
    Stdout(std::io::Error),
}

/// Relays until stdin ends (a clean exit) or the daemon goes away (an error).
/// The URL without its query, which may hold `?token=`: errors go to stderr, which
/// clients such as Claude Desktop keep in log files.
fn shown(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?[query hidden]"),
        None => url.to_string(),
    }
}

pub async fn run(url: &str, token: Option<&str>) -> Result<(), BridgeError> {
    let mut request = url.into_client_request().map_err(|e| BridgeError::BadUrl {
        url: shown(url),
        why: e.to_string(),
    })?;
    let headers = request.headers_mut();
    headers.insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
    if let Some(token) = token {
        let value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| BridgeError::BadUrl {
                url: shown(url),
                why: "EXAI_WS_TOKEN is not a valid header value".into(),
            })?;
        headers.insert("authorization", value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| BridgeError::Connect {
            url: shown(url),
            why: e.to_string(),
        })?;
    let (mut to_daemon, mut from_daemon) = ws.split();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    // Ids of requests sent and not yet answered.
    let mut owed: HashSet<String> = HashSet::new();
    let mut stdin_open = true;
    let mut drain_deadline = None;
    loop {
        if !stdin_open && owed.is_empty() {
            let _ = to_daemon.close().await;
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(drain_deadline.unwrap_or_else(far_future)), if drain_deadline.is_some() => {
                eprintln!("exai-daemon bridge: {} answers still owed after stdin closed; giving up", owed.len());
                let _ = to_daemon.close().await;
                return Ok(());
            }
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    if let Some(id) = request_id(&line) {
                        owed.insert(id);
                    }
                    if let Err(e) = to_daemon.send(Message::text(line)).await {
                        return Err(BridgeError::Closed(e.to_string()));
                    }
                }
                // The client is done: deliver what is owed, then close.
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    drain_deadline = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
                }
            },
            frame = from_daemon.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(id) = response_id(text.as_str()) {
                        owed.remove(&id);
                    }
                    let mut line = text.as_str().replace('\n', " ");
                    line.push('\n');
                    stdout.write_all(line.as_bytes()).await.map_err(BridgeError::Stdout)?;
                    stdout.flush().await.map_err(BridgeError::Stdout)?;
                }
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_else(|| "no reason given".into());
                    return Err(BridgeError::Closed(why));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(BridgeError::Closed(e.to_string())),
                None => return Err(BridgeError::Closed("connection ended".into())),
            },
        }
    }
}

/// How long the bridge waits, after stdin ends, for answers to requests it forwarded.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// The id of a request (a message with both `id` and `method`), as JSON text.
fn request_id(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    v.get("method")?;
    Some(v.get("id")?.to_string())
}

/// The id of a response (a message with `id` and no `method`), as JSON text.
fn response_id(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("method").is_some() {
        return None;
    }
    Some(v.get("id")?.to_string())
}
