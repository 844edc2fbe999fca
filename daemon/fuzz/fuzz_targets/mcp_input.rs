//! What a client sends, as the daemon reads it: a WebSocket frame's JSON-RPC (and the
//! cancellation it may name), a POSTed body as the HTTP path reads it for a call it
//! answers in place, a `chat` call's arguments, the headers of an HTTP request
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
