//! Cluster mode's broker: every node receives every committed message from
//! Redis pub/sub, in id order, and feeds its own fan-out; after any break
//! in the pub/sub connection it catches up from the streams first, so its
//! subscribers miss nothing and see nothing twice.
//!
//! # Order
//!
//! The publish script (`store/redis.rs`) assigns the id, appends to the
//! topic's stream and `PUBLISH`es in one atomic step, so the messages on
//! the channel `coop:msgs` come in id order on every node. The broker task
//! reads them from one dedicated pub/sub connection, in chunks of what is
//! already buffered (up to [`CHUNK`]), and calls [`Rings::deliver`] with
//! each chunk: that is the broker contract's "one batch at a time, in id
//! order". [`Broker::committed`] is a no-op here: Redis, not the store, is
//! where commit order is decided and from where it is delivered, to the
//! publishing node as to every other.
//!
//! # Reconnect and catch-up
//!
//! The task remembers `delivered`, the largest id it has handed to the
//! fan-out. Whenever it (re)connects it:
//!
//! 1. `SUBSCRIBE`s (from here on, new messages are buffered on the new
//!    connection);
//! 2. reads every topic's stream after `delivered` in one Lua script (an
//!    atomic snapshot), sorts by id and delivers it;
//! 3. then delivers pub/sub messages, skipping ids `<= delivered` (those
//!    published between 1 and 2 arrive both ways).
//!
//! Anything committed before step 1 is in the snapshot, anything after is on
//! the channel: no gap and no duplicate. On the first connection
//! `delivered` starts at `coop:seq` read before subscribing. A dead
//! connection is detected by the stream ending or by a `PING` (every
//! [`PING_EVERY`]) not answered within the command timeout; the task then
//! marks `/healthz` unhealthy and retries with exponential backoff
//! ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]). Subscribers stay
//! connected throughout: they simply receive nothing until Redis is back,
//! then everything, in order. (A subscriber that falls more than
//! `--buffer` behind during the catch-up is cut off with its last id, as
//! always, and resumes from history.)
//!
//! The task stops when the broker is dropped (the hub is gone).
//!
//! # Limits
//!
//! - The publisher's own node delivers its message when it comes back
//!   through pub/sub, a fraction of a millisecond after the publish was
//!   answered (delivering it at once would break the id order against
//!   messages of other nodes still in flight). A shutdown in that instant
//!   ends a subscriber before the message: it is in history, and the
//!   subscriber gets it when it resumes with its last id.
//! - The catch-up reads the streams, so with `--history 0` (no streams)
//!   messages published during a pub/sub break are not recovered.
//! - The catch-up and age pruning walk every topic in one Lua script each:
//!   fine for thousands of topics, a noticeable pause of Redis for
//!   hundreds of thousands.
//! - redis-rs buffers pub/sub messages in an unbounded channel between its
//!   connection task and this one; this task drains it without waiting on
//!   subscribers (the fan-out never blocks), so it stays short.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use redis::{Script, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Broker, Rings};
use crate::message::{Message, MessageId, TopicName};
use crate::store::redis::{strings, RedisConn, RedisHealth, CATCH_UP, CHANNEL, COMMAND_TIMEOUT};

/// Most pub/sub messages delivered in one batch (those already buffered).
pub const CHUNK: usize = 512;
/// How often the pub/sub connection is checked with a `PING`.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// First and largest pause between reconnection attempts.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The Redis broker handle (the hub holds it; dropping it stops the task).
pub struct RedisBroker {
    health: Arc<RedisHealth>,
    _stop: DropGuard,
}

impl RedisBroker {
    /// Starts the broker task for this node's `rings`. Must be called
    /// inside a tokio runtime.
    pub fn start(conn: RedisConn, rings: Rings) -> RedisBroker {
        let stop = CancellationToken::new();
        let health = conn.health.clone();
        // Unhealthy until the first subscription is confirmed.
        health.set_pubsub(Some("connecting".into()));
        tokio::spawn(run(conn, rings, stop.clone()));
        RedisBroker {
            health,
            _stop: stop.drop_guard(),
        }
    }
}

impl Broker for RedisBroker {
    fn committed(&self, _batch: &[Arc<Message>]) {
        // Delivered through Redis pub/sub instead (see the module docs).
    }

    fn health(&self) -> Result<(), String> {
        self.health.check()
    }
}

/// Why one connection's life ended.
type Broken = String;

async fn run(conn: RedisConn, rings: Rings, stop: CancellationToken) {
    let mut delivered: Option<u64> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        let reason = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(&conn, &rings, &mut delivered, &mut backoff) => r,
        };
        // Errors of the Redis client, scrubbed of the URL's password before
        // they reach the log or `/healthz` (`conn.url` is redacted already).
        let reason = conn.redact(&reason);
        tracing::warn!(reason = %reason, retry_in = ?backoff, url = %conn.url, "redis pub/sub lost; reconnecting");
        conn.health.set_pubsub(Some(reason));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One pub/sub connection: subscribe, catch up, deliver until it breaks.
