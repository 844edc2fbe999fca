//! Which handler a request reaches, and the JSON responses they share.

use super::body::{full, read_limited, Abort, Body, ReadError};
use super::fault::FaultSpec;
use super::flavour::Flavour;
use super::wire::ApiError;
use super::{chat, Shared};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every request handler of one server sees.
pub struct Context {
    pub shared: Arc<Shared>,
    /// Cancelled at shutdown, so stalled responses let go of their connections.
    pub stop: CancellationToken,
}

pub async fn route(ctx: Arc<Context>, req: Request<Incoming>) -> Result<Response<Body>, Abort> {
    let path = req.uri().path();
    if path.ends_with("/chat/completions") {
        if req.method() == Method::POST {
            return chat::handle(ctx, req).await;
        }
        return Ok(error(&ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "use POST",
        )));
    }
    let shared = &ctx.shared;
    if req.method() == Method::GET && path.ends_with("/models") {
        if let Err(e) = chat::authorize(req.headers(), shared.config.key.as_deref()) {
            return Ok(error(&e));
        }
        let flavour = Flavour::of_path(path);
        if shared.config.no_model_list.contains(&flavour) {
            return Ok(Flavour::no_model_list(path));
        }
        return Ok(flavour.model_list(&shared.config.served(flavour)));
    }
    let response = match (req.method().clone(), path) {
        (Method::POST, "/_control") => return control(shared, req).await,
        (Method::GET, "/_control") => json(StatusCode::OK, &ControlState::of(shared)),
        (Method::GET, "/_requests") => json(StatusCode::OK, &shared.log.snapshot()),
        (Method::DELETE, "/_requests") => {
            shared.log.clear();
            empty(StatusCode::NO_CONTENT)
        }
        (Method::GET, "/_stats") => json(StatusCode::OK, &shared.counters.stats()),
        _ => error(&ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            format!("no route for {} {path}", req.method()),
        )),
    };
    Ok(response)
}

/// `POST /_control` body: `{"fault": "500", "count": 3}`; `{"fault": null}` resets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlRequest {
    /// A fault as in a directive, e.g. `"429 retry-after=2"` or `"500x3"`.
    #[serde(default)]
    fault: Option<String>,
    /// Overrides a count suffix in `fault`; absent means until reset.
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    retry_after: Option<u32>,
}

/// What `/_control` reports as armed.
#[derive(Serialize)]
struct ControlState {
    fault: Option<&'static str>,
    /// Requests left to fail; `null` with a fault means until reset.
    count: Option<u32>,
    retry_after: Option<u32>,
}

impl ControlState {
    fn of(shared: &Shared) -> Self {
        let armed = shared.faults.armed();
        ControlState {
            fault: armed.map(|s| s.fault.kind.name()),
            count: armed.and_then(|s| s.count),
            retry_after: armed.map(|s| s.fault.retry_after),
        }
    }
}

const CONTROL_BODY_LIMIT: usize = 64 * 1024;

async fn control(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, Abort> {
    let body = match read_limited(req.into_body(), CONTROL_BODY_LIMIT).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            return Ok(error(&ApiError::invalid(
                "control body too large",
                "invalid_control",
            )))
        }
        Err(ReadError::Client) => return Err(Abort::RequestBody),
    };
    let spec = match parse_control(&body) {
        Ok(spec) => spec,
        Err(message) => return Ok(error(&ApiError::invalid(message, "invalid_control"))),
    };
    shared.faults.arm(spec);
    Ok(json(StatusCode::OK, &ControlState::of(shared)))
}

fn parse_control(body: &[u8]) -> Result<Option<FaultSpec>, String> {
    let control: ControlRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid control body: {e}"))?;
    let Some(fault) = control.fault else {
        return Ok(None);
    };
    let mut spec: FaultSpec = fault.parse().map_err(|e| format!("{e}"))?;
    if control.count.is_some() {
        spec.count = control.count;
    }
    if let Some(seconds) = control.retry_after {
        spec.fault.retry_after = seconds;
    }
    Ok(Some(spec))
}

pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).expect("control replies always serialize");
    json_bytes(status, bytes)
}

pub fn error(e: &ApiError) -> Response<Body> {
    json_bytes(e.status, e.body())
}

fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    let content_type = HeaderValue::from_static("application/json");
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_llm::fault::FaultKind;

    #[test]
    fn control_bodies() {
        assert_eq!(parse_control(br#"{"fault": null}"#), Ok(None));
        assert_eq!(parse_control(b"{}"), Ok(None));
        let spec = parse_control(br#"{"fault": "500", "count": 3}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (spec.fault.kind, spec.count),
            (FaultKind::Internal, Some(3))
        );
        let spec = parse_control(br#"{"fault": "429", "retry_after": 4}"#)
            .unwrap()
            .unwrap();
        assert_eq!((spec.fault.retry_after, spec.count), (4, None));
        let spec = parse_control(br#"{"fault": "cutx2"}"#).unwrap().unwrap();
        assert_eq!(spec.count, Some(2));
        assert!(parse_control(br#"{"fault": "teapot"}"#).is_err());
        assert!(parse_control(b"not json").is_err());
    }
}
