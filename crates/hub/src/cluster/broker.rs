//! Cluster mode's broker: every node receives every committed message from
//! each shard's pub/sub feed, merges the feeds into one id order, and feeds
//! its own fan-out.
//!
//! # Tasks
//!
//! One **feed** task per shard holds a dedicated pub/sub connection to the
//! shard's primary. It subscribes, tells the primary what this node saw
//! ([`scripts::RECONCILE`]: losses of a promoted replica become gaps), reads
//! the shard's `seq`, reports itself joined, then forwards what arrives, in
//! chunks of what is already buffered (up to [`CHUNK`]): messages
//! (`{id} {ms} {topic}\n{body}`) and ticks (`tick {seq}`). A `PING` every
//! [`PING_EVERY`] unanswered within the command timeout, or the stream
//! ending, is a break: the feed reports it, follows the primary if
//! Sentinel moved it, and reconnects with backoff ([`BACKOFF_MIN`] doubling
//! to [`BACKOFF_MAX`]).
//!
//! One **merger** task owns the order. Per shard it keeps a queue of
//! messages received and not yet delivered, and a mark: every message of
//! the shard up to the mark has been received (its feed passed it, or a
//! tick did). It delivers, in id order, every queued message at or below
//! the smallest mark, as one batch to [`Rings::deliver`]; when a message
//! waits on a shard whose mark is behind it, it asks that shard for a tick
//! ([`scripts::TICK`], with the waiting id as floor, one at a time per
//! shard). With one shard the mark is the last message received, and
//! nothing waits.
//!
//! # Breaks and the clean cut
//!
//! When any feed breaks, the merger marks the broker not ready (new
//! subscriptions get `503`), then interrupts every subscription (each is
//! told `unavailable` with its last id, and resumes from history), and
//! drops what it queued. When every feed has joined again, it seals a
//! cut: the largest of the shards' `seq` and every id this node saw; it
//! ticks every shard with the cut as floor (so that every later id of
//! every shard is above it) and waits for those ticks to come back through
//! the feeds. Then it raises the rings' high water to the cut and is ready:
//! subscriptions made from then on read history up to it
//! (`Rings::history_bound`) and live delivery above it. Nothing is lost at the seam and nothing is sent twice, whatever
//! the feeds missed while they were down.
//!
//! The tasks stop when the broker is dropped (the hub is gone).
//!
//! # Limits
//!
//! - The publisher's own node delivers its message when it comes back
//!   through pub/sub (and, with several shards, once the others' marks
//!   pass it: a tick's round trip when they are idle), so a fraction of a
//!   millisecond after the publish was answered. A shutdown in that
//!   instant ends a subscriber before the message: it is in history, and
//!   the subscriber gets it when it resumes with its last id.
//! - redis-rs buffers pub/sub messages in an unbounded channel between its
//!   connection task and the feed; the feed and the merger drain it
//!   without waiting on subscribers (the fan-out never blocks), and while
//!   a feed is down the merger drops what the others send (subscribers
//!   resume from history), so it stays short.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use redis::{Script, Value};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::shard::Shard;
use super::{scripts, Cluster, COMMAND_TIMEOUT};
use crate::broker::{Broker, Rings};
use crate::lock;
use crate::message::{Message, MessageId, TopicName};

/// Most pub/sub messages forwarded in one chunk (those already buffered).
pub const CHUNK: usize = 512;
/// How often a pub/sub connection is checked with a `PING`.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// How long a message may wait on another shard's mark before that shard
/// is asked for a tick (with one shard nothing ever waits).
pub const TICK_AFTER: Duration = Duration::from_millis(1);
/// First and largest pause between reconnection attempts.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The cluster broker handle (the hub holds it; dropping it stops the
/// tasks).
pub struct ClusterBroker {
    /// `Some(reason)` while not ready.
    status: Arc<Mutex<Option<String>>>,
    _stop: DropGuard,
}

