//! A request's correlation id: from `_meta.traceparent` (its W3C trace id),
//! `_meta.correlation_id`, or the HTTP headers `traceparent` / `X-Correlation-ID` /
//! `X-Request-ID`; otherwise a new one.

use exai_proto::CorrelationId;
use rmcp::model::RequestMetaObject;

/// The 32-hex-digit trace id of a W3C `traceparent` (`00-<trace>-<span>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

/// Usable as an id: printable ASCII without spaces, not empty.
fn clean(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())).then_some(value)
}

/// A random (v4) UUID from the thread-local generator: `Uuid::new_v4` asks the kernel
/// for randomness on every call, a syscall per request.
pub fn fast_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

pub fn from_request(meta: &RequestMetaObject, headers: Option<&http::HeaderMap>) -> CorrelationId {
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
    };
    let found = meta
        .get_traceparent()
        .and_then(trace_id)
        .or_else(|| {
            meta.get("correlation_id")
                .and_then(|v| v.as_str())
                .and_then(clean)
        })
        .or_else(|| header("traceparent").and_then(trace_id))
        .or_else(|| header("x-correlation-id").and_then(clean))
        .or_else(|| header("x-request-id").and_then(clean));
    match found {
        Some(id) => CorrelationId::new(id),
        None => {
            let mut buf = uuid::Uuid::encode_buffer();
            CorrelationId::new(fast_uuid().hyphenated().encode_lower(&mut buf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::MetaObject;
    use serde_json::json;

    fn meta(v: serde_json::Value) -> RequestMetaObject {
        let serde_json::Value::Object(map) = v else {
            panic!()
        };
        RequestMetaObject(MetaObject(map))
    }

    #[test]
    fn takes_the_first_source_present() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            from_request(
                &meta(json!({"traceparent": tp, "correlation_id": "x"})),
                None
            )
            .as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            from_request(&meta(json!({"correlation_id": "req-42"})), None).as_str(),
            "req-42"
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("x-request-id", "hdr-7".parse().unwrap());
        assert_eq!(
            from_request(&meta(json!({})), Some(&headers)).as_str(),
            "hdr-7"
        );
        let generated = from_request(&meta(json!({"traceparent": "garbage"})), None);
        assert_eq!(generated.as_str().len(), 36, "a UUID is generated");
    }
}
