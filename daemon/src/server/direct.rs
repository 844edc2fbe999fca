//! `tools/call` answered in place, the common case of Streamable HTTP: a POST that asks
//! for a tool, accepts a plain JSON answer and wants no progress — inside an initialized
//! session (2025 era), or stateless with its revision, capabilities and `Mcp-Method` /
//! `Mcp-Name` headers all in agreement (2026-07-28).
//!
//! Through rmcp such a call crosses three tasks and two channels (the session's worker,
//! the service loop, a task for the request), is parsed as any client message could be,
//! and comes back as an SSE stream that `plain` reads again to send one JSON object:
//! more than half of the daemon's CPU per call (0.43× once answered here, BENCHMARKS.md).
//! Here the POST's body is read for the one shape it must have, the tool runs on a task
//! of its own (so a client that hangs up does not stop it half-way: it is counted, as
//! through rmcp), and its answer is written once.
//!
//! Everything else goes to rmcp, which stays the reference: other methods, batches,
//! progress tokens, tasks, unknown fields, protocol versions past what this server
//! speaks, sessions not yet initialized or gone, a request id already under way. A call
//! answered here is cancelled as rmcp's would be: in a session by `notifications/cancelled`
//! for its id (`sessions`) and by the end of its session; stateless, by the client closing
//! its connection before the answer; and at shutdown. Its result is shaped for its era by
//! `mcp::era::finish`, as rmcp shapes its own.

use super::plain;
use super::sessions::DirectCall;
use super::Body;
use crate::mcp::era::{self, Era};
use crate::mcp::{CallSite, McpCore};
use bytes::Bytes;
use exai_proto::Transport;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::Response;
use rmcp::model::{
    CallToolRequestParams, ErrorData, JsonObject, ProtocolVersion, RequestId, RequestMetaObject,
    ServerJsonRpcMessage, ServerResult,
};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;

/// A `tools/call` this module may answer.
#[derive(Debug)]
pub struct Call {
    pub id: RequestId,
    name: String,
    arguments: Option<JsonObject>,
    meta: RequestMetaObject,
    /// Stateless (2026-07-28) or inside a session.
    pub era: Era,
}

/// The request exactly as a plain `tools/call` is sent; anything more (or less) is
/// rmcp's to answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    id: RequestId,
    #[serde(borrow)]
    method: Cow<'a, str>,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
    #[serde(rename = "_meta", default)]
    meta: Option<RequestMetaObject>,
}

/// The call in a POST's body, if it is one this module answers. `headers` are the
/// request's: what rmcp would refuse (a content type, an `Accept` without SSE, a Host
/// rmcp does not know, a protocol version this server does not speak) is left to it.
pub fn call(headers: &hyper::HeaderMap, allowed_hosts: &[String], body: &[u8]) -> Option<Call> {
    if !rmcp_would_take(headers, allowed_hosts) {
        return None;
    }
    let request: Request<'_> = serde_json::from_slice(body).ok()?;
    if request.jsonrpc != "2.0" || request.method != "tools/call" {
        return None;
    }
    let meta = request.params.meta.unwrap_or_default();
    // Progress is sent on the request's SSE stream: rmcp's.
    if meta.get_progress_token().is_some() {
        return None;
    }
    let era = Era::of(&meta);
    let agrees = match era {
        Era::Handshake => handshake_agrees(headers, &meta),
        Era::Stateless => stateless_agrees(headers, &meta, &request.params.name),
    };
    if !agrees {
        return None;
    }
    Some(Call {
        id: request.id,
        name: request.params.name,
        arguments: request.params.arguments,
        meta,
        era,
    })
}

/// A session's call: a protocol version in the header must be one with a handshake, and
/// a version in `_meta` (which rmcp checks against the header) is rmcp's.
fn handshake_agrees(headers: &hyper::HeaderMap, meta: &RequestMetaObject) -> bool {
    if meta.contains_key("protocolVersion") {
        return false;
    }
    match headers.get("mcp-protocol-version") {
        None => true,
        Some(version) => version.to_str().is_ok_and(|version| {
            era::supported()
                .iter()
                .any(|known| known.as_str() == version && known != &ProtocolVersion::V_2026_07_28)
        }),
    }
}

