//! Where a daemon's decoded events go besides its record: the dashboard's live figures
//! and its search. The listener hands every batch over on the connection's own task.

use exai_proto::Event;

pub trait EventSink: Send + Sync + 'static {
    /// A batch of events of the daemon labelled `daemon`, in sequence order. Must not
    /// block: it runs on the ingest path.
    fn events(&self, daemon: &str, events: &[Event]);
}

/// Nowhere: when the dashboard is off.
pub struct Discard;

impl EventSink for Discard {
    fn events(&self, _: &str, _: &[Event]) {}
}
