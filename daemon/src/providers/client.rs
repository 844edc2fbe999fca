//! One provider's HTTP client: an OpenAI-compatible `POST {base}/chat/completions` with
//! bounded, jittered retries on connect errors, 429 (honouring `Retry-After`) and 5xx,
//! a deadline for the whole call, and cancellation that aborts the HTTP request.

use super::progress::CallProgress;
use super::secret::Secret;
use super::wire::{
    Completion, CompletionRequest, ErrorBody, Message, ModelList, StreamOptions, ThinkingField,
    ThinkingType, Usage,
};
use crate::cause::Cause;
use eventsource_stream::Eventsource;
use exai_proto::{CallStatus, Provider};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Largest response body or streamed text the daemon accepts from a provider.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Largest single server-sent event: a streamed chunk is a few hundred bytes; an event
/// that never ends must not grow for the whole call timeout.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// Largest streamed response, framing and every event included (a token's event carries
/// a few hundred bytes of JSON around a few bytes of text).
const MAX_STREAM_BYTES: usize = 4 * MAX_RESPONSE_BYTES;
/// How much of an error body is kept for the message.
const MAX_ERROR_MESSAGE: usize = 300;
/// Largest `GET /models` answer read.
const MAX_MODEL_LIST_BYTES: usize = 1 << 20;
/// How long a `GET /models` may take.
const MODEL_LIST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub provider: Provider,
    pub base_url: String,
    /// `None` leaves the provider unavailable; `unavailable_reason` says why.
    pub key: Option<Secret>,
    pub unavailable_reason: String,
    /// Budget for one call, all attempts and waits included.
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

/// What a call asks for.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub temperature: Option<f32>,
    /// Stream the answer (SSE): measures time to first token.
    pub stream: bool,
    /// Sent as `X-Request-ID`, so the provider's logs can be matched with ours.
    pub request_id: &'a str,
    /// `None` leaves the model's default.
    pub thinking: Option<ThinkingType>,
    /// Bound on output tokens, reasoning included; sent under the provider's name for it.
    pub max_tokens: Option<u32>,
    /// Keep the reasoning text for the caller (it is read either way).
    pub keep_reasoning: bool,
    /// Updated as the stream arrives.
    pub progress: Option<&'a CallProgress>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub content: String,
    /// The reasoning, when it was asked to be kept and the model sent some.
    pub reasoning: Option<String>,
    pub usage: Usage,
    /// From sending the successful attempt to its first streamed token of any kind.
    pub ttft: Option<Duration>,
    /// From sending the successful attempt to its first token of the answer itself.
    pub ttfa: Option<Duration>,
    pub latency: Duration,
    pub attempts: u32,
    pub bytes: u64,
    pub finish_reason: Option<String>,
}

/// Why an attempt failed, classified for retrying and for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("rate limited (HTTP 429): {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("request rejected (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the provider does not know this model (HTTP {status}): {message}")]
    ModelNotFound { status: u16, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// `message` is the redacted text a person sees; `cause` the error itself (its URL
    /// removed: it may carry credentials).
    #[error("cannot connect: {message}")]
    Connect {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("stream broke off: {message}")]
    BrokenStream {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("cancelled by the client")]
    Cancelled,
}

impl CallError {
    pub fn status(&self) -> CallStatus {
        match self {
            CallError::RateLimited { .. } => CallStatus::RateLimited,
            CallError::Server { .. } => CallStatus::ServerError,
            CallError::Rejected { .. } | CallError::Malformed(_) => CallStatus::ClientError,
            CallError::ModelNotFound { .. } => CallStatus::ModelNotFound,
            CallError::Timeout(_) => CallStatus::Timeout,
            CallError::Connect { .. } => CallStatus::ConnectError,
            CallError::BrokenStream { .. } => CallStatus::BrokenStream,
            CallError::Cancelled => CallStatus::Cancelled,
        }
    }

    /// Connect errors, 429 and 5xx are retried: the request did not run, or the
    /// provider asked us to come back. A broken stream is not: the model already ran.
    fn retryable(&self) -> bool {
        matches!(
            self,
            CallError::RateLimited { .. } | CallError::Server { .. } | CallError::Connect { .. }
        )
    }
}

