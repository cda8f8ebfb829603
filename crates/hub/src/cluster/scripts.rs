//! The Lua scripts cluster mode runs in Redis, one atomic step each (Redis
//! runs one script at a time). Key names come from [`Keys`](super::Keys):
//! a script that walks topics gets the streams' key prefix as an argument,
//! so no key name is written here.

/// The publish. KEYS: seq, stream, topics, dropped, last.
/// ARGV: topic, body, max_count, max_topics, channel, floor, shards, shard.
/// Returns the id as a string, or the error `TOOMANYTOPICS`.
///
/// The id is the first number above `seq`, Redis's clock (`TIME`, in
/// microseconds) and `floor` (the largest id the publishing node has seen)
/// that is `shard` modulo `shards`: ids are publish times, increasing on
/// each shard, unique across shards, and never below what the publisher
/// saw, even on a promoted replica that missed the newest writes.
pub const APPEND: &str = r#"
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then
    return redis.error_reply('TOOMANYTOPICS')
  end
  redis.call('SADD', KEYS[3], ARGV[1])
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local id = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
if now_us > id then id = now_us end
local floor = tonumber(ARGV[6]) + 1
if floor > id then id = floor end
id = id + ((tonumber(ARGV[8]) - id) % tonumber(ARGV[7]))
local ids = string.format('%.0f', id)
redis.call('SET', KEYS[1], ids)
local ms = string.format('%.0f', math.floor(now_us / 1000))
local max = tonumber(ARGV[3])
if max == 0 then
  redis.call('HSET', KEYS[4], ARGV[1], ids)
