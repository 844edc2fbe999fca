//! Tasks in Redis, chosen by `REDIS_URL` as conversations are: every daemon sharing the
//! Redis reads, fetches and cancels every task, whichever daemon runs it.
//!
//! Keys (every one expires with its task, so a dead daemon leaves nothing forever):
//! - `exai:task:<id>`, a hash: `owner`, `tool`, `status`, `message`, `created`,
//!   `updated` and `ttl` (milliseconds, Redis's clock), `fetched` (`0`/`1`), `runner`
//!   (the daemon running it), `result` (`{"result": CallToolResult}` or
//!   `{"error": JSON-RPC error}`); `PEXPIRE` its TTL.
//! - `exai:task:<id>:lease`: the runner's name, `PX EXAI_TASK_LEASE_MS`, renewed by the
//!   runner. A working task without it has lost its daemon: the first read records it
//!   failed.
//! - `exai:tasks:owner:<owner>` and `exai:tasks:all`: sorted sets of task ids scored by
//!   their expiry, to count and list them; members past their score are dropped first.
//!
//! Every step that reads and then writes is one Lua script, so two daemons never both
//! take the last place or both end one task; scripts take the time from Redis (`TIME`),
//! so daemons' clocks need not agree. Scripts touch keys they compute (a task's lease,
//! an evicted task's owner set): one Redis, not a Redis Cluster.

use super::view::{lapsed, Finished, TaskError, TaskOutcome, TaskStatus, TaskView};
use super::{Cancel, Limits, NewTask, Renewal};
use crate::cause::Cause;
use crate::config::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

const TASK: &str = "exai:task:";
const OWNER: &str = "exai:tasks:owner:";
const ALL: &str = "exai:tasks:all";

pub(crate) struct RedisTasks {
    conn: ConnectionManager,
    lease: Duration,
    /// The URL without its password, for errors.
    shown_url: String,
    /// What a task whose lease ran out is failed with, `%s` for its runner.
    lapsed_format: String,
}

/// Shared by every script: Redis's clock, the fields read of a task, and how a working
/// task that lost its lease is recorded failed.
const PRELUDE: &str = r#"
local FIELDS = {'owner', 'tool', 'status', 'message', 'created', 'updated', 'ttl', 'fetched', 'runner'}
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function settle(k, f, lapsed_format)
  if f[3] == 'working' and redis.call('EXISTS', k .. ':lease') == 0 then
    local msg = string.format(lapsed_format, f[9] or '?')
    local now = now_ms()
    redis.call('HSET', k, 'status', 'failed', 'message', msg, 'updated', now,
      'result', cjson.encode({error = {code = -32603, message = msg}}))
    f[3] = 'failed'; f[4] = msg; f[6] = tostring(now)
  end
  return f
end
"#;

/// KEYS: all, owner set, task, lease. ARGV: id, owner, tool, ttl ms, runner, lease ms,
/// max, max per owner, task prefix, owner prefix.
const CREATE: &str = r#"
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local tp, op = ARGV[9], ARGV[10]
-- -1: gone already; 0: spent (cancelled, or its result fetched); 1: a result nobody
-- fetched, or working without a lease; nil: working, never dropped.
local function rank(id)
  local f = redis.call('HMGET', tp .. id, 'status', 'fetched', 'created')
  if not f[1] then return -1, 0 end
  local created = tonumber(f[3]) or 0
  if f[1] == 'cancelled' or (f[1] ~= 'working' and f[2] == '1') then return 0, created end
  if f[1] ~= 'working' then return 1, created end
  if redis.call('EXISTS', tp .. id .. ':lease') == 0 then return 1, created end
  return nil, created
end
local function make_room(index, bound)
  if redis.call('ZCARD', index) < bound then return true end
  local best, best_rank, best_created
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local r, c = rank(id)
    if r and (not best or r < best_rank or (r == best_rank and c < best_created)) then
      best, best_rank, best_created = id, r, c
    end
  end
  if not best then return false end
  local owner = redis.call('HGET', tp .. best, 'owner')
  redis.call('DEL', tp .. best, tp .. best .. ':lease')
  redis.call('ZREM', KEYS[1], best)
  redis.call('ZREM', index, best)
  if owner then redis.call('ZREM', op .. owner, best) end
  return true
