//! Clients that send slowly hold no place: 70 sockets dribbling one header byte a second,
//! or 64 authenticated requests dribbling their bodies, leave every real client
//! answered, over WebSocket and HTTP; and a body too slow is answered 408 and closed
//! instead of holding its connection open.

use exai_tests::http_mcp::HttpSession;
use exai_tests::mcp::{self, result_text};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "0123456789abcdef-slow-clients";
/// Places for authenticated requests: far fewer than the slow clients.
const PLACES: &str = "8";

fn daemon(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("EXAI_WS_TOKEN", TOKEN.to_string()),
        ("EXAI_WS_MAX_CONNECTIONS", PLACES.to_string()),
        ("EXAI_WS_MAX_PENDING_CONNECTIONS", "32".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Daemon::start_with(&dir.path().join("events.sock"), &env)
}

/// A real client's round: a WebSocket session and an HTTP session, each asked `version`.
fn real_client_is_answered(daemon: &Daemon) {
    let bearer = format!("Bearer {TOKEN}");
    let mut ws = mcp::connect(&daemon.ws_url(), &[("authorization", &bearer)])
        .unwrap_or_else(|status| panic!("a real WebSocket client was refused with {status}"));
    ws.initialize("2025-11-25");
    assert!(result_text(&ws.call_tool("version", json!({}))).starts_with("exai "));
    drop(ws);
    let headers = format!("Authorization: Bearer {TOKEN}\r\n");
    let mut http = HttpSession::open_with(daemon.mcp_port, &headers)
        .unwrap_or_else(|status| panic!("a real HTTP client was refused with {status}"));
    let answer = http.call_tool("version", json!({})).expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("exai "), "{}", answer.body);
}

/// Clients that each send `head`, then `drip` one byte a second, reconnecting when the
/// daemon closes them, until `stop`. Counts the times the daemon closed one.
struct Dribblers {
    stop: Arc<AtomicBool>,
    /// Connections made, and closed by the daemon.
    connected: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Dribblers {
    fn start(port: u16, count: usize, head: String, reconnect: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|_| {
                let (stop, closed, head) = (stop.clone(), closed.clone(), head.clone());
                let connected = connected.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut socket) = TcpStream::connect(("127.0.0.1", port)) else {
                            continue;
                        };
                        connected.fetch_add(1, Ordering::Relaxed);
                        socket
                            .set_read_timeout(Some(Duration::from_millis(1)))
                            .unwrap();
                        if socket.write_all(head.as_bytes()).is_err() {
                            closed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        // The attack's own pace: a byte a second.
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_secs(1));
                            let mut buf = [0u8; 256];
                            let answered = match socket.read(&mut buf) {
                                Ok(_) => true,
                                Err(e) => !matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ),
                            };
                            if answered || socket.write_all(b"x").is_err() {
                                closed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                        if !reconnect {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            connected,
            closed,
            threads,
        }
    }

    fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Dribblers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn seventy_sockets_sending_a_header_byte_a_second_leave_real_clients_answered() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&dir, &[]);
    let attack = Dribblers::start(daemon.mcp_port, 70, "G".to_string(), true);
    wait_for("every attacker connected and dribbling", PATIENCE, || {
        (attack.connected() >= 70).then_some(())
    });
    for _ in 0..5 {
        real_client_is_answered(&daemon);
    }
    wait_for(
        "the oldest slow clients closed to make room",
        PATIENCE,
        || (attack.closed() > 0).then_some(()),
    );
}

#[test]
fn sixty_four_slow_bodies_leave_real_clients_answered_and_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(
        &dir,
        &[
            ("EXAI_WS_MAX_PENDING_CONNECTIONS", "128"),
            ("EXAI_HTTP_BODY_TIMEOUT_MS", "4000"),
        ],
    );
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100000\r\n\r\n{{"
    );
    let attack = Dribblers::start(daemon.mcp_port, 64, head, false);
    wait_for("every slow body under way", PATIENCE, || {
        (attack.connected() >= 64).then_some(())
    });
    for _ in 0..3 {
        real_client_is_answered(&daemon);
    }
    // Each slow body is answered (408) and its connection closed: none holds on.
    wait_for("every slow body cut off", PATIENCE, || {
        (attack.closed() == 64).then_some(())
    });
    real_client_is_answered(&daemon);
}

#[test]
fn a_body_too_slow_gets_408_naming_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&dir, &[("EXAI_HTTP_BODY_TIMEOUT_MS", "500")]);
    let mut socket = TcpStream::connect(("127.0.0.1", daemon.mcp_port)).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
    );
    socket.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("EXAI_HTTP_BODY_TIMEOUT_MS"), "{answer}");
}
