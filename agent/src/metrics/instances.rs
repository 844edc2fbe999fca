//! Which daemons the per-instance series belong to. Every daemon start is a new
//! instance id, so without care those series would grow forever: the label set is
//! capped (ids past the cap share the label `other`) and the series of a daemon that
//! went away are removed after a configurable time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The label shared by instances past the cap.
pub const OTHER: &str = "other";

pub struct Instances {
    /// Most instance ids kept as label values at once.
    max: usize,
    /// How long the series of a disconnected daemon stay.
    ttl: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    label: String,
    /// `None` while connected; when it went away, otherwise.
    gone_since: Option<Instant>,
}

/// A daemon whose series were removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub instance_id: String,
    /// Its label value; `other` when it was past the cap (those series are shared and stay).
    pub label: String,
}

impl Instances {
    pub fn new(max: usize, ttl: Duration) -> Self {
        Self {
            max: max.max(1),
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Marks `id` connected and gives its label value.
    pub fn connected(&self, id: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let labelled = seen.values().filter(|s| s.label != OTHER).count();
        let max = self.max;
        let entry = seen.entry(id.to_string()).or_insert_with(|| Seen {
            label: if labelled < max {
                id.to_string()
            } else {
                OTHER.into()
            },
            gone_since: None,
        });
        entry.gone_since = None;
        entry.label.clone()
    }

    pub fn disconnected(&self, id: &str) {
        if let Some(s) = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            s.gone_since = Some(Instant::now());
        }
    }

    /// The label value of `id`, `other` when unknown.
    pub fn label(&self, id: &str) -> String {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map_or_else(|| OTHER.into(), |s| s.label.clone())
    }

    /// Forgets the daemons gone for longer than the time to live, and says which. `clean`
    /// runs for each while the set is locked, so a daemon reconnecting meanwhile waits
    /// and its new series are not the ones removed.
    pub fn expire(&self, now: Instant, mut clean: impl FnMut(&Expired)) -> Vec<Expired> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut expired = Vec::new();
        seen.retain(|id, s| {
            let keep = s
                .gone_since
                .is_none_or(|since| now.saturating_duration_since(since) < self.ttl);
            if !keep {
                expired.push(Expired {
                    instance_id: id.clone(),
                    label: s.label.clone(),
                });
            }
            keep
        });
        expired.iter().for_each(&mut clean);
        expired
    }

    /// How many daemons are connected now.
    pub fn connected_count(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.gone_since.is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_labels_and_expires_the_departed() {
        let instances = Instances::new(2, Duration::from_secs(60));
        assert_eq!(instances.connected("a"), "a");
        assert_eq!(instances.connected("b"), "b");
        assert_eq!(instances.connected("c"), OTHER, "past the cap");
        assert_eq!(instances.label("b"), "b");
        assert_eq!(instances.connected_count(), 3);

        instances.disconnected("a");
        let now = Instant::now();
        assert!(
            instances.expire(now, |_| ()).is_empty(),
            "not gone long enough"
        );
        let later = now + Duration::from_secs(61);
        assert_eq!(
            instances.expire(later, |_| ()),
            vec![Expired {
                instance_id: "a".into(),
                label: "a".into()
            }]
        );
        assert_eq!(instances.label("a"), OTHER);
        assert_eq!(instances.connected("d"), "d", "a's place is free again");
    }
}