impl ClusterBroker {
    /// Starts the feed and merger tasks for this node's `rings`. `floor`
    /// is the largest id this node saw (shared with the store). Must be
    /// called inside a tokio runtime.
    pub(crate) fn start(cluster: Cluster, rings: Rings, floor: Arc<AtomicU64>) -> ClusterBroker {
        let stop = CancellationToken::new();
        let status = Arc::new(Mutex::new(Some("connecting to redis pub/sub".to_string())));
        let (tx, rx) = mpsc::unbounded_channel();
        for shard in cluster.shards.iter() {
            shard.health.set_pubsub(Some("connecting".into()));
            tokio::spawn(feed(shard.clone(), tx.clone(), floor.clone(), stop.clone()));
        }
        let merger = Merger::new(cluster.clone(), rings, floor, status.clone(), tx);
        tokio::spawn(merger.run(rx, stop.clone()));
        ClusterBroker {
            status,
            _stop: stop.drop_guard(),
        }
    }
}

impl Broker for ClusterBroker {
    fn committed(&self, _batch: &[Arc<Message>]) {
        // Delivered through Redis pub/sub instead (see the module docs).
    }

    fn ready(&self) -> Result<(), String> {
        match &*lock(&self.status) {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }
}

/// What the feed tasks tell the merger.
enum Feed {
    /// Subscribed (and reconciled); the shard's `seq` read after.
    Joined { shard: usize, seq: u64 },
    /// Messages and ticks, in the shard's order.
    Chunk { shard: usize, items: Vec<Item> },
    /// The feed broke.
    Lost { shard: usize, reason: String },
    /// A tick asked for could not be sent.
    TickFailed { shard: usize },
}

enum Item {
    Message(Arc<Message>),
    Tick(u64),
    /// A node recorded messages lost with an old primary (`lost {n}`).
    Lost,
}

// ---------------------------------------------------------------- feeds

async fn feed(
    shard: Arc<Shard>,
    tx: mpsc::UnboundedSender<Feed>,
    floor: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let reconcile = Script::new(scripts::RECONCILE);
    loop {
        let reason = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(&shard, &tx, &floor, &reconcile, &mut backoff) => r,
        };
        // The store stops using this primary's connection at once.
        shard.uninstall();
        let reason = shard.redact(&reason);
        tracing::warn!(shard = shard.index, redis = %shard.shown, reason = %reason, retry_in = ?backoff, "redis pub/sub lost; reconnecting");
        shard.health.set_pubsub(Some(reason.clone()));
        if tx
            .send(Feed::Lost {
                shard: shard.index,
                reason,
            })
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One pub/sub connection: subscribe, reconcile, join, forward until it
/// breaks. Returns why it broke.
async fn session(
    shard: &Arc<Shard>,
    tx: &mpsc::UnboundedSender<Feed>,
    floor: &AtomicU64,
    reconcile: &Script,
    backoff: &mut Duration,
) -> String {
    // The primary as of now (with Sentinel: where the sentinels say).
    let link = match shard.open().await {
        Ok(link) => link,
        Err(e) => return format!("cannot connect: {e}"),
    };
    let channel = shard.keys.channel.clone();
    let connect = async {
        let mut pubsub = link.client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = match tokio::time::timeout(COMMAND_TIMEOUT, connect).await {
        Err(_) => return format!("subscribe: no answer within {COMMAND_TIMEOUT:?}"),
        Ok(Err(e)) => return format!("cannot subscribe: {e}"),
        Ok(Ok(p)) => p,
    };
    // What this node saw, against what this primary holds.
    let known = shard.known();
    let floor_now = floor.load(Ordering::Acquire).to_string();
    let pairs: Vec<(&str, String)> = known
        .iter()
        .map(|(t, id)| (t.as_str(), id.to_string()))
        .collect();
    let mut args: Vec<&[u8]> = vec![
        floor_now.as_bytes(),
        shard.keys.stream_prefix.as_bytes(),
        shard.keys.channel.as_bytes(),
    ];
    for (t, id) in &pairs {
        args.push(t.as_bytes());
        args.push(id.as_bytes());
    }
    let k = &shard.keys;
    match shard
        .run_on(
            &link,
            reconcile,
            &[&k.seq, &k.topics, &k.dropped, &k.last, &k.forgotten],
            &args,
        )
        .await
    {
        Ok(Value::Int(lost)) if lost > 0 => {
            tracing::warn!(shard = shard.index, redis = %shard.shown, topics = lost, "this redis lacks messages this node saw (a failover lost them); recorded as gaps for resuming subscribers");
        }
        Ok(_) => {}
        Err(e) => return format!("reconcile: {e}"),
    }
    let mut m = link.conn.clone();
    let seq = match tokio::time::timeout(
        COMMAND_TIMEOUT,
        redis::cmd("GET")
            .arg(&k.seq)
            .query_async::<Option<u64>>(&mut m),
    )
    .await
    {
        Ok(Ok(seq)) => seq.unwrap_or(0),
        Ok(Err(e)) => return format!("reading seq: {e}"),
        Err(_) => return format!("reading seq: no answer within {COMMAND_TIMEOUT:?}"),
    };
    let at = link.addr.clone();
    shard.install(link);
    shard.health.set_pubsub(None);
    *backoff = BACKOFF_MIN;
    tracing::info!(shard = shard.index, redis = %shard.shown, %at, "redis pub/sub subscribed");
    if tx
        .send(Feed::Joined {
            shard: shard.index,
            seq,
        })
        .is_err()
    {
        return "stopping".into();
    }

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
                let items: Vec<Item> = msgs.iter().filter_map(|m| parse(m.get_payload_bytes())).collect();
                if tx.send(Feed::Chunk { shard: shard.index, items }).is_err() {
                    return "stopping".into();
                }
            }
            _ = shard.broken() => return "a command found the connection broken".into(),
            _ = ping.tick() => {
                match tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<Value>()).await {
                    Err(_) => return format!("ping: no answer within {COMMAND_TIMEOUT:?}"),
                    Ok(Err(e)) => return format!("ping failed: {e}"),
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

/// Parses a pub/sub payload: `{id} {time_ms} {topic}\n{body}`, or
/// `tick {seq}`.
fn parse(payload: &[u8]) -> Option<Item> {
    if payload.starts_with(b"lost ") {
        return Some(Item::Lost);
    }
    if let Some(rest) = payload.strip_prefix(b"tick ") {
        return Some(Item::Tick(std::str::from_utf8(rest).ok()?.parse().ok()?));
    }
    let nl = payload.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&payload[..nl]).ok()?;
    let mut parts = head.splitn(3, ' ');
    let id = parts.next()?.parse().ok()?;
    let ms = parts.next()?.parse().ok()?;
    let topic = TopicName::new(parts.next()?).ok()?;
    Some(Item::Message(Arc::new(Message::new(
        MessageId(id),
        topic,
        ms,
        Bytes::copy_from_slice(&payload[nl + 1..]),
    ))))
}

// ---------------------------------------------------------------- merger

/// Where the merger is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Some feed is not joined.
    Down,
    /// Every feed joined; waiting for every mark to reach `cut`.
    Sealing { cut: u64 },
    /// Delivering.
    Live,
}

struct ShardState {
    joined: bool,
    queue: VecDeque<Arc<Message>>,
    /// Every message of the shard up to here has been received.
    mark: u64,
    /// A tick asked for with this floor, not back yet, and when.
    tick: Option<(u64, std::time::Instant)>,
}

struct Merger {
    cluster: Cluster,
    rings: Rings,
    floor: Arc<AtomicU64>,
    status: Arc<Mutex<Option<String>>>,
    tx: mpsc::UnboundedSender<Feed>,
    shards: Vec<ShardState>,
    phase: Phase,
    /// Largest id delivered (or declared so at a cut).
    delivered: u64,
    /// The smallest queued message's id, and since when it has waited on
    /// another shard's mark.
    /// Whether its ticks were asked for.
    waiting_since: Option<(u64, std::time::Instant, bool)>,
    tick_script: Arc<Script>,
}

impl Merger {
    fn new(
        cluster: Cluster,
        rings: Rings,
        floor: Arc<AtomicU64>,
        status: Arc<Mutex<Option<String>>>,
        tx: mpsc::UnboundedSender<Feed>,
    ) -> Merger {
        let shards = (0..cluster.len())
            .map(|_| ShardState {
                joined: false,
                queue: VecDeque::new(),
                mark: 0,
                tick: None,
            })
            .collect();
        Merger {
            cluster,
            rings,
            floor,
            status,
            tx,
            shards,
            phase: Phase::Down,
            delivered: 0,
            waiting_since: None,
            tick_script: Arc::new(Script::new(scripts::TICK)),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Feed>, stop: CancellationToken) {
        let mut check = tokio::time::interval(COMMAND_TIMEOUT / 4);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = self.tick_due();
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                f = rx.recv() => match f { Some(f) => f, None => return },
                _ = check.tick() => {
                    self.check_ticks();
                    continue;
                }
                _ = async {
                    match due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.advance();
                    continue;
                }
            };
            self.handle(first);
            // Take what else is already waiting before delivering.
            while let Ok(f) = rx.try_recv() {
                self.handle(f);
            }
            self.advance();
        }
    }

    fn set_status(&self, status: Option<String>) {
        *lock(&self.status) = status;
    }

    fn handle(&mut self, feed: Feed) {
        match feed {
            Feed::Lost { shard, reason } => {
                let why = format!(
                    "redis shard {shard} ({}): pub/sub lost: {reason}",
                    self.cluster.shards[shard].shown
                );
                // Not ready first, then interrupt: a subscription made in
                // between is refused, one made before is told.
                self.set_status(Some(why.clone()));
                if self.phase != Phase::Down {
                    self.rings.interrupt(&why);
                }
                self.phase = Phase::Down;
                self.waiting_since = None;
                let st = &mut self.shards[shard];
                st.joined = false;
                for st in &mut self.shards {
                    st.queue.clear();
                    st.tick = None;
                }
            }
            Feed::Joined { shard, seq } => {
                let st = &mut self.shards[shard];
                st.joined = true;
                st.mark = seq;
                st.queue.clear();
                st.tick = None;
                if self.phase == Phase::Down && self.shards.iter().all(|s| s.joined) {
                    let cut = self
                        .shards
                        .iter()
                        .map(|s| s.mark)
                        .max()
                        .unwrap_or(0)
                        .max(self.floor.load(Ordering::Acquire))
                        .max(self.delivered);
                    self.phase = Phase::Sealing { cut };
                    self.set_status(Some("joining the redis pub/sub feeds".into()));
                    for i in 0..self.shards.len() {
                        self.ask_tick(i, cut);
                    }
                }
            }
            Feed::Chunk { shard, items } => {
                let live = self.phase != Phase::Down;
                let mut lost = false;
                let st = &mut self.shards[shard];
                for item in items {
                    match item {
                        Item::Message(m) => {
                            st.mark = st.mark.max(m.id.0);
                            if live && m.id.0 > self.delivered {
                                st.queue.push_back(m);
                            }
                        }
                        Item::Tick(at) => st.mark = st.mark.max(at),
                        Item::Lost => lost = true,
                    }
                }
                if st.tick.is_some_and(|(f, _)| st.mark >= f) {
                    st.tick = None;
                }
                if lost && self.phase == Phase::Live {
                    // Still ready: the resumes will hear of the loss.
                    let why = format!(
                        "redis shard {shard} ({}): a failover lost messages; resume to be told which",
                        self.cluster.shards[shard].shown
                    );
                    tracing::warn!(%why, "interrupting subscriptions");
                    self.rings.interrupt(&why);
                }
            }
            Feed::TickFailed { shard } => {
                self.shards[shard].tick = None;
                // Ask again after another wait.
                self.waiting_since = None;
            }
        }
    }

    /// Seals a cut once every mark reached it; delivers what the marks
    /// allow; asks for ticks where a message waits.
    fn advance(&mut self) {
        if let Phase::Sealing { cut } = self.phase {
            if self.shards.iter().all(|s| s.mark >= cut) {
                for st in &mut self.shards {
                    st.queue.retain(|m| m.id.0 > cut);
                }
                self.delivered = cut;
                self.floor.fetch_max(cut, Ordering::AcqRel);
                self.rings.raise_high_water(MessageId(cut));
                self.phase = Phase::Live;
                self.set_status(None);
                tracing::info!(
                    cut,
                    shards = self.shards.len(),
                    "redis pub/sub feeds joined; delivering"
                );
            } else {
                for i in 0..self.shards.len() {
                    if self.shards[i].mark < cut && self.shards[i].tick.is_none() {
                        self.ask_tick(i, cut);
                    }
                }
                return;
            }
        }
        if self.phase != Phase::Live {
            return;
        }
        let watermark = self.shards.iter().map(|s| s.mark).min().unwrap_or(0);
        let mut batch = Vec::new();
        loop {
            // The shard whose next message is the smallest.
            let next = self
                .shards
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.queue.front().map(|m| (m.id, i)))
                .min();
            let Some((id, i)) = next else { break };
            if id.0 > watermark {
                break;
            }
            let m = self.shards[i].queue.pop_front().expect("peeked");
            batch.push(m);
            if batch.len() >= CHUNK {
                self.deliver(std::mem::take(&mut batch));
            }
        }
        self.deliver(batch);
        // A message waits on shards whose mark is behind it: ask them.
        let waiting = self
            .shards
            .iter()
            .filter_map(|s| s.queue.front().map(|m| m.id.0))
            .min();
        let Some(head) = waiting else {
            self.waiting_since = None;
            return;
        };
        // Under steady traffic the other shards' own messages move their
        // marks within a moment: ask for ticks only once the head has
        // waited [`TICK_AFTER`], so that ticks cost Redis work only where a
        // shard is quiet.
        let now = std::time::Instant::now();
        let since = match self.waiting_since {
            // The same message: once it has waited, every shard still
            // behind it with no tick on the way is asked (again: a tick
            // asked earlier for a smaller id may have come back below it).
            Some((id, since, _)) if id == head => since,
            _ => {
                self.waiting_since = Some((head, now, false));
                now
            }
        };
        if now.duration_since(since) < TICK_AFTER {
            return;
        }
        self.waiting_since = Some((head, since, true));
        for i in 0..self.shards.len() {
            if self.shards[i].mark < head && self.shards[i].tick.is_none() {
                self.ask_tick(i, head);
            }
        }
    }

