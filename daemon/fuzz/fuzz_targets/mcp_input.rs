//! What a client sends, as the daemon reads it: a WebSocket frame's JSON-RPC (and the
//! cancellation it may name), a POSTed body as the HTTP path reads it for a call it
//! answers in place — in a session, or stateless (2026-07-28: its `_meta`, and the
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers it is checked against,
//! from the input too) — the era a request's `_meta` gives it, a `chat` call's
//! arguments, the headers of an HTTP request
//! (token, Origin, Host), and any URL-looking text that may reach a log. None may panic
//! or hang. Run with `cargo fuzz run mcp_input` from `daemon/`.
#![no_main]

use exai_daemon::providers::Secret;
use exai_daemon::{redact, security, server, tools};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = server::check_frame(text) {
        let _ = server::cancelled_request(&message);
    }
    let mut post = http::HeaderMap::new();
    post.insert(http::header::HOST, http::HeaderValue::from_static("127.0.0.1"));
    post.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    post.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json, text/event-stream"),
    );
    let _ = server::answerable_in_place(&post, &[], data);
    if let Ok(version) = http::HeaderValue::from_str(text) {
        post.insert("mcp-protocol-version", version);
        let _ = server::answerable_in_place(&post, &[], data);
    }
    // A 2026 request's headers, the name taken from the body when it has one.
    let mut modern = post.clone();
    modern.insert(
        "mcp-protocol-version",
        http::HeaderValue::from_static("2026-07-28"),
    );
    modern.insert("mcp-method", http::HeaderValue::from_static("tools/call"));
    let body: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    let name = body
        .as_ref()
        .and_then(|b| b.pointer("/params/name"))
        .and_then(serde_json::Value::as_str)
        .and_then(|n| http::HeaderValue::from_str(n).ok());
    if let Some(name) = name {
        modern.insert("mcp-name", name);
    }
    if let Some(call) = server::answerable_in_place(&modern, &[], data) {
        assert_eq!(call.era, exai_daemon::mcp::era::Era::Stateless, "{text}");
    }
    if let Some(meta) = body
        .as_ref()
        .and_then(|b| b.pointer("/params/_meta"))
        .and_then(|m| serde_json::from_value(m.clone()).ok())
    {
        let _ = exai_daemon::mcp::era::Era::of(&meta);
    }
    if let Ok(serde_json::Value::Object(args)) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = tools::parse_chat(&args);
        if let Some(serde_json::Value::String(id)) = args.get("continuation_id") {
            if let Ok(Some(kept)) = tools::check_continuation_id(Some(id.clone())) {
                assert!(kept.len() <= tools::CONTINUATION_ID_MAX_BYTES);
            }
        }
    }
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        (http::header::AUTHORIZATION, text),
        (http::header::ORIGIN, text),
        (http::header::HOST, text),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let token = Secret::new("0123456789abcdef-fuzz");
    let _ = security::authorize(Some(&token), &headers, Some(text));
    let _ = security::check_origin(&headers);
    let _ = security::check_host(&headers, &["exai".to_string()]);
    let _ = redact::redact_url(text);
    let _ = redact::redact_urls_in(text);
});
