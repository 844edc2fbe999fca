//! Streamable HTTP MCP on `/mcp`: the token, Host and Origin are checked here, then
//! rmcp's service does the rest (sessions, SSE, 202/404/405).

use super::{text, Body, Server};
use crate::security::{self, Refusal};
use exai_proto::{ConnectionPhase, RefusalReason, Transport};
use http_body_util::BodyExt;
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
    let response = server.http_mcp.handle(req).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.boxed())
}
