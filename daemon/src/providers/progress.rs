//! What a model call is doing right now, for progress notifications and task status:
//! waiting for the first token, thinking, or answering. The stream reader stores a few
//! relaxed atomics per chunk; readers poll them every couple of seconds.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sent; nothing streamed yet (or the call does not stream).
    Waiting,
    /// Reasoning tokens are arriving.
    Thinking,
    /// Answer tokens are arriving.
    Answering,
}

impl Phase {
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting for the model",
            Phase::Thinking => "thinking",
            Phase::Answering => "answering",
        }
    }
}

#[derive(Debug, Default)]
pub struct CallProgress {
    phase: AtomicU8,
    reasoning_chars: AtomicU64,
    answer_chars: AtomicU64,
}

/// A point-in-time view of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressView {
    pub phase: Phase,
    pub reasoning_chars: u64,
    pub answer_chars: u64,
}

impl CallProgress {
    pub fn thinking(&self, chars: usize) {
        self.phase.store(1, Relaxed);
        self.reasoning_chars.fetch_add(chars as u64, Relaxed);
    }

    pub fn answering(&self, chars: usize) {
        self.phase.store(2, Relaxed);
        self.answer_chars.fetch_add(chars as u64, Relaxed);
    }

    /// A retry starts over.
    pub fn restart(&self) {
        self.phase.store(0, Relaxed);
        self.reasoning_chars.store(0, Relaxed);
        self.answer_chars.store(0, Relaxed);
    }

    pub fn view(&self) -> ProgressView {
        ProgressView {
            phase: match self.phase.load(Relaxed) {
                1 => Phase::Thinking,
                2 => Phase::Answering,
                _ => Phase::Waiting,
            },
            reasoning_chars: self.reasoning_chars.load(Relaxed),
            answer_chars: self.answer_chars.load(Relaxed),
        }
    }
}

impl ProgressView {
    /// One line for a person: `thinking: 1,204 characters of reasoning so far`.
    pub fn describe(&self, elapsed_s: u64) -> String {
        match self.phase {
            Phase::Waiting => format!("waiting for the model: {elapsed_s} s elapsed"),
            Phase::Thinking => format!(
                "thinking: {elapsed_s} s elapsed, {} characters of reasoning so far",
                self.reasoning_chars
            ),
            Phase::Answering => format!(
                "answering: {elapsed_s} s elapsed, {} characters of answer so far",
                self.answer_chars
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_follows_the_stream() {
        let p = CallProgress::default();
        assert_eq!(p.view().describe(0), "waiting for the model: 0 s elapsed");
        p.thinking(10);
        p.thinking(5);
        assert_eq!(
            p.view().describe(3),
            "thinking: 3 s elapsed, 15 characters of reasoning so far"
        );
        p.answering(4);
        assert_eq!(p.view().phase, Phase::Answering);
        p.restart();
        assert_eq!(p.view().phase, Phase::Waiting);
    }
}
