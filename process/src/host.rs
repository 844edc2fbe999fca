//! The one rule for `Host` (and an origin's authority) that every server of both
//! programs follows: the name is what precedes the port, IPv6 in brackets; a loopback
//! name is `localhost`, a name under `.localhost`, or a loopback address. A server bound
//! to loopback answers loopback names only, so a web page whose name was rebound to
//! 127.0.0.1 (DNS rebinding) is refused.

/// The name in `authority` (`host`, `host:port`, `[v6]`, `[v6]:port`); `None` when it is
/// not one: an empty name, a port that is not a number, an IPv6 address out of brackets.
pub fn name(authority: &str) -> Option<&str> {
    let name = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inside, after) = v6.split_once(']')?;
            port_ok(after.strip_prefix(':').unwrap_or(after)).then_some(inside)?
        }
        None => match authority.split_once(':') {
            Some((name, port)) => port_ok(port).then_some(name)?,
            None => authority,
        },
    };
    (!name.is_empty()).then_some(name)
}

/// Digits only, or nothing.
fn port_ok(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `authority` names this machine's loopback.
pub fn is_loopback(authority: &str) -> bool {
    name(authority).is_some_and(|name| {
        let lower = name.to_ascii_lowercase();
        lower == "localhost"
            || lower.ends_with(".localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// Whether `authority` is a loopback name or one of `extra` (names, any port; case
/// ignored).
pub fn is_loopback_or(authority: &str, extra: &[String]) -> bool {
    is_loopback(authority)
        || name(authority).is_some_and(|name| extra.iter().any(|h| h.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_ports() {
        assert_eq!(name("localhost"), Some("localhost"));
        assert_eq!(name("localhost:8079"), Some("localhost"));
        assert_eq!(name("[::1]:8079"), Some("::1"));
        assert_eq!(name("[::1]"), Some("::1"));
        assert_eq!(name("127.0.0.1:"), Some("127.0.0.1"));
        assert_eq!(name("::1"), None, "IPv6 out of brackets");
        assert_eq!(name("host:80x"), None);
        assert_eq!(name("[::1]x"), None);
        assert_eq!(name(":8079"), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn loopback_names() {
        for yes in [
            "localhost",
            "LOCALHOST:1",
            "app.localhost",
            "127.0.0.1:8000",
            "127.9.9.9",
            "[::1]:8081",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "evil.com",
            "localhost.evil.com",
            "10.0.0.1",
            "[::2]",
            "::1",
            "127.0.0.1:x",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
        let extra = ["mcp.example.com".to_string()];
        assert!(is_loopback_or("MCP.example.com:443", &extra));
        assert!(!is_loopback_or("example.com", &extra));
    }
}
