//! The sampling decision: a per-thread countdown per event class. No atomics, no shared
//! cache line, no allocation — a thread-local decrement. Each thread keeps 1 in N of
//! the events it sees, so the rate holds overall and each kept event carries weight N.

use exai_proto::SampleClass;
use std::cell::Cell;

thread_local! {
    static COUNTDOWN: [Cell<u32>; SampleClass::COUNT] =
        const { [const { Cell::new(0) }; SampleClass::COUNT] };
}

/// `Some(weight)` when this occurrence is to be recorded, with the weight it carries.
#[inline]
pub(crate) fn sample(class: SampleClass, one_in: u32) -> Option<u32> {
    match one_in {
        0 => None,
        1 => Some(1),
        _ => COUNTDOWN.with(|countdown| {
            let left = &countdown[class.index()];
            match left.get() {
                0 => {
                    left.set(one_in - 1);
                    Some(one_in)
                }
                n => {
                    left.set(n - 1);
                    None
                }
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_in_n_with_weight_n() {
        let kept: Vec<u32> = (0..100)
            .filter_map(|_| sample(SampleClass::StorageReads, 5))
            .collect();
        assert_eq!(kept.len(), 20);
        assert!(kept.iter().all(|w| *w == 5));
        assert_eq!(
            (0..10)
                .filter_map(|_| sample(SampleClass::Supabase, 1))
                .count(),
            10
        );
        assert_eq!(
            (0..10)
                .filter_map(|_| sample(SampleClass::Connections, 0))
                .count(),
            0
        );
    }
}
