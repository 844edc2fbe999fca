//! Credentials out of URLs before they are logged, returned by `status` or put in an
//! error: the userinfo (`redis://:pw@host`, `https://user:pw@host`) and the query keys
//! that carry secrets (`unix:///run/redis.sock?pass=…`, `?password=`, `?token=`, …).

const REDACTED: &str = "[redacted]";

/// Query keys whose values are secrets, compared without case.
const SECRET_KEYS: &[&str] = &[
    "pass",
    "password",
    "passwd",
    "pwd",
    "token",
    "access_token",
    "key",
    "apikey",
    "api_key",
    "secret",
    "auth",
];

/// `url` with its credentials replaced by `[redacted]`: the whole userinfo, and the value
/// of every secret query key. The rest is kept, so the line still says where it points.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_query(url);
    };
    let rest_at = scheme_end + 3;
    let rest = &url[rest_at..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..rest_at]);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&redact_query(&rest[authority_end..]));
    out
}

/// Every URL found in `text` (a `scheme://` and what follows up to a space, quote or
/// closing bracket), redacted: for error messages that quote the URL they failed on.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let start = rest[..found]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[found..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | '<'))
            .map_or(rest.len(), |i| found + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `path?query#fragment` with the values of secret query keys redacted.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_string();
    };
    let (path, after) = tail.split_at(q + 1);
    let (query, fragment) = match after.find('#') {
        Some(h) => after.split_at(h),
        None => (after, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}{fragment}", pairs.join("&"))
}

fn is_secret_key(key: &str) -> bool {
    let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
    SECRET_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_form_goes() {
        let cases = [
            ("redis://:pw@h:6379/0", "redis://[redacted]@h:6379/0"),
            ("redis://user:pw@h:6379", "redis://[redacted]@h:6379"),
            ("redis://h:6379", "redis://h:6379"),
            (
                "unix:///run/redis.sock?db=2&pass=s3cret",
                "unix:///run/redis.sock?db=2&pass=[redacted]",
            ),
            (
                "redis+unix:///run/r.sock?user=u&PASSWORD=s3cret#x",
                "redis+unix:///run/r.sock?user=u&PASSWORD=[redacted]#x",
            ),
            (
                "https://u:p@api.example/v1?%70ass=s&model=m",
                "https://[redacted]@api.example/v1?%70ass=[redacted]&model=m",
            ),
            ("http://host/a@b", "http://host/a@b"),
            ("https://api.moonshot.ai/v1", "https://api.moonshot.ai/v1"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn urls_inside_messages_are_redacted_and_the_rest_kept() {
        let text = "error sending request for url (http://k:s3cret@127.0.0.1:9/v1/chat/completions): connection refused; see \"https://x/?token=t0k\"";
        assert_eq!(
            redact_urls_in(text),
            "error sending request for url (http://[redacted]@127.0.0.1:9/v1/chat/completions): connection refused; see \"https://x/?token=[redacted]\""
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
        assert_eq!(
            redact_urls_in("é://u:p@h/ and ü·http://u:p@h"),
            "é://[redacted]@h/ and ü·http://[redacted]@h"
        );
        assert_eq!(redact_urls_in("://"), "://");
    }
}
