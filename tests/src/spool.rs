//! Spool files as a daemon leaves them, built by hand: for tests that start a daemon on a
//! spool written by an earlier run (or an earlier build), damaged or not.

use exai_daemon::supabase::frame;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The payload of a spooled turn in record format 1, `prompt` answered `echo: prompt`,
/// its strings as given (an earlier build wrote a NUL as it came).
pub fn payload(conversation: &str, prompt: &str, at_unix_ms: u64) -> Vec<u8> {
    let at = |ms: u64| {
        let secs = ms / 1000;
        format!(
            "2024-11-24T{:02}:{:02}:{:02}.{:03}Z",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            ms % 1000
        )
    };
    let message = |id: String, role: &str, content: String, ms: u64| {
        json!({"id": id, "conversation_id": conversation, "role": role, "content": content,
               "model": "glm-4.5-flash", "tokens": 1, "correlation_id": "c", "created_at": at(ms)})
    };
    let mut payload = b"1\n".to_vec();
    payload.extend_from_slice(json!(conversation).to_string().as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(
        json!({"id": conversation, "model": "glm-4.5-flash", "updated_at": at(at_unix_ms)})
            .to_string()
            .as_bytes(),
    );
    payload.push(b'\n');
    let user = message(
        format!("u-{prompt}"),
        "user",
        prompt.to_string(),
        at_unix_ms,
    );
    let answer = message(
        format!("a-{prompt}"),
        "assistant",
        format!("echo: {prompt}"),
        at_unix_ms + 1,
    );
    payload.extend_from_slice(format!("{user},{answer}").as_bytes());
    payload
}

/// [`payload`] framed as a spool record.
pub fn record(conversation: &str, prompt: &str, at_unix_ms: u64) -> Vec<u8> {
    let mut framed = Vec::new();
    frame::encode(&payload(conversation, prompt, at_unix_ms), &mut framed);
    framed
}

pub fn segment(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("segment-{number:020}.spool"))
}
