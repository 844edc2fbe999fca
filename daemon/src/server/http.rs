//! Streamable HTTP MCP on `/mcp`: admitted (`admit`), the body read under its deadlines,
//! a place taken; then a POST goes one of two ways — a plain `tools/call` answered in
//! place (`direct`), or rmcp's service, which does the rest (both protocol eras,
//! sessions, SSE, 202/404/405). An `initialize` first makes room among the sessions; a
//! session's request holds its id until answered; a `GET` stream holds places for its
//! client and session (`streams`).

use super::access::admit;
use super::admission::Connection;
use super::body::{self, BodyError};
use super::direct;
use super::plain;
use super::sessions::{DirectCall, DuplicateId, SessionRequest};
use super::{text, Body, Server};
use crate::mcp::compat;
use crate::mcp::era::Era;
use bytes::Bytes;
use exai_proto::{ConnectionPhase, Transport};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use rmcp::model::{ErrorData, RequestId, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::SessionId;
use std::sync::Arc;

pub async fn handle(
    server: &Server,
    req: Request<hyper::body::Incoming>,
    connection: Arc<Connection>,
) -> Response<Body> {
    if let Err(refused) = admit(
        &server.config,
        req.headers(),
        req.uri().query(),
        Transport::Http,
    ) {
        server.connection_event(Transport::Http, ConnectionPhase::Refused, refused.reason);
        return text(refused.status, refused.body);
    }
    let session: Option<SessionId> = req
        .headers()
        .get("mcp-session-id")
        .and_then(|id| id.to_str().ok())
        .map(|id| id.to_owned().into());
    if req.method() == hyper::Method::POST {
        return post(server, req, connection, session).await;
    }
    // A `GET` stream holds a place for its client and one in its session while open.
    let streams = match (req.method() == hyper::Method::GET, &session) {
        (true, Some(id)) => match stream_places(server, id, connection.peer) {
            Ok(places) => Some(places),
            Err(response) => return *response,
        },
        _ => None,
    };
    let Some(place) = connection.activate() else {
        return server.too_many_connections(Transport::Http);
    };
    let deleting = req.method() == hyper::Method::DELETE;
    let (parts, _) = req.into_parts();
    let response = server
        .http_mcp
        .handle(Request::from_parts(parts, Full::new(Bytes::new())))
        .await;
    let holds = Holds {
        _streams: streams,
        _request: None,
        _body: None,
    };
    held(response, place, false, deleting, holds)
}

/// A POSTed message, read whole under its deadlines, then taken one of two ways: a
/// plain `tools/call` is answered in place (`direct`); everything else goes to rmcp.
async fn post(
    server: &Server,
    req: Request<hyper::body::Incoming>,
    connection: Arc<Connection>,
    session: Option<SessionId>,
) -> Response<Body> {
    let plain_allowed = plain::accepts_json(req.headers());
    let (parts, body) = req.into_parts();
    let read = body::read(
        body,
        server.config.max_frame_bytes,
        &server.config.limits,
        &server.occupancy.bodies,
    );
    let (mut body, body_bytes) = match read.await {
            Ok(read) => read,
            Err(BodyError::TooLarge) => {
                return close(text(413, "request body too large (EXAI_WS_MAX_FRAME_BYTES)\n"))
            }
            Err(BodyError::TooSlow) => return close(text(
                408,
                "request body too slow: it must arrive within EXAI_HTTP_BODY_TIMEOUT_MS, at EXAI_HTTP_BODY_MIN_BYTES_PER_S or faster\n",
            )),
            Err(BodyError::Broken) => return close(text(400, "request body broken off\n")),
            Err(BodyError::OverBudget) => return close(busy(
                "the server holds too many request bytes now (EXAI_REQUEST_BYTES_MAX); try again shortly\n",
            )),
        };
    // Read whole and authenticated: now it may hold a place.
    let Some(place) = connection.activate() else {
        return server.too_many_connections(Transport::Http);
    };
    // A 2025 task request gets the name rmcp routes to `mcp::tasks` (`compat`).
    let looked = compat::needs_a_look(&body);
    if looked {
        if let Ok(mut message) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let compat::Inbound::Rewritten = compat::inbound(&mut message) {
                body = Bytes::from(message.to_string());
            }
        }
    }
    // Whether the answer advertises tasks, which rmcp's types cannot carry (`compat`).
    let advertises = compat::answer_advertises(&body);
    let call = (plain_allowed && !looked && !advertises)
        .then(|| direct::call(&parts.headers, &server.config.allowed_hosts, &body))
        .flatten();
    // What rmcp would need to answer a body it cannot read; a call in place was read.
    let head = match &call {
        Some(call) => Head::Request(Some(call.id.clone())),
        None => Head::of(&body),
    };
    // A session's request holds its id until answered: a duplicate is refused.
    let mut holds = Holds {
        _streams: None,
        _request: None,
        _body: Some(body_bytes),
    };
    if let (Some(session), Head::Request(Some(id))) = (&session, &head) {
        match server.occupancy.http_sessions.begin_request(session, id) {
            Ok(request) => holds._request = request,
            Err(DuplicateId) => return duplicate_id(id.clone()),
        }
    }
    let in_place = match call {
        Some(call) if call.era == Era::Stateless => {
            Some((call, DirectCall::stateless(&server.stages.sessions)))
        }
        Some(call) => match &session {
            Some(session) => server
                .occupancy
                .http_sessions
                .direct_call(session, &call.id, &server.stages.sessions)
                .await
                .map(|place| (call, place)),
            None => None,
        },
        None => None,
    };
    if let Some((call, call_place)) = in_place {
        drop(body);
        let response = direct::answer(server.core.clone(), call, parts, call_place).await;
        return held(response, place, advertises, false, holds);
    }
    let _reserved = match session.is_none() && is_initialize(&body) {
        true => match server.occupancy.http_sessions.reserve().await {
            Ok(reserved) => Some(reserved),
            Err(full) => return sessions_full(full),
        },
        false => None,
    };
    let sent_as_json = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|kind| kind.to_str().ok())
        .is_some_and(|kind| plain::essence(kind).eq_ignore_ascii_case("application/json"));
    let response = server
        .http_mcp
        .handle(Request::from_parts(parts, Full::new(body)))
        .await;
    let response = match sent_as_json {
        true => unreadable(response, head),
        false => response,
    };
    let response = match plain_allowed {
        true => plain::answer(response, |chunk| patched(advertises, chunk)).await,
        false => response,
    };
    held(response, place, advertises, false, holds)
}