else
  local len = redis.call('XLEN', KEYS[2])
  if len >= max then
    local drop = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', len - max + 1)
    local through = string.match(drop[#drop][1], '^(%d+)')
    redis.call('XTRIM', KEYS[2], 'MAXLEN', max - 1)
    local old = redis.call('HGET', KEYS[4], ARGV[1])
    if (not old) or tonumber(old) < tonumber(through) then
      redis.call('HSET', KEYS[4], ARGV[1], through)
    end
  end
  redis.call('XADD', KEYS[2], ids .. '-0', 't', ms, 'b', ARGV[2])
end
redis.call('HSET', KEYS[5], ARGV[1], ids)
redis.call('PUBLISH', ARGV[5], ids .. ' ' .. ms .. ' ' .. ARGV[1] .. '\n' .. ARGV[2])
return ids
"#;

/// History of one topic after an id. KEYS: stream, dropped, forgotten.
/// ARGV: topic, after ("-" for all), most entries to return. Returns
/// `{dropped or '', forgotten or '', id, ms, body, id, ms, body, ...}`.
pub const READ: &str = r#"
local from = '-'
if ARGV[2] ~= '-' then from = '(' .. ARGV[2] .. '-0' end
local out = { redis.call('HGET', KEYS[2], ARGV[1]) or '', redis.call('GET', KEYS[3]) or '' }
for _, e in ipairs(redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', tonumber(ARGV[3]))) do
  out[#out + 1] = string.match(e[1], '^(%d+)')
  out[#out + 1] = e[2][2]
  out[#out + 1] = e[2][4]
end
return out
"#;

/// Stats of topics. KEYS: topics, last. ARGV: the streams' key prefix, then
/// topic names, or none for every topic. Returns
/// `{name, len, oldest or '', last or '', ...}`.
pub const STATS: &str = r#"
local names = {}
for i = 2, #ARGV do names[#names + 1] = ARGV[i] end
if #names == 0 then names = redis.call('SMEMBERS', KEYS[1]) end
local out = {}
for _, name in ipairs(names) do
  local last = redis.call('HGET', KEYS[2], name)
  if last then
    local key = ARGV[1] .. name
    local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
    local oldest = ''
    if #first > 0 then oldest = string.match(first[1][1], '^(%d+)') end
    out[#out + 1] = name
    out[#out + 1] = tostring(redis.call('XLEN', key))
    out[#out + 1] = oldest
    out[#out + 1] = last
  end
end
return out
"#;

/// Age retention. KEYS: topics, dropped, last, forgotten. ARGV: cutoff id,
/// the streams' key prefix. Returns how many messages were trimmed.
pub const PRUNE: &str = r#"
local cutoff = ARGV[1]
local total = 0
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. name
  local gone = redis.call('XREVRANGE', key, '(' .. cutoff .. '-0', '-', 'COUNT', 1)
  local through = nil
  if #gone > 0 then
    through = string.match(gone[1][1], '^(%d+)')
    total = total + redis.call('XTRIM', key, 'MINID', cutoff .. '-0')
    local old = redis.call('HGET', KEYS[2], name)
    if (not old) or tonumber(old) < tonumber(through) then
      redis.call('HSET', KEYS[2], name, through)
    end
  end
  local last = redis.call('HGET', KEYS[3], name)
  if redis.call('XLEN', key) == 0 and ((not last) or tonumber(last) < tonumber(cutoff)) then
    local d = redis.call('HGET', KEYS[2], name)
    if d then
      local f = redis.call('GET', KEYS[4])
      if (not f) or tonumber(f) < tonumber(d) then redis.call('SET', KEYS[4], d) end
    end
    redis.call('SREM', KEYS[1], name)
    redis.call('DEL', key)
    redis.call('HDEL', KEYS[2], name)
    redis.call('HDEL', KEYS[3], name)
  end
end
return total
"#;

/// A watermark: raises the shard's `seq` to at least Redis's clock and
/// `floor`, and publishes `tick {seq}` on the channel, after every message
/// published before it. KEYS: seq. ARGV: floor, channel. Every later
/// message of this shard has a larger id than the tick.
pub const TICK: &str = r#"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local w = tonumber(redis.call('GET', KEYS[1]) or '0')
if now_us > w then w = now_us end
if tonumber(ARGV[1]) > w then w = tonumber(ARGV[1]) end
local ws = string.format('%.0f', w)
redis.call('SET', KEYS[1], ws)
redis.call('PUBLISH', ARGV[2], 'tick ' .. ws)
return ws
"#;

/// What a node knows against what a (possibly newly promoted) primary
/// holds. KEYS: seq, topics, dropped, last, forgotten. ARGV: floor, the
/// streams' key prefix, the channel, then pairs of topic and the largest
/// id the node saw of it (delivered, or acknowledged to its publishers). Raises `seq` to `floor` (ids never go back). For every topic
/// whose stream lacks that id though retention did not remove it (it is
/// above `dropped` and `forgotten`), the message was lost with the old
/// primary: the loss is recorded as retention records one (`dropped`
/// through that id), so a subscriber resuming from before it gets a gap
/// notice instead of silence. (The check looks for the id itself, not at
/// the newest id, so publishes another node made on the new primary first
/// do not hide the loss.) When anything was lost it publishes `lost {n}`
/// on the channel, so that every node ends its subscriptions, whose
/// resumes then hear of it: another node may have served them from this
/// primary before this one had said what it knew. Returns how many topics
/// had lost messages.
pub const RECONCILE: &str = r#"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > seq then redis.call('SET', KEYS[1], ARGV[1]) end
local forgotten = tonumber(redis.call('GET', KEYS[5]) or '0')
local lost = 0
for i = 4, #ARGV - 1, 2 do
  local name = ARGV[i]
  local known = tonumber(ARGV[i + 1])
  local d = tonumber(redis.call('HGET', KEYS[3], name) or '0')
  if known > d and known > forgotten then
    local id = ARGV[i + 1] .. '-0'
    if #redis.call('XRANGE', ARGV[2] .. name, id, id) == 0 then
      lost = lost + 1
      redis.call('HSET', KEYS[3], name, ARGV[i + 1])
      local last = tonumber(redis.call('HGET', KEYS[4], name) or '0')
      if known > last then redis.call('HSET', KEYS[4], name, ARGV[i + 1]) end
      redis.call('SADD', KEYS[2], name)
    end
  end
end
if lost > 0 then redis.call('PUBLISH', ARGV[3], 'lost ' .. lost) end
return lost
"#;
