//! A raw Streamable HTTP MCP client, one request per connection, for tests that need to
//! see statuses and headers as they are, or to open thousands of sessions.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What came back: status, head (lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The JSON-RPC message of a JSON or SSE body (the last `data:` line that parses).
    pub fn message(&self) -> Option<Value> {
        if let Ok(v) = serde_json::from_str(&self.body) {
            return Some(v);
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .next_back()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    }
}

/// Sends `request` on a new connection and reads until the server closes it. `None` when
/// the connection was refused or reset before a status line came.
pub fn exchange(port: u16, request: &[u8]) -> Option<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream.write_all(request).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        head: head.to_lowercase(),
        body: body.to_string(),
    })
}

/// The bytes of a `POST /mcp` carrying `body`, closing the connection after the answer.
pub fn post_request(session: Option<&str>, extra_headers: &str, body: &str) -> Vec<u8> {
    let session = session
        .map(|s| format!("Mcp-Session-Id: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{session}{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn post(port: u16, session: Option<&str>, body: &str) -> Option<Answer> {
    exchange(port, &post_request(session, "", body))
}

pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw-http","version":"0"}}}"#;

/// An initialized Streamable HTTP session.
pub struct HttpSession {
    pub port: u16,
    pub id: String,
    next_id: u64,
    /// Sent with every request (an `Authorization` header, say), each ending in CRLF.
    extra_headers: String,
}

impl HttpSession {
    /// `initialize` and `notifications/initialized`; `Err` carries the status of a refusal.
    pub fn open(port: u16) -> Result<Self, u16> {
        Self::open_with(port, "")
    }

    pub fn open_with(port: u16, extra_headers: &str) -> Result<Self, u16> {
        let answer = exchange(port, &post_request(None, extra_headers, INITIALIZE)).ok_or(0u16)?;
        if answer.status != 200 {
            return Err(answer.status);
        }
        let id = answer.header("mcp-session-id").ok_or(0u16)?.to_string();
        let session = Self {
            port,
            id,
            next_id: 2,
            extra_headers: extra_headers.to_string(),
        };
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let answer = session.send(note).ok_or(0u16)?;
        if answer.status != 202 {
            return Err(answer.status);
        }
        Ok(session)
    }

    pub fn send(&self, body: &str) -> Option<Answer> {
        exchange(
            self.port,
            &post_request(Some(&self.id), &self.extra_headers, body),
        )
    }

    /// A request; the HTTP answer (its message via [`Answer::message`]).
    pub fn request(&mut self, method: &str, params: Value) -> Option<Answer> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
    }

    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Option<Answer> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
    }
}

/// The `_meta` every 2026-07-28 request carries: its revision and the client's
/// capabilities (`capabilities` as given).
pub fn modern_meta(capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-http", "version": "0"},
    })
}

/// The headers a 2026-07-28 POST carries for `method` (and the tool or task it names).
pub fn modern_headers(method: &str, name: Option<&str>) -> String {
    let name = name
        .map(|name| format!("Mcp-Name: {name}\r\n"))
        .unwrap_or_default();
    format!("MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: {method}\r\n{name}")
}

/// A stateless (2026-07-28) request: `params` get the revision and capabilities in
/// `_meta` (keys already in `params._meta` are kept), the headers say the same.
pub fn stateless(port: u16, id: u64, method: &str, mut params: Value) -> Option<Answer> {
    let mut meta = modern_meta(json!({}));
    if let Some(own) = params.get("_meta").and_then(Value::as_object) {
        for (key, value) in own {
            meta[key] = value.clone();
        }
    }
    params["_meta"] = meta;
    // Mcp-Name names what the method acts on: a tool, a task.
    let name = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str);
    let headers = modern_headers(method, name);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    exchange(port, &post_request(None, &headers, &body.to_string()))
}

/// One client connection kept open across requests, as SDK clients keep theirs: what a
/// balancer must spread request by request. Opened again when the server closed it.
pub struct KeepAlive {
    port: u16,
    stream: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn new(port: u16) -> Self {
        Self { port, stream: None }
    }

    /// A stateless (2026-07-28) `tools/call` of `tool`, as [`stateless`] sends it.
    pub fn call_tool(&mut self, id: u64, tool: &str, arguments: Value) -> Result<Answer, String> {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": modern_meta(json!({}))}});
        self.post(&modern_headers("tools/call", Some(tool)), &body.to_string())
    }

    /// POSTs `body` to `/mcp` with `extra_headers` (each ending in CRLF) and reads the
    /// whole answer; `Err` says why none came (refused, reset, closed early).
    pub fn post(&mut self, extra_headers: &str, body: &str) -> Result<Answer, String> {
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        let outcome = self.exchange(request.as_bytes());
        match &outcome {
            Ok(answer) if answer.header("connection") != Some("close") => {}
            _ => self.stream = None,
        }
        outcome
    }

    /// `GET path`, its body whole however it is framed (HAProxy's pages come chunked).
    pub fn get(&mut self, path: &str) -> Result<Answer, String> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        let outcome = self.exchange(request.as_bytes());
        if !matches!(&outcome, Ok(a) if a.header("connection") != Some("close")) {
            self.stream = None;
        }
        outcome
    }

    fn exchange(&mut self, request: &[u8]) -> Result<Answer, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(BufReader::new(stream));
        }
        let reader = self.stream.as_mut().expect("connected above");
        reader
            .get_mut()
            .write_all(request)
            .map_err(|e| format!("send: {e}"))?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return Err(format!("closed after {} bytes of head", head.len())),
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        let head = head.to_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {head:?}"))?;
        let mut answer = Answer {
            status,
            head,
            body: String::new(),
        };
        let mut body = Vec::new();
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).map_err(|e| e.to_string())?;
                let size = usize::from_str_radix(size.trim(), 16)
                    .map_err(|_| format!("bad chunk size {size:?}"))?;
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = answer.header("content-length") {
            let length: usize = length.parse().map_err(|_| "bad content-length")?;
            body.resize(length, 0);
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        } else {
            reader.read_to_end(&mut body).map_err(|e| e.to_string())?;
            answer.head.push_str("connection: close\r\n");
        }
        answer.body = String::from_utf8_lossy(&body).into_owned();
        Ok(answer)
    }
}
