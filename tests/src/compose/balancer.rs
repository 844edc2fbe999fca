//! What HAProxy says of its servers, from its statistics page as CSV (`/stats;csv` on the
//! stats port of compose/haproxy.cfg): each server slot's state, address and counts.

use crate::http_mcp::KeepAlive;
use std::collections::BTreeMap;

/// One server slot of a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRow {
    /// The slot's name: `daemon1` … from `server-template`.
    pub name: String,
    /// `UP`, `DOWN`, `MAINT` (no address), or a transition such as `UP 1/2`.
    pub status: String,
    /// `ip:port` while the slot has an address.
    pub addr: Option<String>,
    /// Responses the server gave with a 2xx status (checks not included).
    pub responses_2xx: u64,
    /// The last check's outcome (`L7OK`, `L7STS`, `L4CON`, …) and HTTP code.
    pub check: String,
}

impl ServerRow {
    /// Taking requests, its checks passing.
    pub fn is_up(&self) -> bool {
        self.status == "UP"
    }

    /// Sent no new request: DOWN after its checks failed (`UP 1/2` is still in rotation,
    /// going down), or in maintenance with no address.
    pub fn is_out(&self) -> bool {
        self.status == "DOWN" || self.status.starts_with("MAINT")
    }

    /// The slot's address without the port.
    pub fn ip(&self) -> Option<&str> {
        self.addr
            .as_deref()
            .and_then(|a| a.rsplit_once(':'))
            .map(|(ip, _)| ip)
    }
}

#[derive(Debug, Clone, Default)]
pub struct BalancerStats {
    /// The servers of each backend, by backend name.
    pub backends: BTreeMap<String, Vec<ServerRow>>,
}

impl BalancerStats {
    /// `GET /stats;csv` on loopback `port`; `None` when HAProxy does not answer.
    pub fn get(port: u16) -> Option<Self> {
        page(port, "/stats;csv").map(|csv| Self::parse(&csv))
    }

    /// What HAProxy's Prometheus exporter says on `port`.
    pub fn exported(port: u16) -> Option<String> {
        page(port, "/metrics")
    }

    pub fn parse(csv: &str) -> Self {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, status, addr, ok, check, code) = (
            column("pxname"),
            column("svname"),
            column("status"),
            column("addr"),
            column("hrsp_2xx"),
            column("check_status"),
            column("check_code"),
        );

        let mut backends: BTreeMap<String, Vec<ServerRow>> = BTreeMap::new();
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            let field = |i: Option<usize>| i.and_then(|i| fields.get(i)).copied().unwrap_or("");
            let name = field(sv);
            if name.is_empty() || name == "FRONTEND" || name == "BACKEND" {
                continue;
            }
            let check = match field(code) {
                "" => field(check).to_string(),
                code => format!("{} {code}", field(check)),
            };
            backends
                .entry(field(px).to_string())
                .or_default()
                .push(ServerRow {
                    name: name.to_string(),
                    status: field(status).to_string(),
                    addr: Some(field(addr))
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                    responses_2xx: field(ok).parse().unwrap_or(0),
                    check,
                });
        }
        Self { backends }
    }

    /// The slots of `backend`, in the order HAProxy lists them.
    pub fn servers(&self, backend: &str) -> &[ServerRow] {
        self.backends.get(backend).map_or(&[], Vec::as_slice)
    }

    /// The slot of `backend` whose address is `ip`.
    pub fn server_at(&self, backend: &str, ip: &str) -> Option<&ServerRow> {
        self.servers(backend).iter().find(|s| s.ip() == Some(ip))
    }

    /// The slot of `backend` called `name`.
    pub fn server(&self, backend: &str, name: &str) -> Option<&ServerRow> {
        self.servers(backend).iter().find(|s| s.name == name)
    }
}

/// A page of the stats port, whole (HAProxy sends its pages chunked).
fn page(port: u16, path: &str) -> Option<String> {
    let answer = KeepAlive::new(port).get(path).ok()?;
    (answer.status == 200).then_some(answer.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_rows_are_read_by_column_name_and_fronts_and_backs_are_left_out() {
        let csv = "# pxname,svname,qcur,eresp,status,hrsp_2xx,check_status,check_code,addr,\n\
                   mcp,FRONTEND,,,OPEN,10,,,,\n\
                   daemons,daemon1,0,0,UP,7,L7OK,200,172.18.0.5:8079,\n\
                   daemons,daemon2,0,4,DOWN,3,L7STS,503,172.18.0.6:8079,\n\
                   daemons,daemon3,0,0,MAINT (resolution),0,,,,\n\
                   daemons,BACKEND,0,4,UP,10,,,,\n";
        let stats = BalancerStats::parse(csv);
        let servers = stats.servers("daemons");
        assert_eq!(servers.len(), 3);
        assert!(servers[0].is_up());
        assert_eq!(servers[0].ip(), Some("172.18.0.5"));
        assert_eq!(servers[0].responses_2xx, 7);
        let down = stats.server_at("daemons", "172.18.0.6").unwrap();
        assert_eq!(
            (down.name.as_str(), down.check.as_str()),
            ("daemon2", "L7STS 503")
        );
        assert!(!down.is_up() && down.is_out());
        let empty = stats.server("daemons", "daemon3").unwrap();
        assert_eq!(empty.addr, None);
        assert!(empty.is_out());
        assert!(stats.servers("mcp").is_empty());
    }
}
