//! Directives a test writes into the last user message: `[fault:500x2]`, `[latency:250]`.

use super::fault::{FaultSpec, ParseFaultError};
use std::time::Duration;

/// The last user message split into what the model sees and what the test asked for.
#[derive(Debug, Default, PartialEq)]
pub struct Directives {
    /// The message with directives removed and trimmed: the echoed text, and the key
    /// that transient faults count against.
    pub text: String,
    pub fault: Option<FaultSpec>,
    /// Added to the server's configured latency.
    pub latency: Duration,
    /// Added to the server's configured thinking time.
    pub think: Duration,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DirectiveError {
    #[error(transparent)]
    Fault(#[from] ParseFaultError),
    #[error("bad latency directive [{0}]: expected [latency:<milliseconds>]")]
    Latency(String),
    #[error("bad think directive [{0}]: expected [think:<milliseconds>]")]
    Think(String),
    #[error("more than one fault directive in the message")]
    DuplicateFault,
}

/// Bracketed text that is not a `fault:`, `latency:` or `think:` directive stays in the
/// message.
pub fn parse(message: &str) -> Result<Directives, DirectiveError> {
    let mut out = Directives::default();
    let mut text = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let inner = &after[..close];
        if let Some(spec) = inner.strip_prefix("fault:") {
            if out.fault.is_some() {
                return Err(DirectiveError::DuplicateFault);
            }
            out.fault = Some(spec.parse()?);
        } else if let Some(ms) = inner.strip_prefix("latency:") {
            let ms: u64 = ms
                .trim()
                .parse()
                .map_err(|_| DirectiveError::Latency(inner.to_owned()))?;
            out.latency += Duration::from_millis(ms);
        } else if let Some(ms) = inner.strip_prefix("think:") {
            let ms: u64 = ms
                .trim()
                .parse()
                .map_err(|_| DirectiveError::Think(inner.to_owned()))?;
            out.think += Duration::from_millis(ms);
        } else {
            text.push_str(&rest[..=open]);
            rest = after;
            continue;
        }
        text.push_str(&rest[..open]);
        rest = &after[close + 1..];
        // "a [fault:cut] b" reads "a b", not "a  b".
        if text.ends_with(char::is_whitespace) {
            let mut chars = rest.chars();
            if chars.next().is_some_and(char::is_whitespace) {
                rest = chars.as_str();
            }
        }
    }
    text.push_str(rest);
    out.text = text.trim().to_owned();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_llm::fault::FaultKind;

    #[test]
    fn strips_directives_from_the_text() {
        let d = parse("hello [fault:500x2] world [latency:250] [think:1500]").unwrap();
        assert_eq!(d.text, "hello world");
        assert_eq!(d.think, Duration::from_millis(1500));
        let spec = d.fault.unwrap();
        assert_eq!(
            (spec.fault.kind, spec.count),
            (FaultKind::Internal, Some(2))
        );
        assert_eq!(d.latency, Duration::from_millis(250));
    }

    #[test]
    fn a_message_without_directives_is_only_trimmed() {
        let d = parse("  plain [not a directive] text [ ").unwrap();
        assert_eq!(d.text, "plain [not a directive] text [");
        assert_eq!(d.fault, None);
        assert_eq!(d.latency, Duration::ZERO);
    }

    #[test]
    fn retry_after_is_read_inside_the_brackets() {
        let d = parse("[fault:429 retry-after=2] go").unwrap();
        assert_eq!(d.text, "go");
        assert_eq!(d.fault.unwrap().fault.retry_after, 2);
    }

    #[test]
    fn bad_directives_are_errors() {
        assert!(matches!(
            parse("[fault:418]"),
            Err(DirectiveError::Fault(_))
        ));
        assert!(matches!(
            parse("[latency:soon]"),
            Err(DirectiveError::Latency(_))
        ));
        assert_eq!(
            parse("[fault:500] [fault:cut]"),
            Err(DirectiveError::DuplicateFault)
        );
    }
}
