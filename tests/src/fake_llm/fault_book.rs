//! Which requests fail: the fault armed through `/_control`, and how many times each
//! transient directive (`[fault:500x2]`) has already fired.

use super::fault::{Fault, FaultSpec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Distinct messages remembered for transient faults; past this the memory is cleared
/// rather than grown, so a long load run cannot exhaust it.
const TRANSIENT_CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct FaultBook {
    /// Set through `/_control`; applies to any request until its count runs out.
    global: Mutex<Option<FaultSpec>>,
    /// Lets the common case, nothing armed, skip the lock.
    global_armed: AtomicBool,
    /// Failures already served per message text (directives stripped).
    transient: Mutex<HashMap<String, u32>>,
}

impl FaultBook {
    /// Arms `spec` for the next requests, or with `None` clears every fault, including
    /// the memory of transient directives.
    pub fn arm(&self, spec: Option<FaultSpec>) {
        let mut global = self.global.lock().unwrap();
        *global = spec.filter(|s| s.count != Some(0));
        self.global_armed.store(global.is_some(), Ordering::Release);
        drop(global);
        if spec.is_none() {
            self.transient.lock().unwrap().clear();
        }
    }

    /// The armed fault, as it stands now.
    pub fn armed(&self) -> Option<FaultSpec> {
        *self.global.lock().unwrap()
    }

    /// Takes one use of the armed fault, if any.
    pub fn take_global(&self) -> Option<Fault> {
        if !self.global_armed.load(Ordering::Acquire) {
            return None;
        }
        let mut global = self.global.lock().unwrap();
        let spec = (*global)?;
        match spec.count {
            None => {}
            Some(n) if n <= 1 => {
                *global = None;
                self.global_armed.store(false, Ordering::Release);
            }
            Some(n) => {
                *global = Some(FaultSpec {
                    count: Some(n - 1),
                    ..spec
                });
            }
        }
        Some(spec.fault)
    }

    /// The fault a directive asks for, unless its count for this message is used up.
    pub fn take_directive(&self, message: &str, spec: FaultSpec) -> Option<Fault> {
        let Some(limit) = spec.count else {
            return Some(spec.fault);
        };
        let mut transient = self.transient.lock().unwrap();
        if transient.len() >= TRANSIENT_CAPACITY && !transient.contains_key(message) {
            transient.clear();
        }
        let served = transient.entry(message.to_owned()).or_insert(0);
        if *served >= limit {
            return None;
        }
        *served += 1;
        Some(spec.fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> FaultSpec {
        s.parse().unwrap()
    }

    #[test]
    fn a_counted_global_fault_runs_out() {
        let book = FaultBook::default();
        book.arm(Some(spec("500x2")));
        assert!(book.take_global().is_some());
        assert!(book.take_global().is_some());
        assert_eq!(book.take_global(), None);
        assert_eq!(book.armed(), None);
    }

    #[test]
    fn an_uncounted_global_fault_lasts_until_reset() {
        let book = FaultBook::default();
        book.arm(Some(spec("503")));
        for _ in 0..5 {
            assert!(book.take_global().is_some());
        }
        book.arm(None);
        assert_eq!(book.take_global(), None);
    }

    #[test]
    fn a_transient_directive_fires_per_message() {
        let book = FaultBook::default();
        let s = spec("500x2");
        assert!(book.take_directive("a", s).is_some());
        assert!(book.take_directive("b", s).is_some());
        assert!(book.take_directive("a", s).is_some());
        assert_eq!(book.take_directive("a", s), None);
        assert_eq!(book.take_directive("a", s), None);
        assert!(book.take_directive("b", s).is_some());
        book.arm(None);
        assert!(book.take_directive("a", s).is_some());
    }
}
