//! A raw WebSocket JSON-RPC client for tests that need to send what a well-behaved SDK
//! never would: invalid JSON, wrong versions, binary frames, oversized frames.

use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::CloseFrame;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct RawWs {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// The response headers of the upgrade.
    pub handshake: tungstenite::http::Response<Option<Vec<u8>>>,
}

/// What ended a connection from the server's side.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Close(Option<(u16, String)>),
    Eof,
}

/// Opens a WebSocket to `url` with extra headers; `Err` carries the HTTP status of a
/// refused upgrade.
pub fn connect(url: &str, headers: &[(&str, &str)]) -> Result<RawWs, u16> {
    match try_connect(url, headers) {
        Ok(ws) => Ok(ws),
        Err(Refused::Status(status)) => Err(status),
        Err(Refused::Unreachable(e)) => panic!("cannot connect to {url}: {e}"),
    }
}

/// Why [`try_connect`] did not open a session.
#[derive(Debug)]
pub enum Refused {
    /// The upgrade was answered with this HTTP status.
    Status(u16),
    /// Nothing answered (a daemon that is down): the error.
    Unreachable(String),
}

/// [`connect`] for a client that expects the server to be away at times (a load that
/// outlives a daemon restart).
pub fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<RawWs, Refused> {
    let mut request = url.into_client_request().expect("valid test URL");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
    for (k, v) in headers {
        let name =
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("valid header name");
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(v).expect("valid header"));
    }
    match tungstenite::connect(request) {
        Ok((socket, handshake)) => {
            if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
                tcp.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("read timeout");
            }
            Ok(RawWs {
                socket,
                next_id: 1,
                handshake,
            })
        }
        Err(tungstenite::Error::Http(response)) => Err(Refused::Status(response.status().as_u16())),
        Err(e) => Err(Refused::Unreachable(e.to_string())),
    }
}

impl RawWs {
    pub fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).expect("send");
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(Message::binary(bytes.to_vec()))
            .expect("send");
    }

    /// The next JSON message, or how the connection ended.
    pub fn recv(&mut self) -> Result<Value, Ended> {
        loop {
            match self.socket.read() {
                Ok(Message::Text(t)) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("server sent JSON"))
                }
                Ok(Message::Close(frame)) => {
                    return Err(Ended::Close(frame.map(|CloseFrame { code, reason }| {
                        (u16::from(code), reason.to_string())
                    })))
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err(Ended::Eof)
                }
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("no message from the server within the read timeout")
                }
                Err(_) => return Err(Ended::Eof),
            }
        }
    }

    /// Sends a request and returns its response, skipping notifications.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        loop {
            let message = self
                .recv()
                .unwrap_or_else(|e| panic!("connection ended awaiting {method}: {e:?}"));
            if message.get("id") == Some(&json!(id)) {
                return message;
            }
        }
    }

    /// [`RawWs::request`] on a connection that may break: how it ended, if it did.
    pub fn try_request(&mut self, method: &str, params: Value) -> Result<Value, Ended> {
        let id = self.next_id;
        self.next_id += 1;
        let text = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self.socket.send(Message::text(text.to_string())).is_err() {
            return Err(Ended::Eof);
        }
        loop {
            let message = self.recv()?;
            if message.get("id") == Some(&json!(id)) {
                return Ok(message);
            }
        }
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send_text(&json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string());
    }

    /// initialize + notifications/initialized; returns the initialize result.
    pub fn initialize(&mut self, protocol: &str) -> Value {
        let response = self.request(
            "initialize",
            json!({"protocolVersion": protocol, "capabilities": {}, "clientInfo": {"name": "exai-tests", "version": "0"}}),
        );
        self.notify("notifications/initialized", json!({}));
        response
    }

    /// A tools/call; returns the whole response.
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
    }
}

/// The text of a tools/call result.
pub fn result_text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
