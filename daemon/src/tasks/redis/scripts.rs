//! The Lua scripts of the Redis backend: each step that reads and then writes, done
//! atomically in Redis. Every script is sent after [`PRELUDE`].

/// Shared by every script: Redis's clock, the fields read of a task, and how a working
/// task that lost its lease is recorded failed.
pub(super) const PRELUDE: &str = r#"
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
pub(super) const CREATE: &str = r#"
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
pub(super) const GET: &str = r#"
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
pub(super) const CANCEL: &str = r#"
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
pub(super) const LIST: &str = r#"
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
pub(super) const RENEW: &str = r#"
local s = redis.call('HMGET', KEYS[1], 'status', 'runner')
if s[1] ~= 'working' or s[2] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'message', ARGV[3])
return 1
"#;

/// KEYS: task, lease. ARGV: runner, status, message (empty: none), result.
pub(super) const FINISH: &str = r#"
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
pub(super) const DROP_OWNER: &str = r#"
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
pub(super) const HELD: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
return redis.call('ZCARD', KEYS[1])
"#;