/// `initialize` when every session is busy.
fn sessions_full(full: super::sessions::Full) -> Response<Body> {
    tracing::warn!(
        max = full.max,
        "MCP session refused: every session is busy (EXAI_HTTP_MAX_SESSIONS)"
    );
    busy("too many MCP sessions, all busy (EXAI_HTTP_MAX_SESSIONS); try later\n")
}

/// 503, to be tried again in a second.
fn busy(body: &'static str) -> Response<Body> {
    let mut response = text(503, body);
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

/// What is read of a POSTed body before rmcp parses it: whether it is JSON, and the id
/// of the request it carries.
enum Head {
    /// A JSON object (or other value); the id of the request it is, if it is one.
    Request(Option<RequestId>),
    /// Not JSON at all.
    NotJson(String),
}

impl Head {
    fn of(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Fields {
            id: Option<RequestId>,
            method: Option<serde::de::IgnoredAny>,
        }
        match serde_json::from_slice::<Fields>(body) {
            Ok(Fields {
                id: Some(id),
                method: Some(_),
            }) => Head::Request(Some(id)),
            Ok(_) => Head::Request(None),
            Err(e) if e.is_syntax() || e.is_eof() => Head::NotJson(e.to_string()),
            Err(_) => Head::Request(None),
        }
    }
}

/// What a response holds until it is sent whole, besides its connection's place.
struct Holds {
    /// A `GET` stream's places.
    _streams: Option<StreamPlaces>,
    /// A session's request, awaiting its answer.
    _request: Option<SessionRequest>,
    /// The request body's share of `EXAI_REQUEST_BYTES_MAX`.
    _body: Option<body::HeldBytes>,
}

/// The answer to a request whose id a request of the same session still awaiting its
/// answer has: answers could not be told apart.
fn duplicate_id(id: RequestId) -> Response<Body> {
    let error = ErrorData::invalid_request(
        "Invalid Request: this id is already in use by a request of this session awaiting its answer",
        None,
    );
    let message = ServerJsonRpcMessage::error(error, Some(id));
    let json = serde_json::to_vec(&message).unwrap_or_default();
    Response::builder()
        .status(400)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json)).boxed())
        .unwrap_or_else(|_| text(500, "cannot build the response\n"))
}

