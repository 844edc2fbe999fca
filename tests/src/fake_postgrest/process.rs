//! The real `fake-postgrest` binary as a child process, for end-to-end tests.

use super::{Fault, Stats};
use crate::process::Proc;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A running `fake-postgrest` on a free port.
pub struct FakePostgrest {
    pub proc: Proc,
    port: u16,
    key: String,
}

impl FakePostgrest {
    /// The service role key a fake accepts unless told otherwise.
    pub const KEY: &'static str = "test-service-role-key-5f0c2a9e";

    /// Starts a fake accepting [`Self::KEY`].
    pub fn start() -> Self {
        Self::start_with_key(Self::KEY)
    }

    pub fn start_with_key(key: &str) -> Self {
        let proc = Proc::spawn(
            "fake-postgrest",
            &["--port", "0"],
            &[("FAKE_POSTGREST_KEY", key.to_string())],
        );
        let line = proc.wait_for_log("fake-postgrest listening on");
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self {
            proc,
            port,
            key: key.to_string(),
        }
    }

    /// `http://127.0.0.1:PORT`: what `SUPABASE_URL` is set to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Makes every REST request fail as `fault` says, or with `None` work again.
    pub fn set_fault(&self, fault: Option<Fault>) {
        let body = json!({ "fault": fault }).to_string();
        let (status, text) = request(self.port, "POST", "/_control", &[], &body)
            .expect("fake-postgrest answers /_control");
        assert_eq!(status, 200, "set_fault({fault:?}): {text}");
    }

    pub fn stats(&self) -> Stats {
        let (_, text) =
            request(self.port, "GET", "/_stats", &[], "").expect("fake-postgrest answers /_stats");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad /_stats {text:?}: {e}"))
    }

    /// Rows of `table` matching every `column = value`, read through the REST API.
    pub fn rows(&self, table: &str, filters: &[(&str, &str)]) -> Vec<Value> {
        let query: Vec<String> = filters.iter().map(|(c, v)| format!("{c}=eq.{v}")).collect();
        let path = format!("/rest/v1/{table}?{}", query.join("&"));
        let bearer = format!("Bearer {}", self.key);
        let headers = [
            ("apikey", self.key.as_str()),
            ("Authorization", bearer.as_str()),
        ];
        let (status, text) =
            request(self.port, "GET", &path, &headers, "").expect("fake-postgrest answers");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("rows are JSON")
    }
}

/// A plain HTTP/1.1 request on loopback: `(status, body)`.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
