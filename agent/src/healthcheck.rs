//! `exai-agent healthcheck`: asks the agent's own `/health/live`, so a container
//! healthcheck needs nothing else in the image (no curl). Liveness only: a missing daemon
//! or a failing Redis makes the agent report degraded, not makes it dead.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The path asked: it answers 200 whenever the agent serves, whatever it monitors.
pub const LIVE_PATH: &str = "/health/live";

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{addr} accepted the connection but did not answer: {source}")]
    NoAnswer {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{addr} answered {first_line:?} to GET {LIVE_PATH}")]
    NotLive {
        addr: SocketAddr,
        first_line: String,
    },
}

/// The address to knock on for a server listening on `listen`: a wildcard address
/// (0.0.0.0 or ::, as in a container) is reached through loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET /health/live` on `addr`; `Ok` only for a 200. `timeout` bounds the connect and
/// each read and write.
pub fn probe_live(addr: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let no_answer = |source| ProbeError::NoAnswer { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(no_answer)?;
    stream.set_write_timeout(Some(timeout)).map_err(no_answer)?;
    // One write: a request written in pieces can meet a server that has already answered
    // and closed, and a failed write hides that answer.
    let request = format!(
        "GET {LIVE_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    let written = stream.write_all(request.as_bytes());
    // Whatever came back before the write failed is still the answer.
    let first_line = match (read_first_line(&mut stream), written) {
        (Ok(line), _) if !line.is_empty() => line,
        (_, Err(write)) => return Err(no_answer(write)),
        (read, Ok(())) => read.map_err(no_answer)?,
    };
    let status = first_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1));
    match status {
        Some("200") => Ok(()),
        _ => Err(ProbeError::NotLive { addr, first_line }),
    }
}

/// The status line, read a little at a time up to 256 bytes.
fn read_first_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    while line.len() < 256 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            line.truncate(end);
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A one-connection server that answers `reply`; the request line it got comes back
    /// through the join handle.
    fn answer_once(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = conn.read(&mut request).unwrap_or(0);
            let _ = conn.write_all(reply);
            let request = String::from_utf8_lossy(&request[..n]).to_string();
            request.lines().next().unwrap_or_default().to_string()
        });
        (addr, served)
    }

    #[test]
    fn a_200_on_the_live_path_is_alive() {
        let (addr, served) = answer_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        probe_live(addr, TIMEOUT).unwrap();
        assert_eq!(served.join().unwrap(), "GET /health/live HTTP/1.1");
    }

    #[test]
    fn any_other_answer_is_not() {
        let (addr, _) = answer_once(b"HTTP/1.1 404 Not Found\r\n\r\n");
        let err = probe_live(addr, TIMEOUT).unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        let (addr, _) = answer_once(b"SSH-2.0-OpenSSH\r\n");
        assert!(matches!(
            probe_live(addr, TIMEOUT),
            Err(ProbeError::NotLive { .. })
        ));
    }

    #[test]
    fn a_closed_port_fails_to_connect() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = probe_live(addr, TIMEOUT).unwrap_err();
        assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_through_loopback() {
        assert_eq!(
            target("0.0.0.0:8081".parse().unwrap()),
            "127.0.0.1:8081".parse().unwrap()
        );
        assert_eq!(
            target("[::]:8081".parse().unwrap()),
            "[::1]:8081".parse().unwrap()
        );
    }
}
