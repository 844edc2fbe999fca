//! A real HAProxy (Debian's package) in front of daemons: round-robin per request, no
//! affinity, as an operator's balancer would spread 2026-07-28 clients.

use crate::process::Proc;
use crate::{free_port, wait_for, PATIENCE};
use std::path::Path;

pub struct Balancer {
    pub proc: Proc,
    /// Where clients connect.
    pub port: u16,
}

impl Balancer {
    /// HAProxy on a free loopback port, spreading requests over `backends` in turn.
    /// `option http-server-close` makes each request its own choice even when the
    /// client keeps its connection open.
    pub fn round_robin(dir: &Path, backends: &[u16]) -> Self {
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server daemon{i} 127.0.0.1:{p} check inter 1s\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 1024\n\
             defaults\n    mode http\n    option http-server-close\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n\
             frontend mcp\n    bind 127.0.0.1:{port}\n    default_backend daemons\n\
             backend daemons\n    balance roundrobin\n{servers}"
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).expect("write haproxy.cfg");
        let mut command = std::process::Command::new("haproxy");
        command.arg("-db").arg("-f").arg(&file);
        let proc = Proc::spawn_command("haproxy", command);
        wait_for("HAProxy to listen", PATIENCE, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}