/// A `GET` stream's places: one of its client's and one of its session's; 429 past
/// either bound.
fn stream_places(
    server: &Server,
    session: &SessionId,
    client: std::net::IpAddr,
) -> Result<StreamPlaces, Box<Response<Body>>> {
    let limits = &server.config.limits;
    let refused = |body: &'static str| {
        let mut response = text(429, body);
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        Box::new(response)
    };
    let Some(for_client) = server.occupancy.streams.take(client) else {
        return Err(refused(
            "too many open streams from this client (EXAI_HTTP_MAX_STREAMS_PER_CLIENT); close one first\n",
        ));
    };
    let Some(for_session) = server
        .occupancy
        .http_sessions
        .open_stream(session, limits.max_streams_per_session)
    else {
        return Err(refused(
            "too many open streams on this session (EXAI_HTTP_MAX_STREAMS_PER_SESSION); close one first\n",
        ));
    };
    Ok((for_client, for_session))
}

/// What an open `GET` stream holds until it ends.
type StreamPlaces = (super::streams::ClientStream, super::sessions::SessionStream);

/// rmcp answers a JSON body it cannot read as a message with 415 and a line of text;
/// the client gets the JSON-RPC error instead, with 400: -32700 when it is not JSON,
/// -32600 when it is not a message (with its id when one could be read), as over
/// WebSocket.
fn unreadable(response: Response<Body>, head: Head) -> Response<Body> {
    if response.status() != hyper::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    let (error, id) = match head {
        Head::NotJson(why) => (
            ErrorData::parse_error(format!("Parse error: {why}"), None),
            None,
        ),
        Head::Request(id) => (
            ErrorData::invalid_request(
                "Invalid Request: not a JSON-RPC request, notification or response",
                None,
            ),
            id,
        ),
    };
    let json = serde_json::to_vec(&ServerJsonRpcMessage::error(error, id)).unwrap_or_default();
    Response::builder()
        .status(400)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json)).boxed())
        .unwrap_or_else(|_| text(500, "cannot build the response\n"))
}

/// The answer advertises tasks where it must (`compat`).
fn patched(advertises: bool, chunk: Bytes) -> Bytes {
    match advertises {
        true => compat::patch_chunk(chunk),
        false => chunk,
    }
}

/// `response` as it goes out, holding the connection's place until it is sent whole.
fn held(
    response: Response<Body>,
    place: super::admission::Active,
    advertises: bool,
    deleting: bool,
    holds: Holds,
) -> Response<Body> {
    // A plain answer is patched already; a stream is patched as it goes.
    let streams = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream"));
    let (mut parts, body) = response.into_parts();
    // rmcp accepts a session's DELETE with 202; clients (the Python SDK among them)
    // expect 200 or 204 for a session that is gone.
    if deleting && parts.status == hyper::StatusCode::ACCEPTED {
        parts.status = hyper::StatusCode::NO_CONTENT;
    }
    // The place is held until the response (an SSE stream, maybe) is sent whole.
    let body = Held {
        body,
        place,
        holds,
        patch: streams.then_some(move |chunk| patched(advertises, chunk)),
    }
    .boxed();
    Response::from_parts(parts, body)
}

/// Whether a POSTed body is an `initialize` request. Parsed only for requests without
/// a session, which are rare.
fn is_initialize(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Method<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Method<'_>>(body)
        .is_ok_and(|m| m.method.as_deref() == Some("initialize"))
}

/// Asks hyper to close the connection after this answer: the body was not read whole.
fn close(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// A response body that holds its connection's place until it is sent whole, and
/// advertises tasks in a stream's events as they pass. Its size stays known, so a
/// plain answer goes out with its length rather than chunked.
struct Held<F> {
    body: Body,
    place: super::admission::Active,
    /// Given back when the body ends: a stream's places, a request's id.
    holds: Holds,
    patch: Option<F>,
}

impl<F: Fn(Bytes) -> Bytes + Unpin> hyper::body::Body for Held<F> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let _ = (&this.place, &this.holds);
        std::pin::Pin::new(&mut this.body)
            .poll_frame(cx)
            .map_ok(|frame| match &this.patch {
                Some(patch) => frame.map_data(patch),
                None => frame,
            })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.patch {
            Some(_) => hyper::body::SizeHint::default(),
            None => self.body.size_hint(),
        }
    }
}
