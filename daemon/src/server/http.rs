//! Streamable HTTP MCP on `/mcp`: the token, Host and Origin are checked here, the body
//! is read under its deadlines, a place is taken, then rmcp's service does the rest
//! (sessions, SSE, 202/404/405). An `initialize` first makes room among the sessions.

use super::admission::Connection;
use super::body::{self, BodyError};
use super::direct;
use super::plain;
use super::sessions::{DirectCall, DuplicateId, SessionRequest};
use super::{text, Body, Server};
use crate::mcp::compat;
use crate::mcp::era::Era;
use crate::security::{self, Refusal};
use bytes::Bytes;
use exai_proto::{ConnectionPhase, RefusalReason, Transport};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use rmcp::model::RequestId;
use rmcp::transport::streamable_http_server::session::SessionId;
use std::sync::Arc;

pub async fn handle(
    server: &Server,
    req: Request<hyper::body::Incoming>,
    connection: Arc<Connection>,
) -> Response<Body> {
    let checks = security::check_host(req.headers(), &server.config.allowed_hosts)
        .and_then(|()| security::check_origin(req.headers()))
        .and_then(|()| {
            security::authorize(
                server.config.token.as_ref(),
                req.headers(),
                req.uri().query(),
            )
        });
    if let Err(refusal) = checks {
        let (status, reason, body) = match refusal {
            Refusal::Unauthorized => (
                401,
                RefusalReason::Unauthorized,
                "unauthorized: send Authorization: Bearer <EXAI_WS_TOKEN>\n",
            ),
            Refusal::ForeignOrigin => (
                403,
                RefusalReason::ForbiddenOrigin,
                "forbidden: origin not allowed\n",
            ),
            Refusal::ForeignHost => (
                403,
                RefusalReason::ForbiddenOrigin,
                "forbidden: host not allowed\n",
            ),
        };
        server.connection_event(Transport::Http, ConnectionPhase::Refused, reason);
        return text(status, body);
    }
    let deleting = req.method() == hyper::Method::DELETE;
    let plain_allowed = req.method() == hyper::Method::POST && plain::accepts_json(req.headers());
    let session: Option<SessionId> = req
        .headers()
        .get("mcp-session-id")
        .and_then(|id| id.to_str().ok())
        .map(|id| id.to_owned().into());
    let starts_session =
        req.method() == hyper::Method::POST && !req.headers().contains_key("mcp-session-id");
    // A `GET` stream holds a place for its client and one in its session while open.
    let stream_places = match (req.method() == hyper::Method::GET, &session) {
        (true, Some(id)) => match stream_places(server, id, connection.peer) {
            Ok(places) => Some(places),
            Err(response) => return *response,
        },
        _ => None,
    };
    let (parts, body) = req.into_parts();
    let body = if parts.method == hyper::Method::POST {
        match body::read(body, server.config.max_frame_bytes, &server.config.limits).await {
            Ok(bytes) => Some(bytes),
            Err(BodyError::TooLarge) => {
                return close(text(413, "request body too large (EXAI_WS_MAX_FRAME_BYTES)\n"))
            }
            Err(BodyError::TooSlow) => return close(text(
                408,
                "request body too slow: it must arrive within EXAI_HTTP_BODY_TIMEOUT_MS, at EXAI_HTTP_BODY_MIN_BYTES_PER_S or faster\n",
            )),
            Err(BodyError::Broken) => return close(text(400, "request body broken off\n")),
        }
    } else {
        None
    };
    // Read whole and authenticated: now it may hold a place.
    let Some(place) = connection.activate() else {
        return server.too_many_connections(Transport::Http);
    };
    // A session's request holds its id until answered: a duplicate is refused.
    let mut holds = Holds {
        _streams: stream_places,
        request: None,
    };
    if let (Some(session), Some(body)) = (&session, &body) {
        if let Some(id) = request_id(body) {
            match server.http_sessions.begin_request(session, &id) {
                Ok(request) => holds.request = request,
                Err(DuplicateId) => return duplicate_id(id),
            }
        }
    }
    // Whether the answer advertises tasks, which rmcp's types cannot carry (`compat`).
    let mut advertises = false;
    let response = match body {
        Some(mut body) => {
            let looked = compat::needs_a_look(&body);
            let look = looked
                .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
                .flatten();
            if let Some(mut message) = look {
                match compat::inbound(&mut message) {
                    compat::Inbound::Rewritten => body = Bytes::from(message.to_string()),
                    compat::Inbound::AsIs => {}
                }
            }
            advertises = compat::answer_advertises(&body);
            // The common case, a plain `tools/call` in a session, is answered in place.
            let in_place = plain_allowed && !looked && !advertises;
            let direct = match in_place
                .then(|| direct::call(&parts.headers, &server.config.allowed_hosts, &body))
                .flatten()
            {
                Some(call) if call.era == Era::Stateless => {
                    let place = DirectCall::stateless(&server.stages.sessions);
                    Some((call, place))
                }
                Some(call) => match &session {
                    Some(session) => server
                        .http_sessions
                        .direct_call(session, &call.id, &server.stages.sessions)
                        .await
                        .map(|place| (call, place)),
                    None => None,
                },
                None => None,
            };
            if let Some((call, call_place)) = direct {
                drop(body);
                let response = direct::answer(server.core.clone(), call, parts, call_place).await;
                return held(response, place, advertises, false, holds);
            }
            let _reserved = if starts_session && is_initialize(&body) {
                match server.http_sessions.reserve().await {
                    Ok(reserved) => Some(reserved),
                    Err(full) => {
                        tracing::warn!(
                            max = full.max,
                            "MCP session refused: every session is busy (EXAI_HTTP_MAX_SESSIONS)"
                        );
                        let mut response = text(
                            503,
                            "too many MCP sessions, all busy (EXAI_HTTP_MAX_SESSIONS); try later\n",
                        );
                        response.headers_mut().insert(
                            hyper::header::RETRY_AFTER,
                            hyper::header::HeaderValue::from_static("1"),
                        );
                        return response;
                    }
                }
            } else {
                None
            };
            let sent = body.clone();
            let sent_as_json = parts
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|kind| kind.to_str().ok())
                .is_some_and(|kind| plain::essence(kind).eq_ignore_ascii_case("application/json"));
            let response = server
                .http_mcp
                .handle(Request::from_parts(parts, Full::new(body)))
                .await;
            unreadable(response, &sent, sent_as_json)
        }
        None => {
            server
                .http_mcp
                .handle(Request::from_parts(parts, Full::new(Bytes::new())))
                .await
        }
    };
    let response = match plain_allowed {
        true => plain::answer(response, |chunk| patched(advertises, chunk)).await,
        false => response,
    };
    held(response, place, advertises, deleting, holds)
}

