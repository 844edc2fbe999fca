//! The error behind another, kept as its `source` rather than flattened into its text,
//! so a caller can still walk the chain or ask what kind of failure it was. Cloneable
//! (errors here travel in results that are cloned) and compared by what they say.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The error itself, to downcast.
    pub fn get(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

/// `error` and its sources, `: `-joined, for a person to read; a source that says what
/// the error before it said is not repeated.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !last.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        last = said;
        source = s.source();
    }
    text
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_keeps_its_chain() {
        let io = std::io::Error::other("disk on fire");
        let cause = Cause::new(io);
        assert_eq!(cause.to_string(), "disk on fire");
        assert!(cause.get().downcast_ref::<std::io::Error>().is_some());
        assert_eq!(cause.clone(), cause);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the thread")]
    struct Context(#[source] std::io::Error);

    #[test]
    fn a_chain_reads_once() {
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(
            chain(&Context(io())),
            "cannot read the thread: disk on fire"
        );
        assert_eq!(chain(&Repeats(io())), "outer: disk on fire");
    }
}