async fn session(
    conn: &RedisConn,
    rings: &Rings,
    delivered: &mut Option<u64>,
    backoff: &mut Duration,
) -> Broken {
    let timeout =
        |what: &'static str| move |_| format!("{what}: no answer within {COMMAND_TIMEOUT:?}");
    let connect = async {
        let mut pubsub = conn.client.get_async_pubsub().await?;
        if delivered.is_none() {
            let mut m = conn.manager.clone();
            let seq: Option<u64> = redis::cmd("GET")
                .arg("coop:seq")
                .query_async(&mut m)
                .await?;
            *delivered = Some(seq.unwrap_or(0));
        }
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = match tokio::time::timeout(COMMAND_TIMEOUT, connect).await {
        Err(e) => return timeout("connect")(e),
        Ok(Err(e)) => return format!("cannot subscribe: {e}"),
        Ok(Ok(p)) => p,
    };
    let after = delivered.unwrap_or(0);
    match catch_up(conn, after).await {
        Ok(batch) => deliver(conn, rings, delivered, batch),
        Err(e) => return format!("catch-up failed: {e}"),
    }
    conn.health.set_pubsub(None);
    *backoff = BACKOFF_MIN;
    tracing::info!(url = %conn.url, after, "redis pub/sub subscribed");

    let (mut sink, stream) = pubsub.split();
    let mut chunks = stream.ready_chunks(CHUNK);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            chunk = chunks.next() => {
                let Some(msgs) = chunk else {
                    return "connection closed".into();
                };
                let batch: Vec<Arc<Message>> = msgs
                    .iter()
                    .filter_map(|m| parse(m.get_payload_bytes()))
                    .collect();
                deliver(conn, rings, delivered, batch);
            }
            _ = ping.tick() => {
                match tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<Value>()).await {
                    Err(e) => return timeout("ping")(e),
                    Ok(Err(e)) => return format!("ping failed: {e}"),
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

/// Delivers the messages above `delivered`, in id order, and advances it.
fn deliver(
    conn: &RedisConn,
    rings: &Rings,
    delivered: &mut Option<u64>,
    mut batch: Vec<Arc<Message>>,
) {
    let floor = delivered.unwrap_or(0);
    batch.retain(|m| m.id.0 > floor);
    let Some(last) = batch.last() else { return };
    let last = last.id.0;
    rings.deliver(&batch);
    *delivered = Some(last);
    conn.last_seen.fetch_max(last, Ordering::AcqRel);
}

/// Every topic's messages after `after`, sorted by id (one atomic script).
async fn catch_up(conn: &RedisConn, after: u64) -> Result<Vec<Arc<Message>>, String> {
    let script = Script::new(CATCH_UP);
    let after = after.to_string();
    let v = conn
        .run(&script, &["coop:topics"], &[after.as_bytes()])
        .await
        .map_err(|e| e.to_string())?;
    let items = strings(v).map_err(|e| e.to_string())?;
    let mut out: Vec<Arc<Message>> = items
        .chunks_exact(4)
        .filter_map(|c| {
            Some(Arc::new(Message::new(
                MessageId(c[1].parse().ok()?),
                TopicName::new(&c[0]).ok()?,
                c[2].parse().ok()?,
                Bytes::from(c[3].clone()),
            )))
        })
        .collect();
    out.sort_unstable_by_key(|m| m.id);
    Ok(out)
}

/// Parses a pub/sub payload: `{id} {time_ms} {topic}\n{body}`.
fn parse(payload: &[u8]) -> Option<Arc<Message>> {
    let nl = payload.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&payload[..nl]).ok()?;
    let mut parts = head.splitn(3, ' ');
    let id = parts.next()?.parse().ok()?;
    let ms = parts.next()?.parse().ok()?;
    let topic = TopicName::new(parts.next()?).ok()?;
    Some(Arc::new(Message::new(
        MessageId(id),
        topic,
        ms,
        Bytes::copy_from_slice(&payload[nl + 1..]),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_with_line_breaks_in_the_body() {
        let m = parse(b"42 1700000000000 farm.cow\nmoo\r\nmoo").unwrap();
        assert_eq!(m.id, MessageId(42));
        assert_eq!(m.time_ms, 1_700_000_000_000);
        assert_eq!(m.topic.as_str(), "farm.cow");
        assert_eq!(&m.body[..], b"moo\r\nmoo");
        assert!(parse(b"no newline").is_none());
        assert!(parse(b"x 1 t\nbody").is_none());
    }
}