/// A stateless call: its `_meta` names 2026-07-28 and the client's capabilities, the
/// `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers say the same as the body
/// (once each), it sends no `Mcp-Param-*` headers (rmcp checks those against the tool's
/// schema), and it is not a call the server makes a task of (a client that declares the
/// tasks extension calling a tool that runs as one). Everything else, errors included,
/// is rmcp's to answer.
fn stateless_agrees(headers: &hyper::HeaderMap, meta: &RequestMetaObject, name: &str) -> bool {
    let version = ProtocolVersion::V_2026_07_28;
    let once = |header: &str, expected: &str| {
        let mut values = headers.get_all(header).iter();
        values
            .next()
            .is_some_and(|v| v.as_bytes() == expected.as_bytes())
            && values.next().is_none()
    };
    // What rmcp requires of the `_meta`, read once: the revision (a string, so no decoding
    // is needed to compare it) and capabilities that decode.
    let names_version = meta
        .get(crate::mcp::compat::PROTOCOL_VERSION_KEY)
        .and_then(serde_json::Value::as_str)
        == Some(version.as_str());
    if !names_version {
        return false;
    }
    // Capabilities `{}` (a client that offers nothing) need no decoding: no tasks.
    let takes_tasks = match meta.get("io.modelcontextprotocol/clientCapabilities") {
        Some(serde_json::Value::Object(declared)) if declared.is_empty() => false,
        _ => match meta.client_capabilities() {
            Some(capabilities) => capabilities.supports_tasks(),
            None => return false,
        },
    };
    let as_task = takes_tasks
        && crate::tools::specs()
            .iter()
            .any(|s| s.task_support && s.name == name);
    let params = headers
        .keys()
        .any(|key| key.as_str().starts_with("mcp-param-"));
    once("mcp-protocol-version", version.as_str())
        && once("mcp-method", "tools/call")
        && once("mcp-name", name)
        && !params
        && !as_task
}

/// rmcp's own checks of a POST, narrowed: only what passes them for certain is taken.
fn rmcp_would_take(headers: &hyper::HeaderMap, allowed_hosts: &[String]) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    let json = text(CONTENT_TYPE)
        .is_some_and(|kind| plain::essence(kind).eq_ignore_ascii_case("application/json"));
    let sse = plain::accepts(headers, "text/event-stream");
    // rmcp's list: the three loopback names and EXAI_WS_ALLOWED_HOSTS, port aside.
    let host = text(HOST)
        .and_then(exai_process::host::name)
        .is_some_and(|name| {
            ["localhost", "127.0.0.1", "::1"]
                .iter()
                .copied()
                .chain(allowed_hosts.iter().map(String::as_str))
                .any(|known| known.eq_ignore_ascii_case(name))
        });
    json && sse && host
}