    /// When [`advance`](Merger::advance) should look again at a waiting
    /// message, if one waits.
    fn tick_due(&self) -> Option<tokio::time::Instant> {
        match self.waiting_since {
            Some((_, since, false)) => Some(tokio::time::Instant::from_std(since + TICK_AFTER)),
            _ => None,
        }
    }

    fn deliver(&mut self, batch: Vec<Arc<Message>>) {
        let Some(last) = batch.last() else { return };
        let last = last.id.0;
        for m in &batch {
            self.cluster
                .shard_for(m.topic.as_str())
                .saw(&m.topic, m.id.0);
        }
        self.rings.deliver(&batch);
        self.delivered = last;
        self.floor.fetch_max(last, Ordering::AcqRel);
    }

    /// A tick that ran but never came back through the feed within the
    /// command timeout means the feed does not hear the primary the
    /// commands reach (an address that moved between the two
    /// connections): that shard reconnects both.
    fn check_ticks(&mut self) {
        for i in 0..self.shards.len() {
            if let Some((_, asked)) = self.shards[i].tick {
                if asked.elapsed() > COMMAND_TIMEOUT {
                    let shard = &self.cluster.shards[i];
                    tracing::warn!(shard = i, redis = %shard.shown, "a tick did not come back through pub/sub; reconnecting");
                    self.shards[i].tick = None;
                    shard.reconnect();
                }
            }
        }
    }

