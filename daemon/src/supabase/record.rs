//! What one chat turn becomes: a row of `conversations` and two rows of `messages` (see
//! `compose/supabase/schema.sql`), serialized once, on the request path, into the spool
//! record that the uploader sends as it is.
//!
//! A record's payload is four lines (JSON never holds a raw newline, so they split
//! safely):
//!
//! ```text
//! 1                                   record format
//! "<continuation_id>"                 the conversation's key, as a JSON string
//! {"id":…,"model":…,"updated_at":…}   its `conversations` row
//! {"id":…,…,"role":"user",…},{"id":…,…,"role":"assistant",…}   its two `messages` rows
//! ```
//!
//! The uploader only cuts and joins these bytes into JSON arrays: no parsing, no
//! re-encoding, so uploading costs little CPU.
//!
//! Idempotency: the conversation's key is its `continuation_id`; each message's key is a
//! UUID drawn when the record is spooled and stored in it, so a record uploaded twice (a
//! retry whose answer was lost, a replay after a crash) updates the same rows.

use chrono::{DateTime, Datelike, Timelike};
use serde::Serialize;
use std::borrow::Cow;

/// The first line of every record in this format.
pub const RECORD_VERSION: &[u8] = b"1";

/// One answered turn, as the chat has it.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRecord<'a> {
    pub conversation_id: &'a str,
    pub model: &'a str,
    pub user_message_id: &'a str,
    pub assistant_message_id: &'a str,
    pub user: &'a str,
    pub assistant: &'a str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub correlation_id: &'a str,
    pub at_unix_ms: u64,
}

/// A row of `conversations`. `created_at` is left to the table's default, so an upsert
/// of a later turn does not move it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationRow<'a> {
    pub id: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub updated_at: Timestamp,
}

/// A row of `messages`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRow<'a> {
    pub id: Cow<'a, str>,
    pub conversation_id: Cow<'a, str>,
    pub role: &'static str,
    pub content: Cow<'a, str>,
    pub model: Cow<'a, str>,
    /// Prompt tokens for the user's message, completion tokens for the answer.
    pub tokens: u64,
    pub correlation_id: Cow<'a, str>,
    pub created_at: Timestamp,
}

/// A record cut into its parts, borrowing the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordParts<'a> {
    /// The conversation's key as a JSON string: equal keys, equal bytes.
    pub conversation_key: &'a [u8],
    pub conversation_row: &'a [u8],
    /// Two JSON objects separated by a comma.
    pub message_rows: &'a [u8],
}

/// A time as PostgREST reads a `timestamptz`: RFC 3339 in UTC with milliseconds,
/// `2024-11-24T20:26:40.123Z`, written without the formatting machinery (three per
/// turn, on the request path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn format(self) -> [u8; 24] {
        let t = DateTime::from_timestamp_millis(self.0.min(MAX_MS) as i64).unwrap_or_default();
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, t.year().clamp(0, 9999) as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        put(20, 3, t.timestamp_subsec_millis().min(999));
        out
    }
}

/// The last millisecond of year 9999, as far as the format goes.
const MAX_MS: u64 = 253_402_300_799_999;

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.format();
        s.serialize_str(std::str::from_utf8(&bytes).unwrap_or_default())
    }
}

/// Postgres `text` cannot hold NUL (PostgREST answers 400, 22P05); one in any string
/// would fail its whole batch, so every string of a record is made storable: NUL becomes
/// U+FFFD. A `continuation_id` cannot hold one (the `chat` tool refuses it), but a model's
/// answer can.
pub fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

