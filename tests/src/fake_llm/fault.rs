//! The ways the fake can fail a request, and the `500x2 retry-after=3` syntax that names them.

use std::str::FromStr;

/// `Retry-After` seconds on a 429 when the directive does not say.
pub const DEFAULT_RETRY_AFTER: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 with `Retry-After`.
    RateLimited,
    /// 500.
    Internal,
    /// 503.
    Unavailable,
    /// Read the request, never answer.
    Stall,
    /// Send headers and the first chunk, then nothing.
    StallStream,
    /// Send part of the body, then drop the connection.
    Cut,
    /// 200 with a body that does not parse.
    Malformed,
    /// 401 whose message quotes the presented key back, as some real APIs do: the
    /// daemon must not pass it on.
    EchoKey,
    /// 200, then a body that never ends: a streamed event whose `data:` line goes on
    /// forever, or a JSON body that does.
    EndlessEvent,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::RateLimited,
        FaultKind::Internal,
        FaultKind::Unavailable,
        FaultKind::Stall,
        FaultKind::StallStream,
        FaultKind::Cut,
        FaultKind::Malformed,
        FaultKind::EchoKey,
        FaultKind::EndlessEvent,
    ];

    /// The name used in directives, `/_control` and `/_stats`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::RateLimited => "429",
            FaultKind::Internal => "500",
            FaultKind::Unavailable => "503",
            FaultKind::Stall => "stall",
            FaultKind::StallStream => "stall-stream",
            FaultKind::Cut => "cut",
            FaultKind::Malformed => "malformed",
            FaultKind::EchoKey => "echo-key",
            FaultKind::EndlessEvent => "endless-event",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Position in [`FaultKind::ALL`], for per-kind counters.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// One failure to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only used by 429.
    pub retry_after: u32,
}

/// A fault as written by a test: `500`, `500x2`, `429 retry-after=2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    pub fault: Fault,
    /// How many requests fail before the fault clears; `None` fails every request.
    pub count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFaultError {
    #[error("empty fault: expected one of 429, 500, 503, stall, stall-stream, cut, malformed, endless-event")]
    Empty,
    #[error("unknown fault {0:?}: expected one of 429, 500, 503, stall, stall-stream, cut, malformed, endless-event, optionally with a count suffix like 500x2")]
    UnknownKind(String),
    #[error("bad fault option {0:?}: the only option is retry-after=<seconds>")]
    BadOption(String),
}

impl FromStr for FaultSpec {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_whitespace();
        let head = words.next().ok_or(ParseFaultError::Empty)?;
        let (kind, count) = split_count(head)?;
        let mut retry_after = DEFAULT_RETRY_AFTER;
        for word in words {
            retry_after = match word.split_once('=') {
                Some(("retry-after", n)) => n
                    .parse()
                    .map_err(|_| ParseFaultError::BadOption(word.to_owned()))?,
                _ => return Err(ParseFaultError::BadOption(word.to_owned())),
            };
        }
        Ok(FaultSpec {
            fault: Fault { kind, retry_after },
            count,
        })
    }
}

/// `500` or `500x2`.
fn split_count(head: &str) -> Result<(FaultKind, Option<u32>), ParseFaultError> {
    if let Some(kind) = FaultKind::from_name(head) {
        return Ok((kind, None));
    }
    if let Some((name, n)) = head.rsplit_once('x') {
        if let (Some(kind), Ok(n)) = (FaultKind::from_name(name), n.parse()) {
            return Ok((kind, Some(n)));
        }
    }
    Err(ParseFaultError::UnknownKind(head.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kind_count_and_retry_after() {
        let spec: FaultSpec = "429x3 retry-after=2".parse().unwrap();
        assert_eq!(spec.fault.kind, FaultKind::RateLimited);
        assert_eq!(spec.fault.retry_after, 2);
        assert_eq!(spec.count, Some(3));

        let spec: FaultSpec = "stall-stream".parse().unwrap();
        assert_eq!(spec.fault.kind, FaultKind::StallStream);
        assert_eq!(spec.fault.retry_after, DEFAULT_RETRY_AFTER);
        assert_eq!(spec.count, None);

        let spec: FaultSpec = "cutx1".parse().unwrap();
        assert_eq!((spec.fault.kind, spec.count), (FaultKind::Cut, Some(1)));
    }

    #[test]
    fn rejects_unknown_kinds_and_options() {
        assert_eq!(
            "404".parse::<FaultSpec>(),
            Err(ParseFaultError::UnknownKind("404".into()))
        );
        assert_eq!(
            "500xmany".parse::<FaultSpec>(),
            Err(ParseFaultError::UnknownKind("500xmany".into()))
        );
        assert_eq!(
            "429 wait=2".parse::<FaultSpec>(),
            Err(ParseFaultError::BadOption("wait=2".into()))
        );
        assert_eq!("  ".parse::<FaultSpec>(), Err(ParseFaultError::Empty));
    }

    #[test]
    fn names_round_trip() {
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
            assert_eq!(FaultKind::ALL[kind.index()], kind);
        }
    }
}
