//! The one request the uploader makes: an idempotent bulk upsert through PostgREST,
//! `POST {SUPABASE_URL}/rest/v1/<table>?on_conflict=id` with
//! `Prefer: resolution=merge-duplicates,return=minimal`, and what its answer means.

use crate::providers::Secret;
use exai_proto::event::SupabaseResult;
use exai_proto::SupabaseTable;
use std::time::{Duration, Instant};

/// How much of an error body is kept for the log.
const ERROR_BODY_LIMIT: usize = 1024;

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
    /// Worth retrying: no answer, a timeout, 408, 429 or 5xx.
    #[error("{0}")]
    Transient(String),
    /// 401 or 403: the key is wrong or lacks the right; retrying soon will not help.
    #[error("{0}")]
    Auth(String),
    /// Any other 4xx: the rows or the schema are wrong; retrying soon will not help.
    #[error("{0}")]
    Refused(String),
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
                    format!("request failed: {}", self.key.scrub(&e.to_string()))
                };
                return answer(SupabaseResult::Retry, 0, Some(Failure::Transient(why)));
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
        let text = self.key.scrub(&error_body(response).await);
        let code = status.as_u16();
        let why = match &retry_after {
            Some(after) => format!("HTTP {code}: {text} (Retry-After {after})"),
            None => format!("HTTP {code}: {text}"),
        };
        let (result, failure) = match code {
            401 | 403 => (SupabaseResult::Rejected, Failure::Auth(why)),
            408 | 429 | 500..=599 => (SupabaseResult::Retry, Failure::Transient(why)),
            _ => (SupabaseResult::Rejected, Failure::Refused(why)),
        };
        answer(result, code, Some(failure))
    }
}

/// The start of an error body, on one line.
async fn error_body(response: reqwest::Response) -> String {
    let body = response.bytes().await.unwrap_or_default();
    let cut = &body[..body.len().min(ERROR_BODY_LIMIT)];
    let text = String::from_utf8_lossy(cut).replace(['\n', '\r'], " ");
    if text.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        text
    }
}
