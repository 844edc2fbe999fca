//! exai-load: opens N MCP sessions to a daemon and calls a tool on all of them at once,
//! then prints calls/s and latency percentiles.
//!
//!   exai-load [--url ws://127.0.0.1:8079/mcp] [--sessions 32] [--tool version|chat]
//!             [--duration 10] [--warmup 2] [--rate 0] [--token T] [--hold] [--continue]
//!
//! `--cpu-pid PID` adds the CPU time that process used while calls were recorded, per call
//! (`cpu_us_per_call`): what one call costs the server, from /proc.
//!
//! A `ws://` URL opens WebSocket sessions; an `http://` URL opens Streamable HTTP sessions,
//! each on its own keep-alive connection, accepting either response kind (JSON or SSE) as
//! the MCP SDKs do.
//!
//! --rate N paces all sessions together at N calls/s (0: as fast as each session can go,
//! one call in flight per session). Latency is measured from when a call was due, so a
//! stalled server is not hidden by calls that were never sent. --hold opens and
//! initializes the sessions, keeps them open for --duration seconds and exits (for
//! measuring the daemon's memory with many sessions). --continue makes each session's
//! chats one conversation (continuation_id `exai-load-<session>`), so every call reads
//! and writes its thread in the store. --stateless speaks MCP 2026-07-28 over HTTP: no
//! `initialize` and no session; each call carries its revision and capabilities in
//! `_meta` and its method and tool in headers (each "session" is then one keep-alive
//! connection). Output: one JSON line on stdout.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone)]
struct Options {
    url: String,
    sessions: usize,
    tool: String,
    duration: Duration,
    warmup: Duration,
    rate: f64,
    token: Option<String>,
    hold: bool,
    continue_conversation: bool,
    /// MCP 2026-07-28 over HTTP: no session, each call self-contained.
    stateless: bool,
    /// The server's pid, to report its CPU time per call.
    cpu_pid: Option<u32>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        url: "ws://127.0.0.1:8079/mcp".into(),
        sessions: 32,
        tool: "version".into(),
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        rate: 0.0,
        token: std::env::var("EXAI_WS_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        hold: false,
        continue_conversation: false,
        stateless: false,
        cpu_pid: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--hold" {
            o.hold = true;
            continue;
        }
        if flag == "--continue" {
            o.continue_conversation = true;
            continue;
        }
        if flag == "--stateless" {
            o.stateless = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err("usage: exai-load [--url URL] [--sessions N] [--tool version|chat] [--duration S] [--warmup S] [--rate N] [--token T] [--cpu-pid PID] [--hold] [--continue] [--stateless]".into());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}={value:?}: expected {what}");
        match flag.as_str() {
            "--url" => o.url = value,
            "--sessions" => o.sessions = value.parse().map_err(|_| bad("a number of sessions"))?,
            "--tool" => o.tool = value,
            "--duration" => {
                o.duration = Duration::from_secs_f64(value.parse().map_err(|_| bad("seconds"))?)
            }
            "--warmup" => {
                o.warmup = Duration::from_secs_f64(value.parse().map_err(|_| bad("seconds"))?)
            }
            "--rate" => o.rate = value.parse().map_err(|_| bad("calls per second"))?,
            "--token" => o.token = Some(value),
            "--cpu-pid" => o.cpu_pid = Some(value.parse().map_err(|_| bad("a pid"))?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !matches!(o.tool.as_str(), "version" | "chat") {
        return Err(format!("--tool={:?}: expected version or chat", o.tool));
    }
    if o.stateless && !o.url.starts_with("http://") {
        return Err("--stateless needs an http:// URL: it is Streamable HTTP's".into());
    }
    Ok(o)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One MCP session, over either transport.
enum Session {
    Ws(Ws),
    Http(HttpSession),
}

impl Session {
    async fn open(o: &Options) -> Result<Self, String> {
        if o.url.starts_with("http://") {
            HttpSession::open(o).await.map(Session::Http)
        } else {
            open(o).await.map(Session::Ws)
        }
    }

    /// Sends `call` (a request with `id`) and waits for its response; `Ok(true)` when it
    /// is an error or `isError`.
    async fn call(&mut self, call: String, id: u64) -> Result<bool, String> {
        match self {
            Session::Ws(ws) => {
                ws.send(Message::text(call))
                    .await
                    .map_err(|e| e.to_string())?;
                response(ws, id).await
            }
            Session::Http(http) => {
                let body = http.post(call).await?.1;
                match_response(&body, id)
                    .ok_or_else(|| format!("no response with id {id} in {body:?}"))
            }
        }
    }

    async fn close(self) {
        match self {
            Session::Ws(mut ws) => {
                let _ = ws.close(None).await;
            }
            Session::Http(http) => http.close().await,
        }
    }
}

/// A Streamable HTTP session on one keep-alive connection.
struct HttpSession {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    authority: String,
    path: String,
    session_id: String,
    token: Option<String>,
    /// 2026-07-28: the tool each call names in `Mcp-Name`; no session.
    stateless_tool: Option<String>,
}

impl HttpSession {
    async fn open(o: &Options) -> Result<Self, String> {
        let rest = o.url.trim_start_matches("http://");
        let (authority, path) = match rest.find('/') {
            Some(at) => (rest[..at].to_string(), rest[at..].to_string()),
            None => (rest.to_string(), "/".to_string()),
        };
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut session = Self {
            sender,
            authority,
            path,
            session_id: String::new(),
            token: o.token.clone(),
            stateless_tool: o.stateless.then(|| o.tool.clone()),
        };
        if o.stateless {
            return Ok(session);
        }
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "exai-load", "version": "0"}}});
        let (headers, body) = session.post(init.to_string()).await?;
        session.session_id = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no Mcp-Session-Id in the answer to initialize: {body}"))?
            .to_string();
        session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
            .await?;
        Ok(session)
    }

    /// POSTs one message; the answer's headers and whole body (JSON, or an SSE stream
    /// that ends with the response).
    async fn post(&mut self, body: String) -> Result<(hyper::HeaderMap, String), String> {
        use http_body_util::BodyExt;
        let mut request = hyper::Request::post(&self.path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        request = match &self.stateless_tool {
            Some(tool) => request
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", tool.as_str()),
            None => request.header("mcp-protocol-version", "2025-11-25"),
        };
        if !self.session_id.is_empty() {
            request = request.header("mcp-session-id", &self.session_id);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !status.is_success() {
            return Err(format!("HTTP {status}: {text}"));
        }
        Ok((headers, text))
    }

    async fn close(mut self) {
        if self.stateless_tool.is_some() {
            return;
        }
        let request = hyper::Request::delete(&self.path)
            .header("host", &self.authority)
            .header("mcp-session-id", &self.session_id)
            .body(http_body_util::Full::new(hyper::body::Bytes::new()));
        if let Ok(request) = request {
            if self.sender.ready().await.is_ok() {
                let _ = self.sender.send_request(request).await;
            }
        }
    }
}

/// Whether `text` holds the response with `id`, and if so whether it is an error.
fn match_response(text: &str, id: u64) -> Option<bool> {
    let wanted = format!("\"id\":{id},");
    let wanted_last = format!("\"id\":{id}}}");
    (text.contains(&wanted) || text.contains(&wanted_last))
        .then(|| text.contains("\"error\":") || text.contains("\"isError\":true"))
}

async fn open(o: &Options) -> Result<Ws, String> {
    let mut request = o
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
    if let Some(token) = &o.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert("authorization", value);
    }
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|e| format!("connect {}: {e}", o.url))?;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "exai-load", "version": "0"}}});
    ws.send(Message::text(init.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    response(&mut ws, 0).await?;
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Waits for the response with `id`; `Ok(true)` when it is an error or `isError`.
/// Reads only what it needs from each frame, so the load tool leaves the cores to the
/// daemon: responses are matched by their `"id":N` and checked for error markers.
async fn response(ws: &mut Ws, id: u64) -> Result<bool, String> {
    let wanted = format!("\"id\":{id},");
    let wanted_last = format!("\"id\":{id}}}");
    while let Some(frame) = ws.next().await {
        let Message::Text(text) = frame.map_err(|e| e.to_string())? else {
            continue;
        };
        let text = text.as_str();
        if text.contains(&wanted) || text.ends_with(&wanted_last) {
            return Ok(text.contains("\"error\":") || text.contains("\"isError\":true"));
        }
    }
    Err("the daemon closed the session".into())
}

struct Tally {
    latency: Mutex<Histogram<u64>>,
    calls: AtomicU64,
    errors: AtomicU64,
}

async fn session(
    o: Arc<Options>,
    mut conn: Session,
    tally: Arc<Tally>,
    recording: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    index: usize,
) {
    let arguments = match o.tool.as_str() {
        "chat" if o.continue_conversation => {
            json!({"prompt": format!("load test from session {index}"),
            "continuation_id": format!("exai-load-{index}")})
        }
        "chat" => json!({"prompt": format!("load test from session {index}")}),
        _ => json!({}),
    };
    // The request with its id left out, built once: `{"jsonrpc":"2.0","id":` + id + rest.
    let meta = match o.stateless {
        true => format!(
            r#","_meta":{}"#,
            json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                   "io.modelcontextprotocol/clientCapabilities": {}})
        ),
        false => String::new(),
    };
    let rest = format!(
        r#","method":"tools/call","params":{{"name":"{}","arguments":{}{meta}}}}}"#,
        o.tool, arguments
    );
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let (mut calls, mut errors) = (0u64, 0u64);
    let every = (o.rate > 0.0).then(|| Duration::from_secs_f64(o.sessions as f64 / o.rate));
    let mut due = Instant::now()
        + every
            .map(|e| e.mul_f64(index as f64 / o.sessions as f64))
            .unwrap_or_default();
    let mut id = 1u64;
    while !stop.load(Relaxed) {
        if every.is_some() {
            tokio::time::sleep_until(due.into()).await;
        } else {
            due = Instant::now();
        }
        let call = format!(r#"{{"jsonrpc":"2.0","id":{id}{rest}"#);
        let failed = match conn.call(call, id).await {
            Ok(failed) => failed,
            Err(_) => {
                errors += 1;
                break;
            }
        };
        if recording.load(Relaxed) {
            calls += 1;
            errors += u64::from(failed);
            let _ = local.record(due.elapsed().as_micros().max(1) as u64);
        }
        id += 1;
        if let Some(every) = every {
            due += every;
        }
    }
    tally.calls.fetch_add(calls, Relaxed);
    tally.errors.fetch_add(errors, Relaxed);
    let _ = tally.latency.lock().map(|mut h| h.add(&local));
    conn.close().await;
}

async fn run(o: Options) -> Result<Value, String> {
    let o = Arc::new(o);
    let mut sockets = Vec::with_capacity(o.sessions);
    for _ in 0..o.sessions {
        sockets.push(Session::open(&o).await?);
    }
    if o.hold {
        tokio::time::sleep(o.duration).await;
        return Ok(json!({"sessions": sockets.len(), "held_s": o.duration.as_secs_f64()}));
    }
    let tally = Arc::new(Tally {
        latency: Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        ),
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let recording = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(session(
                o.clone(),
                conn,
                tally.clone(),
                recording.clone(),
                stop.clone(),
                i,
            ))
        })
        .collect();
    tokio::time::sleep(o.warmup).await;
    let cpu_before = o.cpu_pid.map(cpu_time).transpose()?;
    recording.store(true, Relaxed);
    let started = Instant::now();
    tokio::time::sleep(o.duration).await;
    recording.store(false, Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_used = match (o.cpu_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    stop.store(true, Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let h = tally.latency.lock().map_err(|_| "poisoned")?.clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let calls = tally.calls.load(Relaxed);
    let cpu_us_per_call = cpu_used.map(|cpu| cpu.as_secs_f64() * 1e6 / calls.max(1) as f64);
    Ok(json!({
        "transport": if o.url.starts_with("http://") { "http" } else { "websocket" },
        "cpu_us_per_call": cpu_us_per_call,
        "tool": o.tool, "sessions": o.sessions, "rate_target": o.rate, "seconds": elapsed,
        "calls": calls, "errors": tally.errors.load(Relaxed), "calls_per_s": calls as f64 / elapsed,
        "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0,
    }))
}

/// CPU time (user and system) `pid` has used, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let hz = 100.0; // USER_HZ, 100 on Linux
    Ok(Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz))
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("exai-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exai-load: {e}");
            ExitCode::FAILURE
        }
    }
}