/// Runs `call` and answers it with one JSON object, as rmcp would have written it.
pub async fn answer(
    core: Arc<McpCore>,
    call: Call,
    request: hyper::http::request::Parts,
    place: DirectCall,
) -> Response<Body> {
    let id = call.id.clone();
    let era = call.era;
    // A stateless call ends with its request: a client that closes the connection
    // before the answer cancels it (the model call is aborted and its place returned).
    // A session's call runs on, as rmcp's do, to be answered on the session.
    let cancel_on_hang_up = (era == Era::Stateless).then(|| place.ct.clone().drop_guard());
    let run = core.tasks.clone().spawn(async move {
        let mut params = CallToolRequestParams::new(call.name);
        params.arguments = call.arguments;
        let owner = crate::mcp::http_session_owner(&request.headers).unwrap_or_default();
        let site = CallSite {
            meta: &call.meta,
            headers: Some(&request.headers),
            transport: Transport::Http,
            ct: &place.ct,
            peer: None,
            owner: &owner,
        };
        let response = core.call_tool(params, site).await;
        drop(place);
        response
    });
    let outcome = run.await;
    if let Some(guard) = cancel_on_hang_up {
        guard.disarm();
    }
    let message = match outcome {
        Ok(Ok(response)) => {
            let mut result = ServerResult::from(response);
            era::finish(&mut result, era);
            ServerJsonRpcMessage::response(result, id)
        }
        Ok(Err(error)) => ServerJsonRpcMessage::error(error, Some(id)),
        Err(failed) => {
            tracing::error!(error = %failed, "a tool call's task failed");
            ServerJsonRpcMessage::error(
                ErrorData::internal_error("the tool call failed inside the server", None),
                Some(id),
            )
        }
    };
    let json = serde_json::to_vec(&message).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(json)).boxed());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::ACCEPT;

    fn headers(version: Option<&'static str>) -> hyper::HeaderMap {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8079"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(version) = version {
            headers.insert("mcp-protocol-version", HeaderValue::from_static(version));
        }
        headers
    }

    fn parsed(body: &str) -> Option<Call> {
        call(&headers(Some("2025-11-25")), &[], body.as_bytes())
    }

    #[test]
    fn a_plain_tool_call_is_answered_in_place() {
        let call = parsed(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"chat","arguments":{"prompt":"hi"},"_meta":{"correlation_id":"c-1"}}}"#,
        )
        .expect("a plain call");
        assert_eq!(call.id, RequestId::Number(7));
        assert_eq!(call.name, "chat");
        assert_eq!(call.arguments.unwrap()["prompt"], "hi");
        assert_eq!(call.meta.get("correlation_id").unwrap(), "c-1");
        let call = call_with(
            None,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"version"}}"#,
        );
        assert_eq!(call.unwrap().id, RequestId::String("a".into()));
    }

    fn call_with(version: Option<&'static str>, body: &str) -> Option<Call> {
        call(&headers(version), &[], body.as_bytes())
    }

    #[test]
    fn anything_else_is_left_to_rmcp() {
        let left = [
            // other methods, notifications, batches, broken JSON
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"version"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"version"}"#,
            // a wrong version, an id that is not one, params of another shape
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"version"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"version"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            // progress, a task, fields this module does not know, a version in _meta
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"chat","_meta":{"progressToken":3}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"chat","task":{"ttl":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"chat","requestState":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"chat"},"extra":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"chat","_meta":{"protocolVersion":"2025-11-25"}}}"#,
        ];
        for body in left {
            assert!(parsed(body).is_none(), "answered in place: {body}");
        }
        let plain = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"version"}}"#;
        // A version this server does not speak is rmcp's to refuse; none is 2025-03-26.
        assert!(call_with(Some("2026-07-28"), plain).is_none());
        assert!(call_with(Some("not-a-version"), plain).is_none());
        assert!(call_with(Some("2025-06-18"), plain).is_some());
        assert!(call_with(None, plain).is_some());
    }

    /// A 2026 request's headers, `name` in `Mcp-Name`.
    fn stateless_headers(name: &'static str) -> hyper::HeaderMap {
        let mut headers = headers(Some("2026-07-28"));
        headers.insert("mcp-method", HeaderValue::from_static("tools/call"));
        headers.insert("mcp-name", HeaderValue::from_static(name));
        headers
    }

    fn stateless_body(name: &str, meta: serde_json::Value) -> String {
        serde_json::json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": name, "arguments": {}, "_meta": meta}})
        .to_string()
    }

    fn modern_meta() -> serde_json::Value {
        serde_json::json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        })
    }

    #[test]
    fn a_stateless_call_whose_headers_agree_is_answered_in_place() {
        let body = stateless_body("version", modern_meta());
        let call = call(&stateless_headers("version"), &[], body.as_bytes()).expect("in place");
        assert_eq!(call.era, Era::Stateless);
        assert_eq!(call.name, "version");
    }

    #[test]
    fn a_stateless_call_rmcp_must_judge_is_left_to_it() {
        let take = |headers: hyper::HeaderMap, meta: serde_json::Value| {
            call(&headers, &[], stateless_body("version", meta).as_bytes()).is_some()
        };
        // Mcp-Name or Mcp-Method that disagree with the body, or are missing or doubled.
        assert!(!take(stateless_headers("chat"), modern_meta()));
        let mut no_name = stateless_headers("version");
        no_name.remove("mcp-name");
        assert!(!take(no_name, modern_meta()));
        let mut twice = stateless_headers("version");
        twice.append("mcp-name", HeaderValue::from_static("version"));
        assert!(!take(twice, modern_meta()));
        let mut other_method = stateless_headers("version");
        other_method.insert("mcp-method", HeaderValue::from_static("tools/list"));
        assert!(!take(other_method, modern_meta()));
        // A header version that differs from `_meta`'s, or none.
        let mut old_header = stateless_headers("version");
        old_header.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-11-25"),
        );
        assert!(!take(old_header, modern_meta()));
        let mut no_header = stateless_headers("version");
        no_header.remove("mcp-protocol-version");
        assert!(!take(no_header, modern_meta()));
        // `_meta` without the client's capabilities, or naming a version not served.
        let mut partial = modern_meta();
        partial
            .as_object_mut()
            .unwrap()
            .remove("io.modelcontextprotocol/clientCapabilities");
        assert!(!take(stateless_headers("version"), partial));
        let mut future = modern_meta();
        future["io.modelcontextprotocol/protocolVersion"] = "2027-01-01".into();
        assert!(!take(stateless_headers("version"), future));
        // Mcp-Param-* headers are checked against the tool's schema by rmcp.
        let mut param = stateless_headers("version");
        param.insert("mcp-param-x", HeaderValue::from_static("1"));
        assert!(!take(param, modern_meta()));
    }

    #[test]
    fn a_chat_for_a_client_that_takes_tasks_becomes_one_elsewhere() {
        let mut meta = modern_meta();
        meta["io.modelcontextprotocol/clientCapabilities"] =
            serde_json::json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
        let body = stateless_body("chat", meta.clone());
        assert!(call(&stateless_headers("chat"), &[], body.as_bytes()).is_none());
        let version = stateless_body("version", meta);
        assert!(
            call(&stateless_headers("version"), &[], version.as_bytes()).is_some(),
            "a tool that never runs as a task is answered in place"
        );
    }

    #[test]
    fn a_post_rmcp_would_refuse_is_left_to_it() {
        let plain =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"version"}}"#;
        let take = |change: &dyn Fn(&mut hyper::HeaderMap), allowed: &[String]| {
            let mut headers = headers(None);
            change(&mut headers);
            call(&headers, allowed, plain).is_some()
        };
        assert!(take(&|_| {}, &[]));
        assert!(!take(
            &|h| {
                h.insert(ACCEPT, HeaderValue::from_static("application/json"));
            },
            &[]
        ));
        assert!(!take(
            &|h| {
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            },
            &[]
        ));
        assert!(take(
            &|h| {
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("Application/JSON; charset=utf-8"),
                );
            },
            &[]
        ));
        assert!(!take(
            &|h| {
                h.remove(HOST);
            },
            &[]
        ));
        assert!(!take(
            &|h| {
                h.insert(HOST, HeaderValue::from_static("exai.example"));
            },
            &[]
        ));
        assert!(take(
            &|h| {
                h.insert(HOST, HeaderValue::from_static("exai.example:8079"));
            },
            &["exai.example".into()]
        ));
        assert!(take(
            &|h| {
                h.insert(HOST, HeaderValue::from_static("[::1]:8079"));
            },
            &[]
        ));
        assert!(!take(
            &|h| {
                h.insert(HOST, HeaderValue::from_static("127.0.0.2"));
            },
            &[]
        ));
    }
}
