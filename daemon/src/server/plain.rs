//! A plain JSON answer where the Streamable HTTP spec allows one. rmcp answers every
//! POSTed request of a session with an SSE stream: headers, a priming event, the
//! answer, the end of the chunked body — four writes where one would do. The spec
//! lets a server answer with `application/json` instead when the client accepts it,
//! and every client must. So the stream is read here up to its first message: an
//! answer becomes the whole reply; anything else (a progress notification, a request
//! to the client) keeps the stream, with what was read put back in front.

use super::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Whether the request's `Accept` lets the answer be plain JSON.
pub fn accepts_json(headers: &hyper::HeaderMap) -> bool {
    accepts(headers, "application/json")
}

/// Whether the request's `Accept` lists the media type `kind` (parameters aside).
pub fn accepts(headers: &hyper::HeaderMap, kind: &str) -> bool {
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|listed| essence(listed).eq_ignore_ascii_case(kind))
}

/// A media type without its parameters.
pub fn essence(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// Turns rmcp's SSE answer into a JSON one when its first message is the answer.
/// Any other response passes through untouched. `patch` is applied to the answer.
pub async fn answer(response: Response<Body>, patch: impl Fn(Bytes) -> Bytes) -> Response<Body> {
    let is_stream = response.status() == StatusCode::OK
        && response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return response;
    }
    let (mut parts, mut body) = response.into_parts();
    let mut read = BytesMut::new();
    let mut scanned = 0;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => read.extend_from_slice(&data),
                Err(_trailers) => continue,
            },
            // The stream ended (the session closed) before its answer: what was read
            // goes out as it came.
            None | Some(Err(_)) => break,
        }
        while let Some(end) = find_event_end(&read[scanned..]) {
            let event = &read[scanned..scanned + end];
            scanned += end;
            match first_message(event) {
                Message::None => continue,
                Message::Answer(json) => {
                    let json = patch(Bytes::copy_from_slice(json));
                    parts
                        .headers
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    parts.headers.remove(hyper::header::CACHE_CONTROL);
                    parts.headers.remove("x-accel-buffering");
                    // Dropping the rest of the stream ends it, as a client closing it
                    // after the answer would.
                    return Response::from_parts(parts, Full::new(json).boxed());
                }
                Message::Other => return resumed(parts, read.freeze(), body),
            }
        }
    }
    resumed(parts, read.freeze(), body)
}

/// The stream as it would have been, with the bytes already read in front.
fn resumed(parts: hyper::http::response::Parts, read: Bytes, rest: Body) -> Response<Body> {
    let head = futures_util::stream::once(async move { Ok(Frame::data(read)) });
    let stream = futures_util::StreamExt::chain(head, BodyStream::new(rest));
    Response::from_parts(parts, StreamBody::new(stream).boxed())
}

/// The length of the first whole event in `bytes`, its blank line included.
fn find_event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|at| at + 2);
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

enum Message<'a> {
    /// A comment (keep-alive) or an event without data (priming).
    None,
    /// A JSON-RPC response or error: the answer.
    Answer(&'a [u8]),
    /// A notification or a request to the client.
    Other,
}

fn first_message(event: &[u8]) -> Message<'_> {
    let mut data: Option<&[u8]> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            if data.is_some() {
                // A message over several data lines: rmcp never writes one; keep
                // the stream rather than join them here.
                return Message::Other;
            }
            data = Some(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    let Some(json) = data.filter(|json| !json.is_empty()) else {
        return Message::None;
    };
    #[derive(serde::Deserialize)]
    struct Shape {
        method: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(json) {
        Ok(Shape { method: None }) => Message::Answer(json),
        _ => Message::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn sse(chunks: &[&'static str]) -> Response<Body> {
        let frames = chunks
            .iter()
            .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk.as_bytes()))))
            .collect::<Vec<_>>();
        Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .header("mcp-session-id", "s1")
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap()
    }

    async fn text(response: Response<Body>) -> (String, String) {
        let kind = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (kind, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn an_answer_after_priming_and_keep_alives_becomes_plain_json() {
        let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#;
        let response = sse(&[
            "id: 0\nretry: 3000\ndata:\n\n",
            ":\n\n",
            "data: {\"jsonrpc\":\"2.0\",",
            "\"id\":1,\"result\":{\"tools\":[]}}\nid: 1\n\n",
        ]);
        let response = super::answer(response, |b| b).await;
        assert_eq!(response.headers()["mcp-session-id"], "s1");
        assert_eq!(
            text(response).await,
            ("application/json".into(), answer.into())
        );
    }

    #[tokio::test]
    async fn a_notification_first_keeps_the_stream_whole() {
        let chunks = [
            "data:\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
        ];
        let response = super::answer(sse(&chunks), |b| b).await;
        assert_eq!(
            text(response).await,
            ("text/event-stream".into(), chunks.concat())
        );
    }

    #[tokio::test]
    async fn a_stream_ending_before_its_answer_is_passed_on_as_read() {
        let response = super::answer(sse(&["data:\n\n", ":\n\n"]), |b| b).await;
        assert_eq!(
            text(response).await,
            ("text/event-stream".into(), "data:\n\n:\n\n".into())
        );
    }

    #[tokio::test]
    async fn an_error_answer_is_plain_json_too_and_is_patched() {
        let response = sse(&["data: {\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32601,\"message\":\"x\"}}\r\n\r\n"]);
        let response = super::answer(response, |_| Bytes::from_static(b"patched")).await;
        assert_eq!(
            text(response).await,
            ("application/json".into(), "patched".into())
        );
    }

    #[test]
    fn accept_headers_are_read_as_lists() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("text/event-stream"));
        assert!(!accepts_json(&headers));
        headers.append(
            "accept",
            HeaderValue::from_static("Application/JSON;q=0.9, text/event-stream"),
        );
        assert!(accepts_json(&headers));
    }
}