end
if not make_room(KEYS[2], tonumber(ARGV[8])) then return {'owner_quota'} end
if not make_room(KEYS[1], tonumber(ARGV[7])) then return {'full'} end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[3], 'owner', ARGV[2], 'tool', ARGV[3], 'status', 'working',
  'created', now, 'updated', now, 'ttl', ttl, 'fetched', '0', 'runner', ARGV[5])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return {'ok', tostring(now)}
"#;

/// KEYS: task. ARGV: owner, lapsed format, `1` to fetch the result (and note it).
const GET: &str = r#"
local k = KEYS[1]
local f = redis.call('HMGET', k, unpack(FIELDS))
if f[1] ~= ARGV[1] then return false end
settle(k, f, ARGV[2])
if ARGV[3] == '1' and f[3] ~= 'working' then
  redis.call('HSET', k, 'fetched', '1')
  f[10] = redis.call('HGET', k, 'result')
end
return f
"#;

/// KEYS: task. ARGV: owner, lapsed format, the cancelled task's message.
const CANCEL: &str = r#"
local k = KEYS[1]
local f = redis.call('HMGET', k, unpack(FIELDS))
if f[1] ~= ARGV[1] then return false end
settle(k, f, ARGV[2])
if f[3] ~= 'working' then return {'ended', f[3]} end
local now = now_ms()
redis.call('HSET', k, 'status', 'cancelled', 'message', ARGV[3], 'updated', now)
redis.call('DEL', k .. ':lease')
f[3] = 'cancelled'; f[4] = ARGV[3]; f[6] = tostring(now)
return {'cancelled', unpack(f)}
"#;

/// KEYS: owner set. ARGV: owner, lapsed format, task prefix. Each task: its id, then
/// its fields.
const LIST: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[3] .. id
  local f = redis.call('HMGET', k, unpack(FIELDS))
  if f[1] == ARGV[1] then
    settle(k, f, ARGV[2])
    out[#out + 1] = {id, unpack(f)}
  elseif not f[1] then
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"#;

/// KEYS: task, lease. ARGV: runner, lease ms, progress message. 1 while the task is
/// this runner's and working; 0 once it ended, expired or was dropped.
const RENEW: &str = r#"
local s = redis.call('HMGET', KEYS[1], 'status', 'runner')
if s[1] ~= 'working' or s[2] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'message', ARGV[3])
return 1
"#;

