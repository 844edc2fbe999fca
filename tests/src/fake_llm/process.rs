//! The real `fake-llm` binary as a child process, for end-to-end tests.

use crate::process::Proc;

/// A running `fake-llm` on a free port.
pub struct FakeLlmProc {
    pub proc: Proc,
    pub port: u16,
}

impl FakeLlmProc {
    /// Starts the binary with `args` after `--port 0`, and waits for its listening line.
    pub fn start(args: &[&str]) -> Self {
        let mut all = vec!["--port", "0"];
        all.extend_from_slice(args);
        let proc = Proc::spawn("fake-llm", &all, &[]);
        let line = proc.wait_for_log("fake-llm listening on");
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self { proc, port }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Streamed answers whose client let go before their end: model calls aborted
    /// (`/_stats`'s `abandoned`).
    pub fn abandoned(&self) -> u64 {
        let (_, stats) =
            crate::metrics::http_get(self.port, "/_stats").expect("fake-llm answers /_stats");
        let stats: serde_json::Value = serde_json::from_str(&stats).expect("JSON stats");
        stats["abandoned"]
            .as_u64()
            .expect("a count of abandoned answers")
    }
}
