//! exai-load: opens N WebSocket MCP sessions to a daemon and calls a tool on all of them
//! at once, then prints calls/s and latency percentiles.
//!
//!   exai-load [--url ws://127.0.0.1:8079/mcp] [--sessions 32] [--tool version|chat]
//!             [--duration 10] [--warmup 2] [--rate 0] [--token T] [--hold] [--continue]
//!
//! --rate N paces all sessions together at N calls/s (0: as fast as each session can go,
//! one call in flight per session). Latency is measured from when a call was due, so a
//! stalled server is not hidden by calls that were never sent. --hold opens and
//! initializes the sessions, keeps them open for --duration seconds and exits (for
//! measuring the daemon's memory with many sessions). --continue makes each session's
//! chats one conversation (continuation_id `exai-load-<session>`), so every call reads
//! and writes its thread in the store. Output: one JSON line on stdout.

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
        if flag == "--help" || flag == "-h" {
            return Err("usage: exai-load [--url URL] [--sessions N] [--tool version|chat] [--duration S] [--warmup S] [--rate N] [--token T] [--hold] [--continue]".into());
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
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !matches!(o.tool.as_str(), "version" | "chat") {
        return Err(format!("--tool={:?}: expected version or chat", o.tool));
    }
    Ok(o)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
    mut ws: Ws,
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
    let rest = format!(
        r#","method":"tools/call","params":{{"name":"{}","arguments":{}}}}}"#,
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
        if ws.send(Message::text(call)).await.is_err() {
            errors += 1;
            break;
        }
        let failed = match response(&mut ws, id).await {
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
    let _ = ws.close(None).await;
}

async fn run(o: Options) -> Result<Value, String> {
    let o = Arc::new(o);
    let mut sockets = Vec::with_capacity(o.sessions);
    for _ in 0..o.sessions {
        sockets.push(open(&o).await?);
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
        .map(|(i, ws)| {
            tokio::spawn(session(
                o.clone(),
                ws,
                tally.clone(),
                recording.clone(),
                stop.clone(),
                i,
            ))
        })
        .collect();
    tokio::time::sleep(o.warmup).await;
    recording.store(true, Relaxed);
    let started = Instant::now();
    tokio::time::sleep(o.duration).await;
    recording.store(false, Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let h = tally.latency.lock().map_err(|_| "poisoned")?.clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let calls = tally.calls.load(Relaxed);
    Ok(json!({
        "tool": o.tool, "sessions": o.sessions, "rate_target": o.rate, "seconds": elapsed,
        "calls": calls, "errors": tally.errors.load(Relaxed), "calls_per_s": calls as f64 / elapsed,
        "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0,
    }))
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
