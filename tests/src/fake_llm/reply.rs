//! The deterministic answer: `echo: <last user message>`, cut into word tokens, after
//! an optional stretch of reasoning (`step1 step2 …`, one token per step).

use super::wire::Usage;
use std::time::Duration;

/// The time one reasoning token takes: a thinking stretch of `d` is `d / THINK_STEP`
/// tokens (at least one), sent this far apart.
pub const THINK_STEP: Duration = Duration::from_millis(50);

pub struct Reply {
    pub text: String,
    /// Byte offsets where each token ends. Each token is one word with the whitespace
    /// before it, so the tokens concatenate back to `text` exactly.
    token_ends: Vec<usize>,
    /// Reasoning tokens sent before the answer.
    pub reasoning: Vec<String>,
}

impl Reply {
    pub fn echo(message: &str) -> Self {
        let text = format!("echo: {message}");
        let mut token_ends = word_ends(&text);
        if let Some(last) = token_ends.last_mut() {
            *last = text.len();
        }
        Self {
            text,
            token_ends,
            reasoning: Vec::new(),
        }
    }

    /// Reasons for `think` before answering (nothing when it is zero).
    pub fn thinking_for(mut self, think: Duration) -> Self {
        if think.is_zero() {
            return self;
        }
        let steps = (think.as_millis() / THINK_STEP.as_millis()).max(1) as usize;
        self.reasoning = (1..=steps)
            .map(|i| {
                if i == 1 {
                    format!("step{i}")
                } else {
                    format!(" step{i}")
                }
            })
            .collect();
        self
    }

    pub fn reasoning_text(&self) -> Option<String> {
        (!self.reasoning.is_empty()).then(|| self.reasoning.concat())
    }

    pub fn token_count(&self) -> usize {
        self.token_ends.len()
    }

    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.token_ends.iter().copied());
        starts
            .zip(self.token_ends.iter().copied())
            .map(|(start, end)| &self.text[start..end])
    }

    pub fn usage(&self, prompt_tokens: u64, cached_tokens: u64) -> Usage {
        let reasoning_tokens = self.reasoning.len() as u64;
        let completion_tokens = self.token_count() as u64 + reasoning_tokens;
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            reasoning_tokens,
            cached_tokens,
        }
    }
}

/// Whitespace-separated words in `text`: the fake's notion of a token.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn word_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                ends.push(i);
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    if in_word {
        ends.push(text.len());
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_their_spaces_and_rebuild_the_text() {
        let reply = Reply::echo("hello  wide\nworld ");
        let tokens: Vec<&str> = reply.tokens().collect();
        assert_eq!(tokens, ["echo:", " hello", "  wide", "\nworld "]);
        assert_eq!(tokens.concat(), reply.text);
    }

    #[test]
    fn usage_counts_reply_words_and_reasoning() {
        let reply = Reply::echo("one two");
        let usage = reply.usage(7, 2);
        assert_eq!(usage.completion_tokens, 3);
        assert_eq!(usage.total_tokens, 10);
        assert_eq!(count_words(" a\tb  c "), 3);
        let thinking = Reply::echo("one two").thinking_for(Duration::from_millis(175));
        assert_eq!(thinking.reasoning_text().unwrap(), "step1 step2 step3");
        let usage = thinking.usage(7, 2);
        assert_eq!(
            (
                usage.reasoning_tokens,
                usage.completion_tokens,
                usage.cached_tokens
            ),
            (3, 6, 2)
        );
    }

    #[test]
    fn an_empty_message_still_has_one_token() {
        let reply = Reply::echo("");
        assert_eq!(reply.tokens().collect::<Vec<_>>(), ["echo: "]);
    }
}
