//! Access control: whether a request may be served at all, decided in one place for
//! both transports before it can cost anything (the places it then takes are
//! `admission`'s): the `Host` (Streamable HTTP: a page on another site that
//! rebinds its name to 127.0.0.1 sends its own), the `Origin` (browsers' cross-site
//! requests and WebSocket upgrades), the token. A refused request is counted by the
//! caller with the reason returned here.

use crate::config::ServerConfig;
use crate::security::{self, Refusal};
use exai_proto::{RefusalReason, Transport};

/// Why a request is refused, and what its client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub reason: RefusalReason,
    pub body: &'static str,
}

/// Checks a request's `Host`, `Origin` and token. WebSocket upgrades are not held to a
/// loopback `Host`: a cross-site page cannot open one without its `Origin`, which is
/// checked, and clients in other containers name the daemon by its service.
pub fn admit(
    config: &ServerConfig,
    headers: &hyper::HeaderMap,
    query: Option<&str>,
    transport: Transport,
) -> Result<(), Refused> {
    let host = match transport {
        Transport::Http => security::check_host(headers, &config.allowed_hosts),
        _ => Ok(()),
    };
    host.and_then(|()| security::check_origin(headers))
        .and_then(|()| security::authorize(config.token.as_ref(), headers, query))
        .map_err(|refusal| refused(refusal, transport))
}

fn refused(refusal: Refusal, transport: Transport) -> Refused {
    let (status, reason, body) = match (refusal, transport) {
        (Refusal::Unauthorized, Transport::Http) => (
            401,
            RefusalReason::Unauthorized,
            "unauthorized: send Authorization: Bearer <EXAI_WS_TOKEN>\n",
        ),
        (Refusal::Unauthorized, _) => (
            401,
            RefusalReason::Unauthorized,
            "unauthorized: send Authorization: Bearer <EXAI_WS_TOKEN> or ?token=\n",
        ),
        (Refusal::ForeignOrigin, _) => (
            403,
            RefusalReason::ForbiddenOrigin,
            "forbidden: origin not allowed\n",
        ),
        (Refusal::ForeignHost, _) => (
            403,
            RefusalReason::ForbiddenOrigin,
            "forbidden: host not allowed\n",
        ),
    };
    Refused {
        status,
        reason,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderValue, AUTHORIZATION, HOST, ORIGIN};

    fn config(token: Option<&'static str>) -> ServerConfig {
        let env = [("HOME", "/home/u"), ("EXAI_WS_TOKEN", token.unwrap_or(""))];
        crate::config::DaemonConfig::load(&env, &Default::default())
            .expect("a valid configuration")
            .server
    }

    fn headers(pairs: &[(hyper::header::HeaderName, &'static str)]) -> hyper::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn both_transports_check_origin_and_token_and_http_the_host() {
        let open = config(None);
        let local = headers(&[(HOST, "127.0.0.1:8079")]);
        assert_eq!(admit(&open, &local, None, Transport::Http), Ok(()));
        let foreign_host = headers(&[(HOST, "evil.example")]);
        assert_eq!(
            admit(&open, &foreign_host, None, Transport::Http)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            admit(&open, &foreign_host, None, Transport::WebSocket),
            Ok(())
        );
        let foreign_origin = headers(&[(HOST, "127.0.0.1"), (ORIGIN, "https://evil.example")]);
        for transport in [Transport::Http, Transport::WebSocket] {
            let refused = admit(&open, &foreign_origin, None, transport).unwrap_err();
            assert_eq!(
                (refused.status, refused.reason),
                (403, RefusalReason::ForbiddenOrigin)
            );
        }

        let guarded = config(Some("a-token-of-sixteen-chars"));
        for transport in [Transport::Http, Transport::WebSocket] {
            let refused = admit(&guarded, &local, None, transport).unwrap_err();
            assert_eq!(
                (refused.status, refused.reason),
                (401, RefusalReason::Unauthorized)
            );
        }
        let bearer = headers(&[
            (HOST, "127.0.0.1"),
            (AUTHORIZATION, "Bearer a-token-of-sixteen-chars"),
        ]);
        assert_eq!(admit(&guarded, &bearer, None, Transport::Http), Ok(()));
        assert_eq!(
            admit(
                &guarded,
                &local,
                Some("token=a-token-of-sixteen-chars"),
                Transport::WebSocket
            ),
            Ok(())
        );
    }
}