impl TurnRecord<'_> {
    /// Appends the record's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(RECORD_VERSION);
        out.push(b'\n');
        let conversation_id = storable(self.conversation_id);
        serde_json::to_writer(&mut *out, &conversation_id)?;
        out.push(b'\n');
        let conversation = ConversationRow {
            id: conversation_id.clone(),
            model: storable(self.model),
            updated_at: Timestamp(self.at_unix_ms),
        };
        serde_json::to_writer(&mut *out, &conversation)?;
        out.push(b'\n');
        // The answer is stamped a millisecond later, so ordering by time keeps the pair
        // in order.
        let row = |id, role, content, tokens, at| MessageRow {
            id: storable(id),
            conversation_id: conversation_id.clone(),
            role,
            content: storable(content),
            model: storable(self.model),
            tokens,
            correlation_id: storable(self.correlation_id),
            created_at: Timestamp(at),
        };
        let user = row(
            self.user_message_id,
            "user",
            self.user,
            self.input_tokens,
            self.at_unix_ms,
        );
        serde_json::to_writer(&mut *out, &user)?;
        out.push(b',');
        let answer = row(
            self.assistant_message_id,
            "assistant",
            self.assistant,
            self.output_tokens,
            self.at_unix_ms + 1,
        );
        serde_json::to_writer(&mut *out, &answer)
    }
}

/// Cuts a payload into its parts; `None` for a format this build does not know.
pub fn parts(payload: &[u8]) -> Option<RecordParts<'_>> {
    let mut lines = payload.splitn(4, |b| *b == b'\n');
    if lines.next()? != RECORD_VERSION {
        return None;
    }
    let parts = RecordParts {
        conversation_key: lines.next()?,
        conversation_row: lines.next()?,
        message_rows: lines.next()?,
    };
    let object = |b: &[u8]| b.first() == Some(&b'{') && b.last() == Some(&b'}');
    (parts.conversation_key.first() == Some(&b'"')
        && object(parts.conversation_row)
        && object(parts.message_rows))
    .then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_record_holds_the_rows_as_sent_with_stable_keys() {
        let record = TurnRecord {
            conversation_id: "c-1\nwith a newline",
            model: "glm-4.5-flash",
            user_message_id: "u-1",
            assistant_message_id: "a-1",
            user: "hello",
            assistant: "nul\0here",
            input_tokens: 3,
            output_tokens: 5,
            correlation_id: "corr\0",
            at_unix_ms: 1_732_480_000_123,
        };
        let mut payload = Vec::new();
        record.encode(&mut payload).unwrap();
        let p = parts(&payload).expect("a record of this format");
        assert_eq!(p.conversation_key, br#""c-1\nwith a newline""#);
        let conversation: Value = serde_json::from_slice(p.conversation_row).unwrap();
        assert_eq!(
            conversation,
            json!({"id": "c-1\nwith a newline", "model": "glm-4.5-flash", "updated_at": "2024-11-24T20:26:40.123Z"})
        );
        let mut array = b"[".to_vec();
        array.extend_from_slice(p.message_rows);
        array.push(b']');
        let messages: Value = serde_json::from_slice(&array).unwrap();
        assert_eq!(messages[0]["id"], "u-1");
        assert_eq!(messages[0]["role"], "user");
        assert_eq!(messages[0]["tokens"], 3);
        assert_eq!(messages[1]["content"], "nul\u{fffd}here");
        assert_eq!(messages[1]["created_at"], "2024-11-24T20:26:40.124Z");
        assert_eq!(messages[1]["conversation_id"], "c-1\nwith a newline");
        assert_eq!(messages[1]["correlation_id"], "corr\u{fffd}");
        assert!(
            !payload.windows(6).any(|w| w == b"\\u0000"),
            "no string in a record holds NUL"
        );

        assert_eq!(&Timestamp(0).format(), b"1970-01-01T00:00:00.000Z");
        assert_eq!(&Timestamp(u64::MAX).format(), b"9999-12-31T23:59:59.999Z");
        assert_eq!(parts(b"2\n\"c\"\n{}\n{}"), None, "an unknown format");
        assert_eq!(parts(b"1\n\"c\"\n{}"), None, "a missing line");
        assert_eq!(parts(b"1\n\"c\"\nnot json\n{}"), None);
    }
}
