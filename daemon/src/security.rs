//! Who may talk to the daemon: the bearer token, and the Origin and Host checks that
//! keep a web page in a browser from driving a loopback server (DNS rebinding).

use crate::providers::Secret;
use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// Why a connection or request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing or wrong token: send Authorization: Bearer <EXAI_WS_TOKEN> (or ?token=)")]
    Unauthorized,
    #[error("origin not allowed: only loopback origins may connect")]
    ForeignOrigin,
    #[error("host not allowed: only loopback hosts are served")]
    ForeignHost,
}

/// Checks the token from `Authorization: Bearer …`, or from `?token=` for clients that
/// cannot set headers. The comparison takes the same time whatever the input.
pub fn authorize(
    expected: Option<&Secret>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), Refusal> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let from_header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let from_query = || {
        let raw = query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))?;
        Some(percent_encoding::percent_decode_str(raw).decode_utf8_lossy())
    };
    let given: std::borrow::Cow<'_, str> = match from_header {
        Some(header) => header.into(),
        None => from_query().unwrap_or_default(),
    };
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized)
    }
}

/// A WebSocket or HTTP request may carry no Origin (non-browser clients); if it does,
/// the origin must be loopback.
pub fn check_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get(ORIGIN).map(|v| v.to_str()) {
        None => Ok(()),
        Some(Ok("null")) | Some(Err(_)) => Err(Refusal::ForeignOrigin),
        Some(Ok(origin)) => {
            let host = origin
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or(origin);
            let host = host.split('/').next().unwrap_or("");
            if exai_process::host::is_loopback(host) {
                Ok(())
            } else {
                Err(Refusal::ForeignOrigin)
            }
        }
    }
}

/// The Host header must name a loopback host (any port) or one of `allowed_hosts`.
pub fn check_host(headers: &HeaderMap, allowed_hosts: &[String]) -> Result<(), Refusal> {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return Err(Refusal::ForeignHost);
    };
    if exai_process::host::is_loopback_or(host, allowed_hosts) {
        Ok(())
    } else {
        Err(Refusal::ForeignHost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn token_from_header_or_query() {
        let secret = Secret::new("0123456789abcdef-token");
        let ok = headers(&[(AUTHORIZATION, "Bearer 0123456789abcdef-token")]);
        assert_eq!(authorize(Some(&secret), &ok, None), Ok(()));
        assert_eq!(
            authorize(
                Some(&secret),
                &HeaderMap::new(),
                Some("a=1&token=0123456789abcdef-token")
            ),
            Ok(())
        );
        assert_eq!(
            authorize(
                Some(&secret),
                &HeaderMap::new(),
                Some("token=0123456789abcdef%2Dtoken")
            ),
            Ok(())
        );
        assert_eq!(
            authorize(Some(&secret), &HeaderMap::new(), None),
            Err(Refusal::Unauthorized)
        );
        let wrong = headers(&[(AUTHORIZATION, "Bearer 0123456789abcdef-tokeX")]);
        assert_eq!(
            authorize(Some(&secret), &wrong, None),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(authorize(None, &HeaderMap::new(), None), Ok(()));
    }

    #[test]
    fn only_loopback_origins_and_hosts() {
        assert_eq!(check_origin(&HeaderMap::new()), Ok(()));
        for good in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8079",
        ] {
            assert_eq!(check_origin(&headers(&[(ORIGIN, good)])), Ok(()), "{good}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "null",
            "http://10.0.0.1:8079",
        ] {
            assert_eq!(
                check_origin(&headers(&[(ORIGIN, bad)])),
                Err(Refusal::ForeignOrigin),
                "{bad}"
            );
        }
        assert_eq!(
            check_host(&headers(&[(HOST, "127.0.0.1:8079")]), &[]),
            Ok(())
        );
        assert_eq!(check_host(&headers(&[(HOST, "localhost")]), &[]), Ok(()));
        assert_eq!(
            check_host(&headers(&[(HOST, "attacker.example:8079")]), &[]),
            Err(Refusal::ForeignHost)
        );
        assert_eq!(
            check_host(&headers(&[(HOST, "exai:8079")]), &["exai".into()]),
            Ok(())
        );
        assert_eq!(
            check_host(&HeaderMap::new(), &[]),
            Err(Refusal::ForeignHost)
        );
    }
}
