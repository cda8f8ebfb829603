//! Cluster mode's store (`--redis redis://…`): ids, history and retention
//! live in Redis, so every node sees the same messages under the same ids.
//!
//! # Ids and history
//!
//! One Lua script per publish ([`APPEND`]) runs atomically in Redis (Redis
//! runs one script at a time), and does everything a publish needs:
//!
//! 1. checks the topic limit (`coop:topics`, a set of topic names);
//! 2. takes the next id from `coop:seq`: `max(seq + 1, now_us)` with
//!    `now_us` from Redis's own clock (`TIME`), exactly the memory and
//!    SQLite stores' scheme (ids are publish times in microseconds, bumped
//!    on collision). One counter for the whole cluster makes ids global;
//!    Redis's clock keeps them ordered against time whatever the nodes'
//!    clocks say, and they keep increasing even if Redis loses `coop:seq`;
//! 3. applies count retention exactly (the oldest entries over the limit
//!    are trimmed, and the largest trimmed id goes to `coop:dropped`);
//! 4. appends the message to the topic's stream `coop:t:{topic}` with the
//!    explicit stream id `{id}-0`, so `?since=ID` is `XRANGE (ID-0 +`;
//! 5. `PUBLISH`es it on `coop:msgs`.
//!
//! Because the script is atomic, the order of `PUBLISH`es is the id order:
//! every node's broker (`broker/redis.rs`) receives committed messages in id
//! order, which is the store contract's "hand batches to the broker in id
//! order" with Redis as the commit order. The publish is answered once the
//! script has returned: the message is then in Redis (as durable as Redis
//! is configured to be: `appendonly yes` with `appendfsync always` or
//! `everysec` for deployments that must survive a Redis restart).
//!
//! # Reads, stats, retention
//!
//! History reads, stats and the topic list are small Lua scripts too, so
//! each answer is one consistent snapshot and one round trip. Age retention
//! ([`Store::prune`], called every second by every node) trims each stream
//! by `MINID` (ids are times) and forgets emptied topics; running it on
//! several nodes is harmless (the second finds nothing to do).
//!
//! # When Redis is unreachable
//!
//! Commands go through a [`ConnectionManager`] (one multiplexed connection,
//! pipelining concurrent commands; it reconnects with exponential backoff).
//! Every command is bounded by [`COMMAND_TIMEOUT`]: a publish fails with
//! [`StoreError::Unavailable`] and the hub answers `503` with the reason,
//! never `ok` unless the script returned. (If Redis ran the script but the
//! answer was lost with the connection, the publisher sees `503` for a
//! message that was delivered: at-least-once, never a false `ok`.) The
//! shared [`RedisHealth`] feeds `/healthz`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::{History, Retention, Store, StoreError, TopicStats};
use crate::message::{Message, MessageId, TopicName};

/// Longest wait for any one Redis command before the caller gets `503`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Key prefix of everything coop keeps in Redis.
pub const PREFIX: &str = "coop:";
/// The pub/sub channel every node listens on.
pub const CHANNEL: &str = "coop:msgs";
const SEQ: &str = "coop:seq";
const TOPICS: &str = "coop:topics";
const DROPPED: &str = "coop:dropped";
const LAST: &str = "coop:last";
const FORGOTTEN: &str = "coop:forgotten";

/// The stream key of a topic.
pub fn stream_key(topic: &str) -> String {
    format!("{PREFIX}t:{topic}")
}

/// The publish script. KEYS: seq, stream, topics, dropped, last.
/// ARGV: topic, body, max_count, max_topics, channel.
/// Returns the id as a string, or the error `TOOMANYTOPICS`.
const APPEND: &str = r#"
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
    redis.call('HSET', KEYS[4], ARGV[1], through)
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
const READ: &str = r#"
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

