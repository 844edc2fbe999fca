//! What one chat turn becomes: a spool record (JSON), and from it a row of
//! `conversations` and two rows of `messages` (see `compose/supabase/schema.sql`).
//!
//! Idempotency: the conversation's key is its `continuation_id`; each message's key is a
//! UUID drawn when the record is spooled and stored in it, so a record uploaded twice (a
//! retry whose answer was lost, a replay after a crash) updates the same rows.

use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One turn as spooled. Borrowed when written on the request path, owned when read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord<'a> {
    /// Record format, for a later change of layout.
    pub v: u8,
    #[serde(borrow)]
    pub conversation_id: Cow<'a, str>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub user_message_id: Cow<'a, str>,
    #[serde(borrow)]
    pub assistant_message_id: Cow<'a, str>,
    #[serde(borrow)]
    pub user: Cow<'a, str>,
    #[serde(borrow)]
    pub assistant: Cow<'a, str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(borrow)]
    pub correlation_id: Cow<'a, str>,
    pub at_unix_ms: u64,
}

pub const RECORD_VERSION: u8 = 1;

/// A row of `conversations`. `created_at` is left to the table's default, so an upsert
/// of a later turn does not move it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationRow<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub updated_at: String,
}

/// A row of `messages`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRow<'a> {
    pub id: &'a str,
    pub conversation_id: &'a str,
    pub role: &'static str,
    pub content: Cow<'a, str>,
    pub model: &'a str,
    /// Prompt tokens for the user's message, completion tokens for the answer.
    pub tokens: u64,
    pub correlation_id: &'a str,
    pub created_at: String,
}

/// RFC 3339 in UTC with milliseconds, as PostgREST reads a `timestamptz`.
pub fn timestamp(unix_ms: u64) -> String {
    DateTime::from_timestamp_millis(unix_ms.min(i64::MAX as u64) as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Postgres `text` cannot hold NUL; one in a model's answer would fail its whole batch
/// on every retry, so it is replaced.
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

impl<'a> TurnRecord<'a> {
    pub fn conversation(&'a self) -> ConversationRow<'a> {
        ConversationRow {
            id: &self.conversation_id,
            model: &self.model,
            updated_at: timestamp(self.at_unix_ms),
        }
    }

    /// The user's message, then the answer; the answer is stamped one millisecond later
    /// so that ordering by time keeps them in order.
    pub fn messages(&'a self) -> [MessageRow<'a>; 2] {
        let row = |id: &'a str, role, content: &'a str, tokens, at| MessageRow {
            id,
            conversation_id: &self.conversation_id,
            role,
            content: storable(content),
            model: &self.model,
            tokens,
            correlation_id: &self.correlation_id,
            created_at: timestamp(at),
        };
        [
            row(
                &self.user_message_id,
                "user",
                &self.user,
                self.input_tokens,
                self.at_unix_ms,
            ),
            row(
                &self.assistant_message_id,
                "assistant",
                &self.assistant,
                self.output_tokens,
                self.at_unix_ms + 1,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TurnRecord<'static> {
        TurnRecord {
            v: RECORD_VERSION,
            conversation_id: "c-1".into(),
            model: "glm-4.5-flash".into(),
            user_message_id: "u-1".into(),
            assistant_message_id: "a-1".into(),
            user: "hello".into(),
            assistant: "nul\0here".into(),
            input_tokens: 3,
            output_tokens: 5,
            correlation_id: "corr".into(),
            at_unix_ms: 1_732_480_000_123,
        }
    }

    #[test]
    fn rows_carry_stable_keys_and_postgres_timestamps() {
        let r = record();
        let json = serde_json::to_vec(&r).unwrap();
        let back: TurnRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            serde_json::to_value(back.conversation()).unwrap(),
            serde_json::json!({"id": "c-1", "model": "glm-4.5-flash", "updated_at": "2024-11-24T20:26:40.123Z"})
        );
        let [user, answer] = back.messages();
        assert_eq!((user.id, user.role, user.tokens), ("u-1", "user", 3));
        assert_eq!(answer.content, "nul\u{fffd}here");
        assert_eq!(answer.created_at, "2024-11-24T20:26:40.124Z");
    }
}