    /// Asks shard `i` to publish a tick at or above `floor`.
    fn ask_tick(&mut self, i: usize, floor: u64) {
        self.shards[i].tick = Some((floor, std::time::Instant::now()));
        let shard = self.cluster.shards[i].clone();
        let script = self.tick_script.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let k = &shard.keys;
            let floor = floor.to_string();
            let r = shard
                .run(
                    &script,
                    &[&k.seq],
                    &[floor.as_bytes(), k.channel.as_bytes()],
                )
                .await;
            if r.is_err() {
                // Not at once: a shard whose commands fail fast would spin.
                tokio::time::sleep(BACKOFF_MIN).await;
                let _ = tx.send(Feed::TickFailed { shard: shard.index });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_with_line_breaks_in_the_body() {
        let Some(Item::Message(m)) = parse(b"42 1700000000000 farm.cow\nmoo\r\nmoo") else {
            panic!("not a message");
        };
        assert_eq!(m.id, MessageId(42));
        assert_eq!(m.time_ms, 1_700_000_000_000);
        assert_eq!(m.topic.as_str(), "farm.cow");
        assert_eq!(&m.body[..], b"moo\r\nmoo");
        assert!(parse(b"no newline").is_none());
        assert!(parse(b"x 1 t\nbody").is_none());
        assert!(matches!(parse(b"tick 77"), Some(Item::Tick(77))));
        assert!(parse(b"tick x").is_none());
        assert!(matches!(parse(b"lost 2"), Some(Item::Lost)));
    }
}
