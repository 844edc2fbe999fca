//! `POST …/chat/completions`: record, authorize, validate, maybe fail, then echo.

use super::answer::Answer;
use super::body::{read_limited, Abort, Body, ReadError};
use super::directive;
use super::fault::{Fault, FaultKind};
use super::flavour::Flavour;
use super::reply::{count_words, Reply};
use super::routes::{error, Context};
use super::wire::{ApiError, ChatRequest, ReplyMeta};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use hyper::{HeaderMap, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Larger request bodies get 413 without being buffered.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub async fn handle(ctx: Arc<Context>, req: Request<Incoming>) -> Result<Response<Body>, Abort> {
    let shared = &ctx.shared;
    shared.counters.request();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let body = match read_limited(body, BODY_LIMIT).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            shared.log.record(path, &parts.headers, None);
            return Ok(error(&ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("request body exceeds {BODY_LIMIT} bytes"),
            )));
        }
        Err(ReadError::Client) => return Err(Abort::RequestBody),
    };
    shared.log.record(path, &parts.headers, Some(&body));

    if let Err(e) = authorize(&parts.headers, shared.config.key.as_deref()) {
        return Ok(error(&e));
    }
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let e = ApiError::invalid(format!("invalid request body: {e}"), "invalid_json");
            return Ok(error(&e));
        }
    };
    if let Err(e) = request.validate() {
        return Ok(error(&e));
    }
    let flavour = Flavour::of_path(path);
    if !shared.config.served(flavour).contains(&request.model) {
        return Ok(flavour.model_not_found(&request.model));
    }
    let directives = match directive::parse(&request.last_user_text()) {
        Ok(d) => d,
        Err(e) => {
            return Ok(error(&ApiError::invalid(
                e.to_string(),
                "invalid_directive",
            )))
        }
    };

    let fault = shared.faults.take_global().or_else(|| {
        let spec = directives.fault?;
        shared.faults.take_directive(&directives.text, spec)
    });
    let latency = shared.config.latency + directives.latency;
    if !latency.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(latency) => {}
            _ = ctx.stop.cancelled() => return Err(Abort::ShuttingDown),
        }
    }
    if let Some(fault) = fault {
        shared.counters.fault(fault.kind);
        if let Some(response) = fail(&ctx, fault, &parts.headers).await? {
            return Ok(response);
        }
    }

    let think = if request.thinking_disabled() {
        Duration::ZERO
    } else {
        shared.config.think + directives.think
    };
    let reply = Reply::echo(&directives.text).thinking_for(think);
    let prompt_tokens: u64 = request
        .messages
        .iter()
        .map(|m| count_words(&m.text()))
        .sum();
    // Everything before the last message is what a provider's cache would serve again.
    let last = request
        .messages
        .last()
        .map_or(0, |m| count_words(&m.text()));
    let answer = Answer {
        usage: reply.usage(prompt_tokens, prompt_tokens - last),
        reply,
        meta: ReplyMeta {
            id: shared.next_completion_id(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: request.model,
            flavour,
        },
        fault: fault.map(|f| f.kind),
        pace: shared.config.pace(),
        abandoned: shared.counters.abandoned.clone(),
    };
    let stop = ctx.stop.clone();
    if request.stream == Some(true) {
        return Ok(answer.stream(stop));
    }
    // A whole answer comes after the thinking is done.
    if !think.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(think) => {}
            _ = ctx.stop.cancelled() => return Err(Abort::ShuttingDown),
        }
    }
    Ok(answer.whole(stop))
}

/// The response for faults that replace the answer; `None` for those that break it.
async fn fail(
    ctx: &Context,
    fault: Fault,
    headers: &HeaderMap,
) -> Result<Option<Response<Body>>, Abort> {
    let e = match fault.kind {
        FaultKind::RateLimited => {
            let mut response = error(&ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
                "rate limit reached (injected by fake-llm)",
            ));
            let retry_after = HeaderValue::from(fault.retry_after);
            response.headers_mut().insert(RETRY_AFTER, retry_after);
            return Ok(Some(response));
        }
        FaultKind::Internal => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            "internal server error (injected by fake-llm)",
        ),
        FaultKind::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "service_unavailable",
            "service unavailable (injected by fake-llm)",
        ),
        FaultKind::Stall => {
            ctx.stop.cancelled().await;
            return Err(Abort::ShuttingDown);
        }
        FaultKind::EchoKey => {
            let presented = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                format!("Incorrect API key provided: {presented} (injected by fake-llm)"),
            )
        }
        FaultKind::StallStream
        | FaultKind::Cut
        | FaultKind::Malformed
        | FaultKind::EndlessEvent => return Ok(None),
    };
    Ok(Some(error(&e)))
}

/// A missing `Authorization: Bearer` is refused even when no key is configured.
pub(super) fn authorize(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty());
    let refuse = |message: &str| {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            message,
        ))
    };
    match (presented, expected) {
        (None, _) => refuse("missing Authorization: Bearer <key> header"),
        (Some(got), Some(want)) if got != want => refuse("invalid API key"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn authorization_rules() {
        assert!(authorize(&HeaderMap::new(), None).is_err());
        assert!(authorize(&with_auth("Bearer "), None).is_err());
        assert!(authorize(&with_auth("Basic abc"), None).is_err());
        assert!(authorize(&with_auth("Bearer anything"), None).is_ok());
        assert!(authorize(&with_auth("bearer sk-1"), Some("sk-1")).is_ok());
        let e = authorize(&with_auth("Bearer sk-2"), Some("sk-1")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(e.code, "invalid_api_key");
    }
}
