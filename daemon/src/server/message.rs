//! What a client sent, checked before rmcp sees it: a message that is not JSON-RPC gets
//! its error (-32700 when it is not JSON, -32600 when it is not a request, notification
//! or response, with its id when one can be read), whatever the transport. WebSocket
//! checks every frame here; Streamable HTTP asks only about a body rmcp could not read,
//! so the common case is parsed once.

use rmcp::model::{ClientJsonRpcMessage, ErrorData, RequestId, ServerJsonRpcMessage};
use serde_json::Value;

/// A frame that is JSON-RPC goes on; anything else gets its error (id when known).
pub fn check_frame(text: &str) -> Result<ClientJsonRpcMessage, Box<ServerJsonRpcMessage>> {
    // The common case parses once. Only a frame that fails, or that `compat` may answer
    // or rewrite, is parsed again.
    if !crate::mcp::compat::needs_a_look(text.as_bytes()) {
        if let Ok(message) = serde_json::from_str::<ClientJsonRpcMessage>(text) {
            return Ok(message);
        }
    }
    let reply =
        |error: ErrorData, id: Option<RequestId>| Box::new(ServerJsonRpcMessage::error(error, id));
    let mut value: Value = serde_json::from_str(text).map_err(|e| {
        reply(
            ErrorData::parse_error(format!("Parse error: {e}"), None),
            None,
        )
    })?;
    crate::mcp::compat::inbound(&mut value);
    let id = value
        .get("id")
        .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
    if value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(reply(
            ErrorData::invalid_request("Invalid Request: \"jsonrpc\" must be \"2.0\"", None),
            id,
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        reply(
            ErrorData::invalid_request(format!("Invalid Request: {e}"), None),
            id,
        )
    })
}

/// The request a `notifications/cancelled` names.
pub fn cancelled_request(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    let ClientJsonRpcMessage::Notification(n) = message else {
        return None;
    };
    let value = serde_json::to_value(&n.notification).ok()?;
    if value.get("method")?.as_str()? != "notifications/cancelled" {
        return None;
    }
    serde_json::from_value(value.get("params")?.get("requestId")?.clone()).ok()
}
