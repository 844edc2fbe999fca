//! The one request the uploader makes: an idempotent bulk upsert through PostgREST,
//! `POST {SUPABASE_URL}/rest/v1/<table>?on_conflict=id` with
//! `Prefer: resolution=merge-duplicates,return=minimal`, and what its answer means.

use crate::providers::Secret;
use exai_proto::event::SupabaseResult;
use exai_proto::SupabaseTable;
use std::time::{Duration, Instant};

/// How much of an error body is kept for the log.
const ERROR_BODY_LIMIT: usize = 1024;
/// How much of an error body is read at most: enough for PostgREST's JSON error (its
/// `code` classifies the refusal); the rest is never read, however long it is.
const ERROR_BODY_READ: usize = 8 << 10;

pub struct PostgrestClient {
    http: reqwest::Client,
    /// `{SUPABASE_URL}/rest/v1`.
    base: String,
    key: Secret,
    timeout: Duration,
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub result: SupabaseResult,
    /// 0 when no HTTP answer arrived.
    pub status: u16,
    pub latency: Duration,
    /// Bytes sent.
    pub bytes: usize,
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Worth retrying: no answer, a timeout, 408, 429 or 5xx. `cause`: the request's
    /// error, when there was no answer (its URL removed).
    #[error("{why}")]
    Transient {
        why: String,
        #[source]
        cause: Option<crate::cause::Cause>,
    },
    /// 401 or 403: the key is wrong or lacks the right; retrying soon will not help.
    #[error("{0}")]
    Auth(String),
    /// A 4xx that says the request itself cannot work (unknown table or column, a
    /// schema out of date): retrying soon will not help, and neither would smaller batches.
    #[error("{0}")]
    Refused(String),
    /// A 4xx about the rows' data (a value Postgres cannot store, a constraint): one row
    /// may spoil the whole batch, so the batch is split to find it.
    #[error("{0}")]
    RowsRefused(String),
}

impl PostgrestClient {
    pub fn new(http: reqwest::Client, url: &str, key: Secret, timeout: Duration) -> Self {
        Self {
            http,
            base: format!("{}/rest/v1", url.trim_end_matches('/')),
            key,
            timeout,
        }
    }

    /// Upserts `body` (a JSON array of rows) into `table`, keyed by `id`.
    pub async fn upsert(&self, table: SupabaseTable, body: Vec<u8>) -> Answer {
        let bytes = body.len();
        let url = format!("{}/{}?on_conflict=id", self.base, table.as_str());
        let started = Instant::now();
        let sent = self
            .http
            .post(&url)
            .header("apikey", self.key.expose())
            .bearer_auth(self.key.expose())
            .header("Content-Type", "application/json")
            .header("Prefer", "resolution=merge-duplicates,return=minimal")
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let answer = |result, status, failure| Answer {
            result,
            status,
            latency: started.elapsed(),
            bytes,
            failure,
        };
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let why = if e.is_timeout() {
                    format!("no answer within {}s", self.timeout.as_secs())
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    let text = self.key.scrub(&e.to_string());
                    format!("request failed: {}", crate::redact::redact_urls_in(&text))
                };
                let cause = Some(crate::cause::Cause::new(e.without_url()));
                return answer(
                    SupabaseResult::Retry,
                    0,
                    Some(Failure::Transient { why, cause }),
                );
            }
        };
        let status = response.status();
        if status.is_success() {
            return answer(SupabaseResult::Ok, status.as_u16(), None);
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = error_body(response).await;
        let text = self.key.scrub(&error_text(&body));
        let code = status.as_u16();
        let why = match &retry_after {
            Some(after) => format!("HTTP {code}: {text} (Retry-After {after})"),
            None => format!("HTTP {code}: {text}"),
        };
        let (result, failure) = match code {
            401 | 403 => (SupabaseResult::Rejected, Failure::Auth(why)),
            408 | 429 | 500..=599 => (
                SupabaseResult::Retry,
                Failure::Transient { why, cause: None },
            ),
            _ if about_the_rows(code, &body) => {
                (SupabaseResult::Rejected, Failure::RowsRefused(why))
            }
            _ => (SupabaseResult::Rejected, Failure::Refused(why)),
        };
        answer(result, code, Some(failure))
    }
}

/// At most [`ERROR_BODY_READ`] bytes of an error body: a body that never ends, or a huge
/// one, is cut there and the connection dropped.
async fn error_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_READ - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// The start of an error body, on one line.
fn error_text(body: &[u8]) -> String {
    let cut = &body[..body.len().min(ERROR_BODY_LIMIT)];
    let mut text = String::from_utf8_lossy(cut).replace(['\n', '\r'], " ");
    if body.len() > ERROR_BODY_LIMIT {
        text.push('…');
    }
    if text.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        text
    }
}

/// Whether a refusal is about the rows' data rather than the request: Postgres data
/// exceptions (SQLSTATE class 22: a NUL in text, a value too long) and integrity
/// violations (class 23), a body too large, or a 400/409/422 without a code. Unknown
/// tables or columns (class 42, PostgREST's PGRST2xx schema-cache errors, 404) are not:
/// every row would fail, and splitting would set every record aside.
fn about_the_rows(status: u16, body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct PostgrestError {
        code: Option<String>,
    }
    if status == 413 {
        return true;
    }
    match serde_json::from_slice::<PostgrestError>(body)
        .ok()
        .and_then(|e| e.code)
    {
        Some(code) => code.starts_with("22") || code.starts_with("23"),
        None => matches!(status, 400 | 409 | 422),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_are_about_the_rows_and_schema_errors_are_not() {
        let body =
            |code: &str| format!(r#"{{"code":"{code}","message":"m","details":null,"hint":null}}"#);
        for code in ["22P05", "22001", "23502", "23503", "23505"] {
            assert!(about_the_rows(400, body(code).as_bytes()), "{code}");
        }
        for code in ["42703", "42P01", "PGRST204", "PGRST205", "PGRST102"] {
            assert!(!about_the_rows(400, body(code).as_bytes()), "{code}");
        }
        assert!(about_the_rows(413, b""));
        assert!(about_the_rows(400, b"not json"));
        assert!(!about_the_rows(404, b"not json"));
    }

    #[test]
    fn error_text_is_cut_and_on_one_line() {
        assert_eq!(error_text(b"a\nb"), "a b");
        assert_eq!(error_text(b"  "), "(empty body)");
        let long = vec![b'x'; ERROR_BODY_LIMIT + 10];
        let text = error_text(&long);
        assert_eq!(text.len(), ERROR_BODY_LIMIT + '…'.len_utf8());
    }
}
