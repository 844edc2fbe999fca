//! Which handler a request reaches: the PostgREST subset, or the test controls.

use super::tables::{ApiError, Resolution};
use super::{Fault, Shared};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest request body read; PostgREST's own limit is configurable, this is plenty.
const BODY_LIMIT: usize = 64 << 20;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;
type Reply = Result<Response<Body>, std::io::Error>;

/// What an endless error body repeats.
const ENDLESS_CHUNK: &[u8] = &[b'e'; 64 << 10];

pub async fn route(shared: Arc<Shared>, stop: CancellationToken, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if let Some(table) = path.strip_prefix("/rest/v1/") {
        let table = table.to_string();
        return rest(&shared, &stop, &table, req).await;
    }
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/_control") => control(&shared, req).await,
        (Method::GET, "/_stats") => Ok(json_reply(
            200,
            &serde_json::to_value(shared.stats()).unwrap_or_default(),
        )),
        _ => Ok(json_reply(
            404,
            &json!({"message": format!("no route for {} {path}", req.method())}),
        )),
    }
}

async fn rest(
    shared: &Shared,
    stop: &CancellationToken,
    table: &str,
    req: Request<Incoming>,
) -> Reply {
    let fault = *shared.fault.lock().unwrap();
    match fault {
        Some(Fault::Stall) => {
            shared.count("stalled");
            stop.cancelled().await;
            return Err(std::io::Error::other("fake-postgrest is shutting down"));
        }
        Some(Fault::Unavailable) => {
            return Ok(refuse(
                shared,
                &ApiError::new(
                    503,
                    "PGRST002",
                    "Could not query the database for the schema cache. Retrying.",
                    None,
                ),
            ));
        }
        Some(Fault::Unauthorized) => return Ok(refuse(shared, &invalid_api_key())),
        Some(Fault::EndlessError) => {
            shared.count("500");
            return Ok(endless_error(stop.clone()));
        }
        None => {}
    }
    if let Err(e) = check_keys(req.headers(), &shared.key) {
        return Ok(refuse(shared, &e));
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let result = match *req.method() {
        Method::POST => {
            let prefer = prefer(req.headers());
            let body = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return Ok(refuse(
                        shared,
                        &ApiError::new(413, "PGRST413", "Payload too large or unreadable", None),
                    ))
                }
            };
            let resolution = if prefer.iter().any(|p| p == "resolution=merge-duplicates") {
                Resolution::MergeDuplicates
            } else if prefer.iter().any(|p| p == "resolution=ignore-duplicates") {
                Resolution::IgnoreDuplicates
            } else {
                Resolution::Error
            };
            let on_conflict = query
                .iter()
                .find(|(k, _)| k == "on_conflict")
                .map(|(_, v)| v.as_str());
            let representation = prefer.iter().any(|p| p == "return=representation");
            let written = shared.tables.lock().unwrap().write(
                table,
                &body,
                on_conflict,
                resolution,
                representation,
            );
            written.map(|rows| {
                if representation {
                    json_reply(201, &Value::Array(rows))
                } else {
                    empty(201)
                }
            })
        }
        Method::GET => shared
            .tables
            .lock()
            .unwrap()
            .select(table, &query)
            .map(|rows| json_reply(200, &Value::Array(rows))),
        _ => Err(ApiError::new(
            405,
            "PGRST117",
            format!("Unsupported HTTP method: {}", req.method()),
            None,
        )),
    };
    Ok(match result {
        Ok(reply) => {
            shared.count(reply.status().as_str());
            reply
        }
        Err(e) => refuse(shared, &e),
    })
}

/// Supabase's gateway answer to a missing or wrong `apikey`.
fn invalid_api_key() -> ApiError {
    ApiError {
        status: 401,
        body: json!({"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}),
    }
}

fn check_keys(headers: &HeaderMap, key: &str) -> Result<(), ApiError> {
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(key) {
        return Err(invalid_api_key());
    }
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(key) {
        return Err(ApiError::new(
            401,
            "PGRST301",
            "JWSError JWSInvalidSignature",
            None,
        ));
    }
    Ok(())
}

/// The `Prefer` header's comma-separated preferences.
fn prefer(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect()
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn control(shared: &Shared, req: Request<Incoming>) -> Reply {
    let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(json_reply(
                400,
                &json!({"message": "control body unreadable"}),
            ))
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Control {
        fault: Option<Fault>,
    }
    match serde_json::from_slice::<Control>(&body) {
        Ok(control) => {
            *shared.fault.lock().unwrap() = control.fault;
            Ok(json_reply(200, &json!({"fault": control.fault})))
        }
        Err(e) => Ok(json_reply(
            400,
            &json!({"message": format!("invalid control body: {e}; expected {{\"fault\": \"503\" | \"stall\" | \"401\" | \"endless-500\" | null}}")}),
        )),
    }
}

/// A 500 whose body never ends, until the client leaves or the fake stops.
fn endless_error(stop: CancellationToken) -> Response<Body> {
    let chunks = futures_util::stream::unfold(stop, |stop| async move {
        if stop.is_cancelled() {
            return None;
        }
        let chunk = hyper::body::Frame::data(Bytes::from_static(ENDLESS_CHUNK));
        Some((Ok(chunk), stop))
    });
    let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

fn refuse(shared: &Shared, e: &ApiError) -> Response<Body> {
    shared.count(&e.status.to_string());
    json_reply(e.status, &e.body)
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_reply(status: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn empty(status: u16) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_preferences_parse_like_postgrest() {
        assert_eq!(
            parse_query("conversation_id=eq.a%20b&select=*"),
            [
                ("conversation_id".to_string(), "eq.a b".to_string()),
                ("select".to_string(), "*".to_string())
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        let mut headers = HeaderMap::new();
        headers.insert(
            "prefer",
            HeaderValue::from_static("resolution=merge-duplicates, return=minimal"),
        );
        assert_eq!(
            prefer(&headers),
            ["resolution=merge-duplicates", "return=minimal"]
        );
    }
}