/// KEYS: task, lease. ARGV: runner, status, message (empty: none), result.
const FINISH: &str = r#"
local s = redis.call('HMGET', KEYS[1], 'status', 'runner')
if s[1] ~= 'working' or s[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated', now_ms(), 'result', ARGV[4])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'message')
else
  redis.call('HSET', KEYS[1], 'message', ARGV[3])
end
redis.call('DEL', KEYS[2])
return 1
"#;

/// KEYS: owner set, all. ARGV: task prefix, owner. The ids dropped.
const DROP_OWNER: &str = r#"
local dropped = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[1] .. id
  if redis.call('HGET', k, 'owner') == ARGV[2] then
    redis.call('DEL', k, k .. ':lease')
    dropped[#dropped + 1] = id
  end
  redis.call('ZREM', KEYS[2], id)
end
redis.call('DEL', KEYS[1])
return dropped
"#;

/// KEYS: all.
const HELD: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
return redis.call('ZCARD', KEYS[1])
"#;

/// A task's fields as the scripts return them, `FIELDS` order, then its result.
type Fields = Vec<Option<String>>;

fn task_key(id: &str) -> String {
    format!("{TASK}{id}")
}

fn lease_key(id: &str) -> String {
    format!("{TASK}{id}:lease")
}

fn owner_key(owner: &str) -> String {
    format!("{OWNER}{owner}")
}

impl RedisTasks {
    /// Tasks in the Redis at `url`, connected on first use; `timeout` bounds each
    /// connection attempt and each answer.
    pub fn new(url: &str, timeout: Duration, lease: Duration) -> Result<Self, TaskError> {
        let shown_url = redact_url(url);
        let unavailable = |message: String, e: redis::RedisError| TaskError::Unavailable {
            message,
            cause: Some(Cause::new(e)),
        };
        let client = redis::Client::open(url).map_err(|e| {
            let why = crate::redact::redact_urls_in(&e.to_string());
            unavailable(format!("invalid REDIS_URL {shown_url}: {why}"), e)
        })?;
        // One attempt per command: a task request waits at most `timeout` on a Redis
        // that is away, never behind the manager's own backoff.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| unavailable(format!("cannot set up Redis at {shown_url}"), e))?;
        Ok(Self {
            conn,
            lease,
            lapsed_format: lapsed("%s", lease).message.unwrap_or_default(),
            shown_url,
        })
    }

    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, TaskError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{PRELUDE}{script}")).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        for arg in args {
            cmd.arg(*arg);
        }
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| self.failed(e))
    }

    fn failed(&self, e: redis::RedisError) -> TaskError {
        let why = if e.is_timeout() {
            "no answer in time (EXAI_STORAGE_TIMEOUT_MS)".to_string()
        } else if e.is_connection_refusal() {
            "it refused the connection".to_string()
        } else {
            crate::redact::redact_urls_in(&e.to_string())
        };
        TaskError::Unavailable {
            message: format!("Redis at {}: {why}", self.shown_url),
            cause: Some(Cause::new(e)),
        }
    }

    pub async fn create(&self, new: NewTask<'_>, limits: Limits) -> Result<TaskView, TaskError> {
        let ttl_ms = new.ttl.as_millis().to_string();
        let lease_ms = self.lease.as_millis().to_string();
        let (max, per_owner) = (limits.max.to_string(), limits.max_per_owner.to_string());
        let (owner_set, task, lease) = (owner_key(new.owner), task_key(new.id), lease_key(new.id));
        let reply: Vec<String> = self
            .eval(
                CREATE,
                &[ALL, &owner_set, &task, &lease],
                &[
                    new.id, new.owner, new.tool, &ttl_ms, new.runner, &lease_ms, &max, &per_owner,
                    TASK, OWNER,
                ],
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let now = reply
                    .get(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_default();
                Ok(TaskView {
                    id: new.id.to_string(),
                    tool: new.tool.to_string(),
                    status: TaskStatus::Working,
                    status_message: None,
                    created_unix_ms: now,
                    updated_unix_ms: now,
                    ttl_ms: new.ttl.as_millis() as u64,
                })
            }
            Some("owner_quota") => Err(TaskError::OwnerQuota {
                max: limits.max_per_owner,
            }),
            Some("full") => Err(TaskError::Full { max: limits.max }),
            other => Err(self.damaged(new.id, &format!("create answered {other:?}"))),
        }
    }

    fn damaged(&self, id: &str, why: &str) -> TaskError {
        TaskError::Unavailable {
            message: format!(
                "task {id:?} in Redis at {} is damaged: {why}",
                self.shown_url
            ),
            cause: None,
        }
    }

    fn view(&self, id: &str, f: &[Option<String>]) -> Result<TaskView, TaskError> {
        let field = |i: usize| f.get(i).cloned().flatten();
        let number = |i: usize| field(i).and_then(|n| n.parse::<u64>().ok());
        let status = field(2)
            .as_deref()
            .and_then(TaskStatus::parse)
            .ok_or_else(|| self.damaged(id, "no status"))?;
        Ok(TaskView {
            id: id.to_string(),
            tool: field(1).unwrap_or_default(),
            status,
            status_message: field(3),
            created_unix_ms: number(4).unwrap_or_default(),
            updated_unix_ms: number(5).unwrap_or_default(),
            ttl_ms: number(6).unwrap_or_default(),
        })
    }

    async fn read(
        &self,
        owner: &str,
        id: &str,
        fetch: bool,
    ) -> Result<Option<(TaskView, Option<TaskOutcome>)>, TaskError> {
        let reply: Option<Fields> = self
            .eval(
                GET,
                &[&task_key(id)],
                &[owner, &self.lapsed_format, if fetch { "1" } else { "0" }],
            )
            .await?;
        let Some(fields) = reply else {
            return Ok(None);
        };
        let view = self.view(id, &fields)?;
        let outcome = match fields.get(9).cloned().flatten() {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| self.damaged(id, &format!("its result: {e}")))?,
            ),
            None => None,
        };
        Ok(Some((view, outcome)))
    }

    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<TaskView>, TaskError> {
        Ok(self.read(owner, id, false).await?.map(|(view, _)| view))
    }

    pub async fn fetch(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<(TaskView, Option<TaskOutcome>)>, TaskError> {
        self.read(owner, id, true).await
    }

    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Cancel, TaskError> {
        let reply: Option<Fields> = self
            .eval(
                CANCEL,
                &[&task_key(id)],
                &[owner, &self.lapsed_format, super::CANCELLED],
            )
            .await?;
        let Some(reply) = reply else {
            return Ok(Cancel::Unknown);
        };
        match reply.first().cloned().flatten().as_deref() {
            Some("cancelled") => Ok(Cancel::Cancelled(self.view(id, &reply[1..])?)),
            Some("ended") => {
                let status = reply.get(1).cloned().flatten();
                let status = status.as_deref().and_then(TaskStatus::parse);
                Ok(Cancel::Ended(
                    status.ok_or_else(|| self.damaged(id, "no status"))?,
                ))
            }
            other => Err(self.damaged(id, &format!("cancel answered {other:?}"))),
        }
    }

    pub async fn list(&self, owner: &str) -> Result<Vec<TaskView>, TaskError> {
        let reply: Vec<Fields> = self
            .eval(
                LIST,
                &[&owner_key(owner)],
                &[owner, &self.lapsed_format, TASK],
            )
            .await?;
        let mut views = reply
            .iter()
            .map(|f| {
                let id = f.first().cloned().flatten().unwrap_or_default();
                self.view(&id, &f[1..])
            })
            .collect::<Result<Vec<_>, _>>()?;
        views.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(views)
    }

    pub async fn renew(&self, id: &str, runner: &str, message: &str) -> Result<Renewal, TaskError> {
        let lease_ms = self.lease.as_millis().to_string();
        let working: i64 = self
            .eval(
                RENEW,
                &[&task_key(id), &lease_key(id)],
                &[runner, &lease_ms, message],
            )
            .await?;
        Ok(if working == 1 {
            Renewal::Working
        } else {
            Renewal::Ended
        })
    }

    pub async fn finish(&self, id: &str, runner: &str, end: &Finished) -> Result<bool, TaskError> {
        let result = serde_json::to_string(&end.outcome).map_err(|e| TaskError::Unavailable {
            message: format!("task {id:?}'s result cannot be written: {e}"),
            cause: Some(Cause::new(e)),
        })?;
        let ended: i64 = self
            .eval(
                FINISH,
                &[&task_key(id), &lease_key(id)],
                &[
                    runner,
                    end.status().as_str(),
                    end.message.as_deref().unwrap_or_default(),
                    &result,
                ],
            )
            .await?;
        Ok(ended == 1)
    }

    pub async fn drop_owner(&self, owner: &str) -> Result<Vec<String>, TaskError> {
        self.eval(DROP_OWNER, &[&owner_key(owner), ALL], &[TASK, owner])
            .await
    }

    pub async fn held(&self) -> Result<usize, TaskError> {
        self.eval(HELD, &[ALL], &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_refuses_a_task_and_says_where() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = RedisTasks::new(
            &format!("redis://:sekrit@127.0.0.1:{port}"),
            Duration::from_millis(200),
            Duration::from_secs(5),
        )
        .unwrap();
        let new = NewTask {
            id: "t",
            owner: "o",
            tool: "chat",
            ttl: Duration::from_secs(60),
            runner: "r",
        };
        let limits = Limits {
            max: 1,
            max_per_owner: 1,
        };
        let err = store.create(new, limits).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("task storage unavailable: Redis at redis://")
                && text.contains("refused the connection"),
            "{text}"
        );
        assert!(!text.contains("sekrit"), "{text}");
        assert!(matches!(err, TaskError::Unavailable { cause: Some(_), .. }));
    }
}