/// A call that failed, with what a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {error} (after {attempts} attempt{plural})", plural = if *.attempts == 1 { "" } else { "s" })]
pub struct CallFailure {
    pub provider: Provider,
    pub attempts: u32,
    pub error: CallError,
}

#[derive(Debug, Clone)]
pub struct ProviderClient {
    config: ProviderConfig,
    http: reqwest::Client,
    endpoint: String,
}

impl ProviderClient {
    pub fn new(config: ProviderConfig, http: reqwest::Client) -> Self {
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Self {
            config,
            http,
            endpoint,
        }
    }

    pub fn provider(&self) -> Provider {
        self.config.provider
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// Why this provider cannot be used, or `None` when it can.
    pub fn unavailable(&self) -> Option<&str> {
        match self.config.key {
            Some(_) => None,
            None => Some(&self.config.unavailable_reason),
        }
    }

    /// Runs one chat completion, retrying what is worth retrying, until it succeeds, the
    /// call's deadline passes, or `cancel` fires (which drops the HTTP request at once).
    pub async fn chat(
        &self,
        request: ChatRequest<'_>,
        cancel: &CancellationToken,
    ) -> Result<ChatReply, CallFailure> {
        let started = Instant::now();
        let deadline = started + self.config.call_timeout;
        let provider = self.config.provider;
        let fail = |attempts, error| CallFailure {
            provider,
            attempts,
            error,
        };
        let Some(key) = self.config.key.as_ref() else {
            let why = self.config.unavailable_reason.clone();
            return Err(fail(
                0,
                CallError::Rejected {
                    status: 0,
                    message: why,
                },
            ));
        };
        let retry = &self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = tokio::select! {
                _ = cancel.cancelled() => Err(CallError::Cancelled),
                outcome = tokio::time::timeout_at(deadline.into(), self.attempt(key, request)) => {
                    outcome.unwrap_or(Err(CallError::Timeout(self.config.call_timeout)))
                }
            };
            let error = match outcome {
                Ok(mut reply) => {
                    reply.attempts = attempt;
                    reply.latency = started.elapsed();
                    return Ok(reply);
                }
                Err(error) => error,
            };
            if !error.retryable() || attempt >= retry.max_attempts {
                return Err(fail(attempt, error));
            }
            let wait = match &error {
                CallError::RateLimited {
                    retry_after: Some(after),
                    ..
                } if *after > retry.max_retry_after => {
                    return Err(fail(attempt, error));
                }
                CallError::RateLimited {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => jittered_backoff(retry, attempt),
            };
            if Instant::now() + wait >= deadline {
                return Err(fail(attempt, error));
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(fail(attempt, CallError::Cancelled)),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn attempt(
        &self,
        key: &Secret,
        request: ChatRequest<'_>,
    ) -> Result<ChatReply, CallError> {
        // Moonshot documents `max_completion_tokens` (Kimi K2.x ignores `max_tokens`);
        // Z.ai takes only `max_tokens`.
        let (max_tokens, max_completion_tokens) = match self.config.provider {
            Provider::Kimi => (None, request.max_tokens),
            _ => (request.max_tokens, None),
        };
        let body = CompletionRequest {
            model: request.model,
            messages: request.messages,
            temperature: request.temperature,
            stream: request.stream,
            stream_options: request.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            thinking: request.thinking.map(|kind| ThinkingField { kind }),
            max_tokens,
            max_completion_tokens,
        };
        if let Some(progress) = request.progress {
            progress.restart();
        }
        let sent = Instant::now();
        let response = self
            .http
            .post(&self.endpoint)
            .bearer_auth(key.expose())
            .header("X-Request-ID", request.request_id)
            .json(&body)
            .send()
            .await
            .map_err(|e| classify_send_error(e, key))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error_response(response, key).await);
        }
        if request.stream {
            read_stream(response, sent, key, request).await
        } else {
            read_whole(response, key, request.keep_reasoning).await
        }
    }

    /// The model ids `GET {base}/models` lists, for the catalogue.
    pub async fn list_models(&self) -> Result<Vec<String>, String> {
        let key = self
            .config
            .key
            .as_ref()
            .ok_or_else(|| self.config.unavailable_reason.clone())?;
        let url = format!("{}/models", self.config.base_url.trim_end_matches('/'));
        let request = async {
            let response = self
                .http
                .get(&url)
                .bearer_auth(key.expose())
                .send()
                .await
                .map_err(|e| classify_send_error(e, key).to_string())?;
            if !response.status().is_success() {
                return Err(error_response(response, key).await.to_string());
            }
            let body = read_limited(response, MAX_MODEL_LIST_BYTES, key)
                .await
                .map_err(|e| e.to_string())?;
            let list: ModelList = serde_json::from_slice(&body)
                .map_err(|e| format!("malformed model list: {}", key.scrub(&e.to_string())))?;
            Ok(list.data.into_iter().map(|m| m.id).collect())
        };
        tokio::time::timeout(MODEL_LIST_TIMEOUT, request)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {MODEL_LIST_TIMEOUT:?}")))
    }
}

fn classify_send_error(e: reqwest::Error, key: &Secret) -> CallError {
    let message = describe(&e, key);
    // A connect timeout is both; it is a connect error, and retried as one.
    if e.is_timeout() && !e.is_connect() {
        CallError::Timeout(Duration::ZERO)
    } else {
        CallError::Connect {
            message,
            cause: Some(Cause::new(e.without_url())),
        }
    }
}

/// An error's chain as text a person may see: reqwest's quotes the URL (which may carry
/// credentials), never headers; the key is scrubbed all the same.
fn describe(e: &dyn std::error::Error, key: &Secret) -> String {
    crate::redact::redact_urls_in(&key.scrub(&error_chain(e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn error_response(response: reqwest::Response, key: &Secret) -> CallError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = read_limited(response, 64 * 1024, key)
        .await
        .unwrap_or_default();
    let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
    let model_not_found = parsed
        .as_ref()
        .is_some_and(|b| b.error.is_model_not_found(status));
    let message = parsed
        .map(|b| b.error.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    let mut message = key.scrub(message.trim());
    if message.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    if message.is_empty() {
        message = "no details given".into();
    }
    match status {
        _ if model_not_found => CallError::ModelNotFound { status, message },
        429 => CallError::RateLimited {
            retry_after,
            message,
        },
        500..=599 => CallError::Server { status, message },
        _ => CallError::Rejected { status, message },
    }
}

async fn read_limited(
    response: reqwest::Response,
    limit: usize,
    key: &Secret,
) -> Result<Vec<u8>, CallError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CallError::BrokenStream {
            message: describe(&e, key),
            cause: Some(Cause::new(e.without_url())),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(CallError::Malformed(format!(
                "response larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn read_whole(
    response: reqwest::Response,
    key: &Secret,
    keep_reasoning: bool,
) -> Result<ChatReply, CallError> {
    let body = read_limited(response, MAX_RESPONSE_BYTES, key).await?;
    let completion: Completion = serde_json::from_slice(&body)
        .map_err(|e| CallError::Malformed(key.scrub(&e.to_string())))?;
    let message = completion
        .choices
        .iter()
        .find_map(|c| c.message.as_ref().filter(|m| m.content.is_some()))
        .ok_or_else(|| CallError::Malformed("no message in the completion".into()))?;
    Ok(ChatReply {
        content: message.content.clone().unwrap_or_default(),
        reasoning: message
            .reasoning_content
            .clone()
            .filter(|r| keep_reasoning && !r.is_empty()),
        usage: completion.usage().unwrap_or_default(),
        ttft: None,
        ttfa: None,
        latency: Duration::ZERO,
        attempts: 0,
        bytes: body.len() as u64,
        finish_reason: completion.finish_reason().map(str::to_string),
    })
}

/// Why a stream's bytes stopped being taken.
#[derive(Debug, thiserror::Error)]
enum StreamLimit {
    #[error("{0}")]
    Transport(#[source] reqwest::Error),
    #[error("a streamed event larger than {MAX_EVENT_BYTES} bytes")]
    EventTooLarge,
    #[error("a streamed response larger than {MAX_STREAM_BYTES} bytes")]
    StreamTooLarge,
}

/// The response's bytes, cut off with an error once an event grows past
/// [`MAX_EVENT_BYTES`] or the whole stream past [`MAX_STREAM_BYTES`]. `since_event` counts
/// bytes taken since the last event came out of the parser; the reader zeroes it.
fn bounded_bytes(
    response: reqwest::Response,
    since_event: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, StreamLimit>> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut total = 0usize;
    response.bytes_stream().map(move |chunk| {
        // Without its URL: the error may end up in a cause that is printed.
        let chunk = chunk.map_err(|e| StreamLimit::Transport(e.without_url()))?;
        total += chunk.len();
        let pending = since_event.fetch_add(chunk.len(), Relaxed) + chunk.len();
        if pending > MAX_EVENT_BYTES {
            Err(StreamLimit::EventTooLarge)
        } else if total > MAX_STREAM_BYTES {
            Err(StreamLimit::StreamTooLarge)
        } else {
            Ok(chunk)
        }
    })
}

async fn read_stream(
    response: reqwest::Response,
    sent: Instant,
    key: &Secret,
    request: ChatRequest<'_>,
) -> Result<ChatReply, CallError> {
    let since_event = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut events = bounded_bytes(response, since_event.clone()).eventsource();
    let mut reply = ChatReply {
        content: String::new(),
        reasoning: None,
        usage: Usage::default(),
        ttft: None,
        ttfa: None,
        latency: Duration::ZERO,
        attempts: 0,
        bytes: 0,
        finish_reason: None,
    };
    let mut reasoning = String::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(
                limit @ (StreamLimit::EventTooLarge | StreamLimit::StreamTooLarge),
            ) => CallError::Malformed(limit.to_string()),
            other => CallError::BrokenStream {
                message: describe(&other, key),
                cause: Some(Cause::new(other)),
            },
        })?;
        since_event.store(0, std::sync::atomic::Ordering::Relaxed);
        reply.bytes += event.data.len() as u64;
        if event.data.trim() == "[DONE]" {
            reply.reasoning = (!reasoning.is_empty()).then_some(reasoning);
            return Ok(reply);
        }
        let chunk: Completion = serde_json::from_str(&event.data).map_err(|e| {
            CallError::Malformed(format!("bad stream chunk: {}", key.scrub(&e.to_string())))
        })?;
        for delta in chunk.choices.iter().filter_map(|c| c.delta.as_ref()) {
            if let Some(text) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                reply.ttft.get_or_insert_with(|| sent.elapsed());
                if let Some(progress) = request.progress {
                    progress.thinking(text.len());
                }
                // Kept up to the answer's own bound; past it the rest is dropped.
                if request.keep_reasoning && reasoning.len() + text.len() <= MAX_RESPONSE_BYTES {
                    reasoning.push_str(text);
                }
            }
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                let now = sent.elapsed();
                reply.ttft.get_or_insert(now);
                reply.ttfa.get_or_insert(now);
                if let Some(progress) = request.progress {
                    progress.answering(text.len());
                }
                reply.content.push_str(text);
            }
        }
        if let Some(usage) = chunk.usage() {
            reply.usage = usage;
        }
        if let Some(reason) = chunk.finish_reason() {
            reply.finish_reason = Some(reason.to_string());
        }
        if reply.content.len() > MAX_RESPONSE_BYTES {
            return Err(CallError::Malformed(format!(
                "streamed answer larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
    }
    Err(CallError::BrokenStream {
        message: "the stream ended before [DONE]".into(),
        cause: None,
    })
}

/// Exponential backoff with jitter: attempt n waits a random time between half and all
/// of `base · 2^(n-1)`, capped, so many clients retrying do not move in step.
fn jittered_backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let full = policy
        .base_delay
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(policy.max_delay);
    let half = full / 2;
    half + full.mul_f64(rand::random::<f64>() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let d = jittered_backoff(&policy, attempt);
            let full = (policy.base_delay * (1 << (attempt - 1))).min(policy.max_delay);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} outside [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn failures_name_provider_attempts_and_cause() {
        let f = CallFailure {
            provider: Provider::Glm,
            attempts: 3,
            error: CallError::Server {
                status: 500,
                message: "upstream exploded".into(),
            },
        };
        assert_eq!(
            f.to_string(),
            "glm: server error (HTTP 500): upstream exploded (after 3 attempts)"
        );
        assert_eq!(f.error.status(), CallStatus::ServerError);
    }
}