/// What a response holds until it is sent whole, besides its connection's place.
struct Holds {
    /// A `GET` stream's places.
    _streams: Option<StreamPlaces>,
    /// A session's request, awaiting its answer.
    request: Option<SessionRequest>,
}

/// The id of the JSON-RPC request a POST carries, if it is one.
fn request_id(body: &[u8]) -> Option<RequestId> {
    #[derive(serde::Deserialize)]
    struct Head {
        id: Option<RequestId>,
        method: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Head>(body) {
        Ok(Head {
            id: Some(id),
            method: Some(_),
        }) => Some(id),
        _ => None,
    }
}

/// The answer to a request whose id a request of the same session still awaiting its
/// answer has: answers could not be told apart.
fn duplicate_id(id: RequestId) -> Response<Body> {
    let error = rmcp::model::ErrorData::invalid_request(
        "Invalid Request: this id is already in use by a request of this session awaiting its answer",
        None,
    );
    let message = rmcp::model::ServerJsonRpcMessage::error(error, Some(id));
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
    let Some(for_client) = server.streams.take(client) else {
        return Err(refused(
            "too many open streams from this client (EXAI_HTTP_MAX_STREAMS_PER_CLIENT); close one first\n",
        ));
    };
    let Some(for_session) = server
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
/// the client gets the JSON-RPC error instead (-32700 or -32600, with its id when one
/// can be read), as over WebSocket, with 400. A body sent as another media type keeps
/// rmcp's 415.
fn unreadable(response: Response<Body>, body: &Bytes, sent_as_json: bool) -> Response<Body> {
    if !sent_as_json || response.status() != hyper::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    let Err(error) = super::message::check_frame(&String::from_utf8_lossy(body)) else {
        return response;
    };
    let json = serde_json::to_vec(&error).unwrap_or_default();
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
