//! Streamable HTTP MCP on `/mcp`: the token, Host and Origin are checked here, then
//! rmcp's service does the rest (sessions, SSE, 202/404/405).

use super::{text, Body, Server};
use crate::mcp::compat;
use crate::security::{self, Refusal};
use bytes::Bytes;
use exai_proto::{ConnectionPhase, RefusalReason, Transport};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};

pub async fn handle(server: &Server, req: Request<hyper::body::Incoming>) -> Response<Body> {
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
    let response = if req.method() == hyper::Method::POST {
        let (parts, body) = req.into_parts();
        let mut body = match Limited::new(body, server.config.max_frame_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return text(413, "request body too large (EXAI_WS_MAX_FRAME_BYTES)\n"),
        };
        let look = compat::needs_a_look(&body)
            .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .flatten();
        if let Some(mut message) = look {
            match compat::inbound(&mut message) {
                compat::Inbound::Answer(answer) => {
                    crate::mcp::count_early(&server.emitter, Transport::Http);
                    let json = serde_json::to_vec(&answer).unwrap_or_default();
                    return Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(json)).boxed())
                        .unwrap_or_else(|_| text(500, "cannot build the response\n"));
                }
                compat::Inbound::Rewritten => body = Bytes::from(message.to_string()),
                compat::Inbound::AsIs => {}
            }
        }
        let advertises = compat::answer_advertises(&body);
        let response = server
            .http_mcp
            .handle(Request::from_parts(parts, Full::new(body)))
            .await;
        if advertises {
            let (parts, body) = response.into_parts();
            let body = body.map_frame(|frame| frame.map_data(compat::patch_chunk));
            return Response::from_parts(parts, body.boxed());
        }
        response
    } else {
        server.http_mcp.handle(req).await
    };
    let (mut parts, body) = response.into_parts();
    // rmcp accepts a session's DELETE with 202; clients (the Python SDK among them)
    // expect 200 or 204 for a session that is gone.
    if deleting && parts.status == hyper::StatusCode::ACCEPTED {
        parts.status = hyper::StatusCode::NO_CONTENT;
    }
    Response::from_parts(parts, body.boxed())
}