/// Stats of topics. KEYS: topics, last. ARGV: topic names, or none for
/// every topic. Returns `{name, len, oldest or '', last or '', ...}`.
const STATS: &str = r#"
local names = ARGV
if #names == 0 then names = redis.call('SMEMBERS', KEYS[1]) end
local out = {}
for _, name in ipairs(names) do
  local last = redis.call('HGET', KEYS[2], name)
  if last then
    local key = 'coop:t:' .. name
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

/// Age retention. KEYS: topics, dropped, last, forgotten. ARGV: cutoff id.
/// Returns how many messages were trimmed.
const PRUNE: &str = r#"
local cutoff = ARGV[1]
local total = 0
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = 'coop:t:' .. name
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

/// Messages of every topic after an id, for a broker catching up after a
/// reconnect. KEYS: topics. ARGV: after. Returns `{topic, id, ms, body, ...}`
/// (not sorted across topics).
pub(crate) const CATCH_UP: &str = r#"
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  for _, e in ipairs(redis.call('XRANGE', 'coop:t:' .. name, '(' .. ARGV[1] .. '-0', '+')) do
    out[#out + 1] = name
    out[#out + 1] = string.match(e[1], '^(%d+)')
    out[#out + 1] = e[2][2]
    out[#out + 1] = e[2][4]
  end
end
return out
"#;

/// `url` fit to print: the password replaced by `***`, the user kept.
///
/// Covers what redis-rs accepts: `redis://user:pass@host:6379/0`,
/// `redis://:pass@host`, `rediss://…`, and `redis+unix:///path?pass=…`
/// (the `pass` and `password` query parameters). Works on text that is not
/// a valid URL too (it never fails, and never returns the input's password),
/// so a URL that does not parse can still be named in the error. Every log
/// line, error message and `/healthz` reason that names the Redis URL goes
/// through this; [`redact_in`] cleans text written by others.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            // The authority ends at the first '/', or '#' (the query is
            // already split off); its userinfo ends at the last '@'.
            let end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        // Not a URL: anything before an '@' may be a secret.
        None => match before_query.rsplit_once('@') {
            Some((_, host)) => {
                out.push_str("***@");
                out.push_str(host);
            }
            None => out.push_str(before_query),
        },
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Passwords of `url` (userinfo and query) at least this long are also
/// scrubbed from free text by [`redact_in`]; shorter ones would match
/// innocent words (and are no secret anyway).
const MIN_SCRUBBED: usize = 4;

/// `text` (say, an error from the Redis client) with every occurrence of
/// `url`'s password replaced by `***`, in case the text quotes it.
pub fn redact_in(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    for secret in passwords(url) {
        if secret.len() >= MIN_SCRUBBED {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// The secrets `url` may carry: the userinfo's password (or the whole
/// userinfo of text that is not a URL) and `pass=`/`password=` values.
fn passwords(url: &str) -> Vec<&str> {
    let (before_query, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = Vec::new();
    let authority = match before_query.split_once("://") {
        Some((_, rest)) => &rest[..rest.find(['/', '#']).unwrap_or(rest.len())],
        None => before_query,
    };
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((_, password)) => out.push(password),
            None if !before_query.contains("://") => out.push(userinfo),
            None => {}
        }
    }
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") {
                out.push(v);
            }
        }
    }
    out
}

/// Why cluster mode cannot start. The URL in each is redacted
/// ([`redact_url`]).
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("bad Redis URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// What `/healthz` reports in cluster mode: the last command's failure and
/// the pub/sub connection's state. Shared by the store and the broker.
#[derive(Default)]
pub struct RedisHealth {
    commands: Mutex<Option<String>>,
    pub(crate) pubsub: Mutex<Option<String>>,
}

impl RedisHealth {
    pub(crate) fn record<T>(&self, r: &Result<T, StoreError>) {
        let mut slot = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        *slot = r.as_ref().err().map(|e| e.to_string());
    }

    pub(crate) fn set_pubsub(&self, state: Option<String>) {
        *self.pubsub.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// `Err(reason)` while Redis is unreachable from this node.
    pub fn check(&self) -> Result<(), String> {
        if let Some(r) = &*self.pubsub.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(format!("redis pub/sub: {r}"));
        }
        if let Some(r) = &*self.commands.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(format!("redis: {r}"));
        }
        Ok(())
    }
}

/// A connection to Redis for cluster mode, made at start (so a bad URL or
/// an unreachable Redis is a clear error before serving).
#[derive(Clone)]
pub struct RedisConn {
    pub(crate) client: redis::Client,
    pub(crate) manager: ConnectionManager,
    pub(crate) health: Arc<RedisHealth>,
    /// Largest id this node has assigned or delivered (for `last_id()`).
    pub(crate) last_seen: Arc<AtomicU64>,
    /// The URL with its password redacted: only ever used to name Redis
    /// in logs and errors.
    pub(crate) url: String,
    /// The URL as given, password included: only to scrub the password
    /// from error text ([`RedisConn::redact`]); never printed.
    secret_url: Arc<str>,
}

impl RedisConn {
    /// Connects (one attempt, bounded by [`COMMAND_TIMEOUT`]) and checks
    /// Redis answers.
    pub async fn connect(url: &str) -> Result<RedisConn, RedisSetupError> {
        let shown = redact_url(url);
        let client = redis::Client::open(url).map_err(|source| RedisSetupError::Url {
            url: shown.clone(),
            reason: redact_in(&source.to_string(), url),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(COMMAND_TIMEOUT)
            // Reconnect attempts after a failure: 100 ms, 200 ms, then the
            // next command starts a new round. Bounded so that commands
            // waiting on a reconnect fail within COMMAND_TIMEOUT anyway.
            .set_number_of_retries(2)
            .set_factor(100)
            .set_max_delay(1000);
        let unreachable = |reason: String| RedisSetupError::Unreachable {
            url: shown.clone(),
            reason: redact_in(&reason, url),
        };
        let mut manager = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let seq: Option<u64> = redis::cmd("GET")
            .arg(SEQ)
            .query_async(&mut manager)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(RedisConn {
            client,
            manager,
            health: Arc::new(RedisHealth::default()),
            last_seen: Arc::new(AtomicU64::new(seq.unwrap_or(0))),
            url: shown,
            secret_url: Arc::from(url),
        })
    }

    /// `text` (an error of the Redis client) with the URL's password
    /// scrubbed, fit for logs and `/healthz`.
    pub(crate) fn redact(&self, text: &str) -> String {
        redact_in(text, &self.secret_url)
    }

    /// Runs a script with a timeout, recording the outcome for `/healthz`.
    pub(crate) async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.manager.clone();
        let r = match tokio::time::timeout(COMMAND_TIMEOUT, inv.invoke_async::<Value>(&mut conn))
            .await
        {
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis did not answer within {COMMAND_TIMEOUT:?}"
            ))),
            Ok(Err(e)) if e.to_string().contains("TOOMANYTOPICS") => {
                return Err(StoreError::TooManyTopics(0));
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(format!(
                "redis unavailable: {}",
                self.redact(&e.to_string())
            ))),
            Ok(Ok(v)) => Ok(v),
        };
        self.health.record(&r);
        r
    }
}

/// The cluster store. See the module docs.
pub struct RedisStore {
    conn: RedisConn,
    retention: Retention,
    max_topics: usize,
    scripts: Scripts,
}

struct Scripts {
    append: Script,
    read: Script,
    stats: Script,
    prune: Script,
}

impl RedisStore {
    pub fn new(conn: RedisConn, retention: Retention, max_topics: usize) -> RedisStore {
        RedisStore {
            conn,
            retention,
            max_topics,
            scripts: Scripts {
                append: Script::new(APPEND),
                read: Script::new(READ),
                stats: Script::new(STATS),
                prune: Script::new(PRUNE),
            },
        }
    }

    async fn stats_of(&self, names: &[&str]) -> Result<Vec<(TopicName, TopicStats)>, StoreError> {
        let args: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        let v = self
            .conn
            .run(&self.scripts.stats, &[TOPICS, LAST], &args)
            .await?;
        let items = strings(v)?;
        let mut out = Vec::new();
        for c in items.chunks_exact(4) {
            let Ok(name) = TopicName::new(&c[0]) else {
                continue;
            };
            out.push((
                name,
                TopicStats {
                    len: c[1].parse().unwrap_or(0),
                    oldest_id: c[2].parse().ok().map(MessageId),
                    last_id: c[3].parse().ok().map(MessageId),
                },
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// A script's flat array reply as strings (bodies are UTF-8, checked at
/// publish).
pub(crate) fn strings(v: Value) -> Result<Vec<String>, StoreError> {
    let Value::Array(items) = v else {
        return Err(StoreError::Unavailable(format!(
            "unexpected reply from redis: {v:?}"
        )));
    };
    Ok(items.into_iter().map(text).collect())
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Value::SimpleString(s) => s,
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

impl Store for RedisStore {
    fn append(
        &self,
        topic: TopicName,
        body: Bytes,
    ) -> BoxFuture<'_, Result<Arc<Message>, StoreError>> {
        Box::pin(async move {
            let key = stream_key(topic.as_str());
            let max_count = self.retention.max_count.to_string();
            let max_topics = self.max_topics.to_string();
            let v = self
                .conn
                .run(
                    &self.scripts.append,
                    &[SEQ, &key, TOPICS, DROPPED, LAST],
                    &[
                        topic.as_str().as_bytes(),
                        &body,
                        max_count.as_bytes(),
                        max_topics.as_bytes(),
                        CHANNEL.as_bytes(),
                    ],
                )
                .await
                .map_err(|e| match e {
                    StoreError::TooManyTopics(_) => StoreError::TooManyTopics(self.max_topics),
                    other => other,
                })?;
            let id: u64 = text(v).parse().map_err(|_| {
                StoreError::Unavailable("redis returned no id for the publish".into())
            })?;
            self.conn.last_seen.fetch_max(id, Ordering::AcqRel);
            // The message as the publisher's node knows it; subscribers get
            // the copy that comes back through pub/sub (same id and text).
            Ok(Arc::new(Message::new(
                MessageId(id),
                topic,
                self.retention.clock.now_ms(),
                body,
            )))
        })
    }

    fn read_page(
        &self,
        topic: &TopicName,
        after: Option<MessageId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, StoreError>> {
        let topic = topic.clone();
        Box::pin(async move {
            let key = stream_key(topic.as_str());
            let after = after.map_or_else(|| "-".to_string(), |a| a.0.to_string());
            // Lua numbers are doubles: exact up to 2^53, far above any page.
            let count = limit.min(1 << 40).to_string();
            let v = self
                .conn
                .run(
                    &self.scripts.read,
                    &[&key, DROPPED, FORGOTTEN],
                    &[
                        topic.as_str().as_bytes(),
                        after.as_bytes(),
                        count.as_bytes(),
                    ],
                )
                .await?;
            let Value::Array(mut items) = v else {
                return Err(StoreError::Unavailable(
                    "unexpected reply from redis".into(),
                ));
            };
            if items.len() < 2 {
                return Err(StoreError::Unavailable(
                    "unexpected reply from redis".into(),
                ));
            }
            let rest = items.split_off(2);
            let dropped: Option<u64> = text(items.swap_remove(0)).parse().ok();
            let forgotten: Option<u64> = text(items.swap_remove(0)).parse().ok();
            let mut messages = Vec::with_capacity(rest.len() / 3);
            let mut it = rest.into_iter();
            while let (Some(id), Some(ms), Some(body)) = (it.next(), it.next(), it.next()) {
                let body = match body {
                    Value::BulkString(b) => Bytes::from(b),
                    other => Bytes::from(text(other)),
                };
                messages.push(Arc::new(Message::new(
                    MessageId(text(id).parse().unwrap_or(0)),
                    topic.clone(),
                    text(ms).parse().unwrap_or(0),
                    body,
                )));
            }
            Ok(History {
                messages,
                dropped_through: dropped.max(forgotten).map(MessageId),
            })
        })
    }

    fn stats(&self, topic: &TopicName) -> BoxFuture<'_, Result<Option<TopicStats>, StoreError>> {
        let topic = topic.clone();
        Box::pin(async move {
            Ok(self
                .stats_of(&[topic.as_str()])
                .await?
                .into_iter()
                .next()
                .map(|(_, s)| s))
        })
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<(TopicName, TopicStats)>, StoreError>> {
        Box::pin(self.stats_of(&[]))
    }

    fn prune(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let Some(cutoff) = self.retention.age_cutoff_us() else {
                return Ok(0);
            };
            let cutoff = cutoff.to_string();
            let v = self
                .conn
                .run(
                    &self.scripts.prune,
                    &[TOPICS, DROPPED, LAST, FORGOTTEN],
                    &[cutoff.as_bytes()],
                )
                .await?;
            Ok(match v {
                Value::Int(n) => n.max(0) as usize,
                _ => 0,
            })
        })
    }

    fn last_id(&self) -> Option<MessageId> {
        match self.conn.last_seen.load(Ordering::Acquire) {
            0 => None,
            id => Some(MessageId(id)),
        }
    }

    fn health(&self) -> Result<(), String> {
        self.conn.health.check()
    }
}

impl RedisConn {
    /// The cluster backend for a hub: this store and a
    /// [`RedisBroker`](crate::broker::redis::RedisBroker) feeding `rings`.
    /// Pass to [`Hub::with_backend`](crate::Hub::with_backend); must run
    /// inside a tokio runtime (it starts the broker task).
    pub fn backend(self, config: &crate::Config, rings: crate::broker::Rings) -> crate::Backend {
        let broker = Arc::new(crate::broker::redis::RedisBroker::start(
            self.clone(),
            rings,
        ));
        let store = Arc::new(RedisStore::new(self, config.retention, config.max_topics));
        crate::Backend { store, broker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 9, item 8): the Redis URL, password included, was
    /// logged and quoted in errors.
    #[test]
    fn redacted_urls_keep_the_user_and_hide_the_password() {
        let cases = [
            (
                "redis://user:hunter2@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:hunter2@host", "redis://:***@host"),
            ("rediss://u:p@ss:w@rd@h:1/2", "rediss://u:***@h:1/2"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            ("redis://user@host", "redis://user@host"),
            (
                "redis://:pw@host/0?protocol=resp3",
                "redis://:***@host/0?protocol=resp3",
            ),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=hunter2&user=u",
                "redis+unix:///tmp/r.sock?db=1&pass=***&user=u",
            ),
            ("hunter2@host", "***@host"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(
            redact_in("AUTH hunter2 failed for hunter2", "redis://u:hunter2@h"),
            "AUTH *** failed for ***"
        );
        // Short passwords are redacted in URLs but not hunted in free text.
        assert_eq!(redact_url("redis://:ab@h"), "redis://:***@h");
        assert_eq!(redact_in("about", "redis://:ab@h"), "about");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the user, password and host, the password never
            /// survives redaction, and the host does.
            #[test]
            fn the_password_never_survives(
                user in "[a-z]{0,8}",
                password in "[A-Za-z0-9!$%()*+,;=~-]{6,24}",
                host in "[a-z]{1,10}(:[0-9]{1,5})?",
                path in "(/[0-9])?",
            ) {
                prop_assume!(!host.contains(&password) && !user.contains(&password));
                let url = format!("redis://{user}:{password}@{host}{path}");
                let shown = redact_url(&url);
                prop_assert!(!shown.contains(&password), "{}", shown);
                prop_assert!(shown.contains(&host), "{}", shown);
                let text = format!("error: {url}");
                prop_assert!(!redact_in(&text, &url).contains(&password));
            }

            /// Arbitrary text never panics.
            #[test]
            fn any_text_redacts_without_panicking(s in "\\PC{0,80}") {
                let _ = redact_url(&s);
                let _ = redact_in(&s, &s);
            }
        }
    }
}
