//! The two Lua scripts that read and append to a conversation's key, and what their
//! answers mean. Each runs atomically in Redis, so no other client's command falls
//! between its steps.
//!
//! They are sent whole with `EVAL` (Redis keeps the compiled script, keyed by its hash):
//! a kilobyte per call, no `SCRIPT LOAD` to redo after Redis restarts empty.

use crate::storage::{Thread, Turn};

/// `KEYS[1]`: the conversation. One round trip, in either layout: `{'list', turn, …}`,
/// `{'json', value}` for an older daemon's string, `{}` for none, `{'other', type}`.
pub const LOAD: &str = r#"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'list' then
  local turns = redis.call('LRANGE', KEYS[1], 0, -1)
  table.insert(turns, 1, 'list')
  return turns
elseif kind == 'string' then
  return {'json', redis.call('GET', KEYS[1])}
elseif kind == 'none' then
  return {}
end
return {'other', kind}
"#;

/// `KEYS[1]`: the conversation. `ARGV`: turns kept, time to live in seconds, `1` to skip
/// a turn the list already holds (a replay, which may repeat an append whose answer was
/// lost), the turn; then, to convert an older daemon's string, that string and its turns.
///
/// Finding a string it was not given, it changes nothing and answers `{'convert', value}`:
/// the caller converts that value and calls again with it. The value is compared, so a
/// string rewritten meanwhile (an older daemon still running) is never converted from a
/// stale copy.
pub const APPEND: &str = r#"
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind == 'string' then
  local old = redis.call('GET', key)
  if #ARGV < 5 or old ~= ARGV[5] then
    return {'convert', old}
  end
  redis.call('DEL', key)
  for i = 6, #ARGV do
    redis.call('RPUSH', key, ARGV[i])
  end
elseif kind ~= 'list' and kind ~= 'none' then
  return {'other', kind}
end
if ARGV[3] == '1' then
  for _, turn in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if turn == ARGV[4] then
      redis.call('EXPIRE', key, ARGV[2])
      return {'present'}
    end
  end
end
redis.call('RPUSH', key, ARGV[4])
redis.call('LTRIM', key, -tonumber(ARGV[1]), -1)
redis.call('EXPIRE', key, ARGV[2])
return {'appended'}
"#;

/// What [`LOAD`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    Thread(Thread),
    /// The key holds a type of value no daemon writes.
    Other(String),
}

/// What [`APPEND`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// The turn is in the list (appended, or found there on a replay).
    Done,
    /// An older daemon's string is in the way: convert this value and call again.
    Convert(Vec<u8>),
    /// The key holds a type of value no daemon writes.
    Other(String),
}

/// Reads [`LOAD`]'s answer. A turn that does not parse is left out (and logged) rather
/// than costing the whole conversation; an older daemon's string that does not parse
/// reads as no turns, as that daemon itself would have overwritten it.
pub fn loaded(key: &str, reply: Vec<Vec<u8>>) -> Option<Loaded> {
    let mut items = reply.into_iter();
    let tag = items.next()?;
    Some(match tag.as_slice() {
        b"list" => Loaded::Thread(Thread {
            turns: items.filter_map(|item| turn(key, &item)).collect(),
        }),
        b"json" => Loaded::Thread(older(key, &items.next().unwrap_or_default())),
        _ => Loaded::Other(text(items.next())),
    })
}

/// Reads [`APPEND`]'s answer.
pub fn appended(reply: Vec<Vec<u8>>) -> Appended {
    let mut items = reply.into_iter();
    match items.next().as_deref() {
        Some(b"convert") => Appended::Convert(items.next().unwrap_or_default()),
        Some(b"other") => Appended::Other(text(items.next())),
        _ => Appended::Done,
    }
}

/// The turns of an older daemon's string value (`{"turns":[…]}`); none when it does not
/// parse.
pub fn older(key: &str, value: &[u8]) -> Thread {
    serde_json::from_slice(value).unwrap_or_else(|e| {
        tracing::warn!(key, error = %e, bytes = value.len(),
            "an older daemon's conversation is unreadable; it continues without its turns");
        Thread::default()
    })
}

fn turn(key: &str, item: &[u8]) -> Option<Turn> {
    serde_json::from_slice(item)
        .inspect_err(|e| {
            tracing::warn!(key, error = %e, bytes = item.len(),
                "an unreadable turn in a conversation is left out");
        })
        .ok()
}

fn text(item: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&item.unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn_json(user: &str) -> Vec<u8> {
        serde_json::to_vec(&Turn {
            user: user.into(),
            assistant: "a".into(),
            model: "m".into(),
            at_unix_ms: 1,
        })
        .unwrap()
    }

    #[test]
    fn both_layouts_read_as_a_thread_and_a_bad_turn_costs_only_itself() {
        let list = vec![
            b"list".to_vec(),
            turn_json("q0"),
            b"{not json".to_vec(),
            turn_json("q1"),
        ];
        let Some(Loaded::Thread(thread)) = loaded("k", list) else {
            panic!("a thread")
        };
        let users: Vec<&str> = thread.turns.iter().map(|t| t.user.as_str()).collect();
        assert_eq!(users, ["q0", "q1"]);

        let old = br#"{"turns":[{"user":"q","assistant":"a","model":"m","at_unix_ms":5}]}"#;
        let Some(Loaded::Thread(thread)) = loaded("k", vec![b"json".to_vec(), old.to_vec()]) else {
            panic!("a thread")
        };
        assert_eq!(thread.turns.len(), 1);
        assert_eq!(
            loaded("k", vec![b"json".to_vec(), b"garbage".to_vec()]),
            Some(Loaded::Thread(Thread::default()))
        );
        assert_eq!(loaded("k", vec![]), None);
        assert_eq!(
            loaded("k", vec![b"other".to_vec(), b"hash".to_vec()]),
            Some(Loaded::Other("hash".into()))
        );
    }

    #[test]
    fn append_answers_are_read() {
        assert_eq!(appended(vec![b"appended".to_vec()]), Appended::Done);
        assert_eq!(appended(vec![b"present".to_vec()]), Appended::Done);
        assert_eq!(
            appended(vec![b"convert".to_vec(), b"{}".to_vec()]),
            Appended::Convert(b"{}".to_vec())
        );
        assert_eq!(
            appended(vec![b"other".to_vec(), b"set".to_vec()]),
            Appended::Other("set".into())
        );
    }
}
