//! The `healthcheck` subcommand of both programs: asks the program's own port for a
//! health path (the daemon's `/healthz` or `/readyz`, the agent's `/health/live`) and
//! exits 0 on a 200, so a container healthcheck needs nothing else in the image (no
//! curl).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Asks `path` of the `program` listening on `listen` and says what it answered: exit 0
/// on a 200, 1 otherwise.
pub fn healthcheck(program: &str, listen: SocketAddr, path: &str, timeout: Duration) -> ExitCode {
    let addr = target(listen);
    match http_status(addr, path, timeout) {
        Ok(200) => {
            println!("{program} on {addr} answers {path} with 200");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("{program} healthcheck: {addr} answers {path} with {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{program} healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

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
    #[error("{addr} answered something other than HTTP: {first_line:?}")]
    NotHttp {
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

/// Sends `GET path` to `addr` and returns the status code of the answer; `timeout` bounds
/// the connect and each read and write.
pub fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let no_answer = |source| ProbeError::NoAnswer { addr, source };
    stream.set_read_timeout(Some(timeout)).map_err(no_answer)?;
    stream.set_write_timeout(Some(timeout)).map_err(no_answer)?;
    // Loopback in Host: both programs answer loopback host names whatever else is allowed.
    // One write: a request written in pieces can meet a server that has already answered
    // and closed (a busy daemon's 503), and a failed write hides that answer.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    let written = stream.write_all(request.as_bytes());
    // Whatever came back before the write failed is still the answer.
    let first_line = match (read_first_line(&mut stream), written) {
        (Ok(line), _) if !line.is_empty() => line,
        (_, Err(write)) => return Err(no_answer(write)),
        (read, Ok(())) => read.map_err(no_answer)?,
    };
    first_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or(ProbeError::NotHttp { addr, first_line })
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

    /// A one-connection server that reads the request and answers `reply`.
    fn answer_once(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(reply);
        });
        addr
    }

    #[test]
    fn any_http_status_is_an_answer() {
        let addr = answer_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(http_status(addr, "/healthz", TIMEOUT).unwrap(), 404);
        let addr = answer_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(http_status(addr, "/healthz", TIMEOUT).unwrap(), 503);
    }

    #[test]
    fn something_else_on_the_port_is_not_the_daemon() {
        let addr = answer_once(b"-ERR unknown command\r\n");
        let err = http_status(addr, "/healthz", TIMEOUT).unwrap_err();
        assert!(matches!(err, ProbeError::NotHttp { .. }), "{err}");
    }

    #[test]
    fn a_closed_port_fails_to_connect() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = http_status(addr, "/healthz", TIMEOUT).unwrap_err();
        assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_through_loopback() {
        assert_eq!(
            target("0.0.0.0:8079".parse().unwrap()),
            "127.0.0.1:8079".parse().unwrap()
        );
        assert_eq!(
            target("[::]:8079".parse().unwrap()),
            "[::1]:8079".parse().unwrap()
        );
        assert_eq!(
            target("10.1.2.3:8079".parse().unwrap()),
            "10.1.2.3:8079".parse().unwrap()
        );
    }
}
