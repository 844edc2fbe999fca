//! A scrape of a Prometheus text endpoint, read the way a test needs it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// `GET /metrics` on loopback; an unreachable endpoint is an empty scrape.
    pub fn get(port: u16) -> Self {
        let text = http_get(port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// Sum of the series called `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
        None => (series, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        value.push(if next == 'n' { '\n' } else { next });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        rest = after[end..].trim_start_matches(',');
    }
    out
}

/// A plain HTTP/1.1 GET on loopback: `(status, body)`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_as(port, path, &format!("127.0.0.1:{port}"))
}

/// A GET on loopback whose `Host` header says `host`, as a page from another site
/// (DNS rebinding) would send it.
pub fn http_get_as(port: u16, path: &str, host: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The single value of a Prometheus instant query to the server on loopback `port`, if the
/// query answers exactly one series.
pub fn prometheus_scalar(port: u16, query: &str) -> Option<f64> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http_get(port, &format!("/api/v1/query?query={encoded}"))?;
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    if status != 200 {
        return None;
    }
    match &body["data"]["result"].as_array()?[..] {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_sums_matching_series() {
        let s = Scrape::parse(
            "# HELP x y\nexai_x{instance=\"a\",reason=\"q\\\"uote\"} 3\nexai_x{instance=\"b\",reason=\"r\"} 4\nup 1\n",
        );
        assert_eq!(s.sum("exai_x", &[]), 7.0);
        assert_eq!(s.sum("exai_x", &[("instance", "a")]), 3.0);
        assert_eq!(s.sum("exai_x", &[("reason", "q\"uote")]), 3.0);
        assert_eq!(s.sum("up", &[]), 1.0);
    }
}
