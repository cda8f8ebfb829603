//! Live delivery inside one process: per-topic rings of shared messages,
//! subscriber cursors, and pattern subscriptions.
//!
//! # Design
//!
//! Each topic that has subscribers owns a [`Ring`]: the last `capacity`
//! messages delivered on it, as `Arc<Message>` (the payload and its encodings
//! are shared by every subscriber). A subscriber does not get its own queue;
//! it keeps a *cursor* (a position in each ring it reads) and a signal (a
//! flag and a waker). Delivering a message pushes one `Arc` into the ring and wakes the
//! subscribers; each subscriber task, when it runs, takes **everything** new
//! since its cursor and writes it in one go. That gives natural batching
//! under load (one write per wake-up, not per message), costs the publisher
//! one push and one wake per subscriber, and bounds memory by the ring
//! capacity whatever the readers do.
//!
//! The ring capacity is the per-subscriber buffer: a subscriber whose cursor
//! falls off the start of a ring has lagged by more than `capacity` messages;
//! it is told the last id it got ([`Lagged`]) and disconnected, and can
//! resume from history. It never slows the publisher or other readers.
//!
//! # Ordering
//!
//! [`Rings::deliver`] is called in id order, one batch at a time (the store
//! and broker guarantee it). After pushing a batch it raises the *high-water
//! mark* (the largest id delivered), then wakes subscribers. A subscriber
//! reading several rings takes only ids up to the high-water mark it read
//! first, and sorts by id: since every id below the mark is already in its
//! ring, a multi-topic or pattern subscriber sees ids strictly increasing,
//! which makes one `Last-Event-ID` exact for all of its topics.
//!
//! # Lifetime
//!
//! A ring exists while a topic has subscribers (or a matching pattern
//! subscriber): the last subscriber to leave removes it. Pattern subscribers
//! are attached to every existing matching ring, and to each ring created
//! later (the first message to a matching topic creates its ring).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::task::AtomicWaker;
use std::task::Poll;

use crate::budget::Budget;
use crate::lock;
use crate::message::{Message, MessageId, TopicName};
use crate::pattern::Pattern;

/// Cheap-to-clone handle on this process's live delivery (all rings). The
/// broker feeds it; subscriptions read from it.
#[derive(Clone)]
pub struct Rings {
    inner: Arc<Registry>,
}

struct Registry {
    /// Rings of topics that have subscribers. Lock order: `topics`, then
    /// `patterns`, then a ring's `state`.
    topics: Mutex<HashMap<TopicName, Arc<Ring>>>,
    /// Live pattern subscriptions, to attach to rings created later.
    patterns: Mutex<Vec<(Pattern, Weak<SubShared>)>>,
    /// Largest id delivered so far (see "Ordering" above).
    high_water: AtomicU64,
    /// Largest id whose delivery has begun: raised before a batch is
    /// pushed (the high water is raised after). A subscription made now
    /// will find every larger id in its rings, so history is read up to
    /// this and no further ([`Rings::history_bound`]).
    begun: AtomicU64,
    /// Bumped by [`Rings::interrupt`]: a subscription made under an older
    /// value is ended (its broker lost messages it may have needed).
    epoch: AtomicU64,
    /// Why the last interrupt happened, for the subscribers' notice.
    interrupted_why: Mutex<String>,
    /// Set by [`Rings::stop`]: the hub is shutting down.
    stopping: AtomicBool,
    /// Messages each ring keeps: the per-subscriber buffer.
    capacity: usize,
    /// Most rings at once (`--max-topics`): topics named by subscriptions
    /// count, so a request naming many unknown topics cannot create rings
    /// without bound.
    max_rings: usize,
    /// Most live patterns, all subscriptions together (`--max-patterns`):
    /// each topic's first message is matched against every one of them
    /// while the registry is locked, so their number bounds that work.
    max_patterns: usize,
    /// Every message pushed into a ring is charged here (`budget.rs`).
    budget: Arc<Budget>,
}

/// Why a subscription was refused (the hub answers `503` with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Its topics would take the rings past `--max-topics`.
    #[error("too many topics (at most {0}); retry later")]
    TooManyTopics(usize),
    /// Its patterns would take the hub's live patterns past
    /// `--max-patterns`.
    #[error("too many pattern subscriptions (at most {0} patterns); retry later")]
    TooManyPatterns(usize),
}

/// One topic's recent messages and its subscribers.
pub(crate) struct Ring {
    name: TopicName,
    state: Mutex<RingState>,
}

struct RingState {
    buf: VecDeque<Arc<Message>>,
    /// Position (count of messages ever pushed) of `buf[0]`.
    first_pos: u64,
    /// Largest id pushed; a broker replaying after a reconnect may overlap,
    /// and ids at or below this are ignored.
    last_id: MessageId,
    /// Subscribers to wake. Delivery clones the `Arc` under the lock and
    /// wakes them after releasing it; joining and leaving mutate the list in
    /// place when no delivery holds it (`Arc::get_mut`), and copy it only
    /// otherwise, so 10,000 subscribers joining do not copy 50M pointers.
    subs: Arc<Vec<Arc<SubShared>>>,
}

impl RingState {
    fn end_pos(&self) -> u64 {
        self.first_pos + self.buf.len() as u64
    }
}

/// The part of a subscriber that rings and the registry point to.
pub(crate) struct SubShared {
    /// Raised on every delivery to one of its rings; see [`Signal`].
    signal: Signal,
    /// Rings attached by a pattern after the subscription started, with
    /// the position to read from; picked up by the subscriber on its next
    /// read. `has_pending` avoids taking this lock on every read.
    pending: Mutex<Vec<(Arc<Ring>, u64)>>,
    has_pending: AtomicBool,
}

/// "Something may be new for you": a flag and the waiting task's waker.
///
/// Raising it sets the flag and, only if it was clear, wakes the task; a
/// task that has not read since the last raise is not woken again. The
/// reader clears the flag *before* it reads the rings ([`Subscription::
/// next_batch`]) and registers its waker before looking at the flag
/// ([`Subscription::changed`]), so a raise is never lost: either the read
/// sees the message, or the flag is still set when the task looks, or the
/// task is woken.
///
/// Lighter than a `tokio::sync::Notify` per subscriber: no lock and no
/// waiter list to join and leave on every wait, which the fan-out of one
/// message to 10,000 subscribers pays 10,000 times.
struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    fn new() -> Signal {
        Signal {
            raised: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// A subscription was cut off: it fell more than the ring capacity behind,
/// or the broker feeding the rings was interrupted ([`Rings::interrupt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged {
    /// The last id it was given (resume after it), if any.
    pub last_id: Option<MessageId>,
    /// Which of the two.
    pub cause: Cut,
}

/// Why a subscription was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// It fell behind: messages left its rings before it read them.
    Behind,
    /// The broker lost its feed (cluster mode: a Redis connection broke):
    /// what this process delivers may now miss messages, so the
    /// subscriber is told to resume from history, which is exact.
    Interrupted,
}

impl Rings {
    /// A fan-out whose rings each keep `capacity` messages (at least 1),
    /// without limits on rings or bytes (tests and tools).
    pub fn new(capacity: usize) -> Rings {
        Rings::with_limits(capacity, usize::MAX, usize::MAX, Budget::new(usize::MAX))
    }

    /// A fan-out of at most `max_rings` rings of `capacity` messages and
    /// `max_patterns` live patterns, whose messages are charged to `budget`.
    pub fn with_limits(
        capacity: usize,
        max_rings: usize,
        max_patterns: usize,
        budget: Arc<Budget>,
    ) -> Rings {
        Rings {
            inner: Arc::new(Registry {
                topics: Mutex::new(HashMap::new()),
                patterns: Mutex::new(Vec::new()),
                high_water: AtomicU64::new(0),
                begun: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                interrupted_why: Mutex::new(String::new()),
                stopping: AtomicBool::new(false),
                capacity: capacity.max(1),
                max_rings,
                max_patterns,
                budget,
            }),
        }
    }

    /// The budget messages in rings are charged to.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.inner.budget
    }

    /// Drops `msg`, and anything older of its topic, from its ring: the
    /// memory budget is full and `msg` is the oldest message charged. A
    /// subscriber that had not read it yet lags (it is told its last id
    /// and disconnected on its next read, as when it falls off the ring).
    pub fn evict(&self, msg: &Message) {
        let ring = lock(&self.inner.topics).get(&msg.topic).cloned();
        let Some(ring) = ring else { return };
        let mut st = lock(&ring.state);
        while st.buf.front().is_some_and(|m| m.id <= msg.id) {
            st.buf.pop_front();
            st.first_pos += 1;
        }
    }

    /// Ends every current subscription with [`Cut::Interrupted`] and
    /// `why`: live delivery can no longer promise them every message
    /// (cluster mode's broker lost a Redis feed). Each is woken, told its
    /// last id, and resumes from history. Subscriptions made afterwards
    /// are not affected.
    pub fn interrupt(&self, why: &str) {
        *lock(&self.inner.interrupted_why) = why.to_string();
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.raise_all();
    }

    /// The hub is shutting down: every subscriber is woken and finds
    /// [`stopping`](Rings::stopping) set (subscribers made later find it
    /// set at once). One flag read per wake-up, rather than every waiting
    /// subscriber polling the shutdown token (a lock each time).
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.raise_all();
    }

    /// Whether [`stop`](Rings::stop) was called.
    pub fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Wakes every current subscriber.
    fn raise_all(&self) {
        let rings: Vec<Arc<Ring>> = lock(&self.inner.topics).values().cloned().collect();
        for ring in rings {
            let subs = lock(&ring.state).subs.clone();
            for sub in subs.iter() {
                sub.signal.raise();
            }
        }
        let patterns: Vec<Arc<SubShared>> = lock(&self.inner.patterns)
            .iter()
            .filter_map(|(_, w)| w.upgrade())
            .collect();
        for sub in patterns {
            sub.signal.raise();
        }
    }

    /// Why the last [`interrupt`](Rings::interrupt) happened.
    pub fn interrupted_why(&self) -> String {
        lock(&self.inner.interrupted_why).clone()
    }

    /// The largest id delivered (or declared delivered by
    /// [`raise_high_water`](Rings::raise_high_water)).
    pub fn high_water(&self) -> MessageId {
        MessageId(self.inner.high_water.load(Ordering::Acquire))
    }

    /// Declares everything up to `id` delivered, with nothing to deliver:
    /// a durable store's last id at start, or a broker starting from a
    /// clean cut (cluster mode, after an interruption, when no subscription
    /// is left to miss anything).
    pub fn raise_high_water(&self, id: MessageId) {
        self.inner.begun.fetch_max(id.0, Ordering::AcqRel);
        self.inner.high_water.fetch_max(id.0, Ordering::AcqRel);
    }

    /// Read after a subscription is registered: the id up to which its
    /// history must be read from the store, every larger id being on its
    /// way through its rings. (Reading history without this bound, topic
    /// after topic, could take a message of a later topic and skip an
    /// older one of an earlier topic committed in between.)
    pub fn history_bound(&self) -> MessageId {
        MessageId(self.inner.begun.load(Ordering::Acquire))
    }

    /// Hands a committed batch to local subscribers. Must be called in id
    /// order, one batch at a time (the [`Broker`](crate::broker::Broker)
    /// contract). Never blocks on a subscriber.
    pub fn deliver(&self, batch: &[Arc<Message>]) {
        let Some(last) = batch.last() else { return };
        self.inner.begun.fetch_max(last.id.0, Ordering::AcqRel);
        let mut wake: Vec<Arc<Vec<Arc<SubShared>>>> = Vec::with_capacity(batch.len());
        for msg in batch {
            let Some(ring) = self.ring_for_delivery(&msg.topic) else {
                continue;
            };
            let mut st = lock(&ring.state);
            if msg.id <= st.last_id {
                continue;
            }
            st.last_id = msg.id;
            self.inner.budget.charge(msg);
            st.buf.push_back(msg.clone());
            if st.buf.len() > self.inner.capacity {
                st.buf.pop_front();
                st.first_pos += 1;
            }
            if !st.subs.is_empty() && !wake.iter().any(|w| Arc::ptr_eq(w, &st.subs)) {
                wake.push(st.subs.clone());
            }
        }
        self.inner.high_water.fetch_max(last.id.0, Ordering::AcqRel);
        for subs in wake {
            for sub in subs.iter() {
                sub.signal.raise();
            }
        }
    }

    /// The ring for `topic`, creating it if a pattern subscriber wants it.
    fn ring_for_delivery(&self, topic: &TopicName) -> Option<Arc<Ring>> {
        let mut topics = lock(&self.inner.topics);
        if let Some(ring) = topics.get(topic) {
            return Some(ring.clone());
        }
        let ring = self.new_ring(topic);
        if lock(&ring.state).subs.is_empty() {
            return None;
        }
        topics.insert(topic.clone(), ring.clone());
        Some(ring)
    }

    /// A new ring for `topic`, with every live pattern subscriber that
    /// matches it already attached (they pick it up from `pending` and read
    /// it from its first message). Called with `topics` locked: the work
    /// under the lock is one match per live pattern (at most
    /// `--max-patterns`), each linear in the topic (at most 128 bytes)
    /// whatever the pattern (`pattern.rs`): bounded, and no pattern a
    /// client writes can make one match slow.
    fn new_ring(&self, topic: &TopicName) -> Arc<Ring> {
        let patterns = lock(&self.inner.patterns);
        let wanting: Vec<Arc<SubShared>> = patterns
            .iter()
            .filter(|(p, _)| p.matches(topic.as_str()))
            .filter_map(|(_, w)| w.upgrade())
            .collect();
        let ring = Arc::new(Ring {
            name: topic.clone(),
            state: Mutex::new(RingState {
                buf: VecDeque::new(),
                first_pos: 0,
                last_id: MessageId(0),
                subs: Arc::new(wanting.clone()),
            }),
        });
        for sub in &wanting {
            lock(&sub.pending).push((ring.clone(), 0));
            sub.has_pending.store(true, Ordering::Release);
        }
        ring
    }

    /// Subscribes to `topics` and `patterns`, starting after everything
    /// delivered so far. Unsubscribes when the [`Subscription`] drops.
    /// Refused, changing nothing, past `--max-topics` or `--max-patterns`.
    ///
    /// Matching patterns against the existing rings grows with the
    /// client's input, so it runs after the registry lock is released: the
    /// patterns are registered and the rings' positions noted under the
    /// lock (rings created later reach this subscriber through
    /// `pending`), then the matching rings are attached at the noted
    /// positions, so nothing delivered in between is missed.
    pub fn subscribe(
        &self,
        topics: &[TopicName],
        patterns: &[Pattern],
    ) -> Result<Subscription, Refused> {
        let shared = Arc::new(SubShared {
            signal: Signal::new(),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
        });
        let mut cursors = Vec::new();
        // Read before registering: an interrupt from here on ends this
        // subscription too.
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let mut map = lock(&self.inner.topics);
        let new_rings = topics.iter().filter(|t| !map.contains_key(*t)).count();
        if map.len().saturating_add(new_rings) > self.inner.max_rings {
            return Err(Refused::TooManyTopics(self.inner.max_rings));
        }
        let mut snapshot = Vec::new();
        if !patterns.is_empty() {
            let mut pats = lock(&self.inner.patterns);
            pats.retain(|(_, w)| w.strong_count() > 0);
            if pats.len().saturating_add(patterns.len()) > self.inner.max_patterns {
                return Err(Refused::TooManyPatterns(self.inner.max_patterns));
            }
            for p in patterns {
                pats.push((p.clone(), Arc::downgrade(&shared)));
            }
            drop(pats);
            snapshot = map
                .values()
                .map(|ring| (ring.clone(), lock(&ring.state).end_pos()))
                .collect();
        }
        for name in topics {
            let ring = match map.get(name) {
                Some(ring) => ring.clone(),
                None => {
                    let ring = self.new_ring(name);
                    map.insert(name.clone(), ring.clone());
                    ring
                }
            };
            let pos = lock(&ring.state).end_pos();
            attach(&shared, &ring, pos, &mut cursors);
        }
        drop(map);
        for (ring, pos) in snapshot {
            if patterns.iter().any(|p| p.matches(ring.name.as_str())) {
                attach(&shared, &ring, pos, &mut cursors);
            }
        }
        if !patterns.is_empty() {
            // Something may have been delivered to a ring between the
            // snapshot and its attach, with nobody to wake this reader.
            shared.signal.raise();
        }
        Ok(Subscription {
            rings: self.clone(),
            shared,
            cursors,
            has_patterns: !patterns.is_empty(),
            last_id: None,
            epoch,
        })
    }

    /// Current subscribers of `topic` (direct and by pattern).
    pub fn subscribers(&self, topic: &TopicName) -> usize {
        let ring = lock(&self.inner.topics).get(topic).cloned();
        ring.map_or(0, |r| lock(&r.state).subs.len())
    }

    /// Topics that currently have a ring (that is, subscribers).
    pub fn live_topics(&self) -> Vec<(TopicName, usize)> {
        let rings: Vec<Arc<Ring>> = lock(&self.inner.topics).values().cloned().collect();
        rings
            .iter()
            .map(|r| (r.name.clone(), lock(&r.state).subs.len()))
            .collect()
    }

    fn unsubscribe(&self, shared: &Arc<SubShared>, rings: impl Iterator<Item = Arc<Ring>>) {
        let mut map = lock(&self.inner.topics);
        for ring in rings {
            let mut st = lock(&ring.state);
            match Arc::get_mut(&mut st.subs) {
                Some(subs) => {
                    if let Some(i) = subs.iter().position(|s| Arc::ptr_eq(s, shared)) {
                        subs.swap_remove(i);
                    }
                }
                None => {
                    let subs: Vec<_> = st
                        .subs
                        .iter()
                        .filter(|s| !Arc::ptr_eq(s, shared))
                        .cloned()
                        .collect();
                    st.subs = Arc::new(subs);
                }
            }
            // Joining also takes `topics` first, so nobody can be attaching
            // to this ring while we decide to drop it.
            if st.subs.is_empty() && map.get(&ring.name).is_some_and(|r| Arc::ptr_eq(r, &ring)) {
                map.remove(&ring.name);
            }
        }
    }
}

/// Bytes of message bodies one [`Subscription::next_batch`] takes at most
/// (beyond its first message): what a subscriber holds between the rings
/// and its socket. Matches the transports' largest write.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Adds `shared` to `ring`'s subscribers, reading from ring position `pos`
/// (unless this subscription reads that ring already).
fn attach(shared: &Arc<SubShared>, ring: &Arc<Ring>, pos: u64, cursors: &mut Vec<Cursor>) {
    if cursors.iter().any(|c| Arc::ptr_eq(&c.ring, ring)) {
        return;
    }
    let mut st = lock(&ring.state);
    match Arc::get_mut(&mut st.subs) {
        // Usual case: no delivery holds the list right now.
        Some(subs) => subs.push(shared.clone()),
        None => {
            let mut subs = Vec::with_capacity(st.subs.len() + 1);
            subs.extend(st.subs.iter().cloned());
            subs.push(shared.clone());
            st.subs = Arc::new(subs);
        }
    }
    cursors.push(Cursor {
        ring: ring.clone(),
        pos,
    });
}

struct Cursor {
    ring: Arc<Ring>,
    /// Next ring position to read.
    pos: u64,
}

impl Cursor {
    /// Index in `st.buf` of the next message to read; `None` when the ring
    /// has moved past it (the reader lagged).
    fn offset(&self, st: &RingState) -> Option<usize> {
        self.pos.checked_sub(st.first_pos).map(|d| d as usize)
    }
}

/// One subscriber's view of its rings. Owned by the subscriber's task;
/// dropping it unsubscribes (the talk's context manager).
pub struct Subscription {
    rings: Rings,
    shared: Arc<SubShared>,
    cursors: Vec<Cursor>,
    has_patterns: bool,
    /// The last id handed out by [`Subscription::next_batch`] (or set by
    /// [`Subscription::skip_through`] after sending history). Nothing at or
    /// below it is returned again.
    last_id: Option<MessageId>,
    /// The registry's interrupt epoch when this subscription was made.
    epoch: u64,
}

impl Subscription {
    /// Waits until something may have been delivered since the last read.
    /// Spurious wake-ups are possible; read with `next_batch`.
    pub async fn changed(&self) {
        let signal = &self.shared.signal;
        std::future::poll_fn(|cx| {
            if signal.raised.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            signal.waker.register(cx.waker());
            if signal.raised.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Marks everything up to `id` as already sent (history was sent up to
    /// it): the seam between history and live delivery.
    pub fn skip_through(&mut self, id: MessageId) {
        self.last_id = self.last_id.max(Some(id));
    }

    /// The last id this subscription handed out.
    pub fn last_id(&self) -> Option<MessageId> {
        self.last_id
    }

    /// Appends to `out` the messages delivered since the last call, in id
    /// order, with ids above `last_id`: all of them, up to [`BATCH_BYTES`]
    /// of bodies (at least one message). What is left stays in the rings
    /// for the next call, so a subscriber stalled on a slow socket holds at
    /// most one batch beyond the memory budget, and is cut off (lagged)
    /// once the rings move on. `Err(Lagged)` when a ring has moved past
    /// this subscriber's cursor: messages were lost to it.
    pub fn next_batch(&mut self, out: &mut Vec<Arc<Message>>) -> Result<(), Lagged> {
        // Cleared before reading: a raise from here on is for something
        // this read may not see, and wakes `changed` (see `Signal`).
        self.shared.signal.raised.swap(false, Ordering::AcqRel);
        if self.has_patterns && self.shared.has_pending.swap(false, Ordering::AcqRel) {
            for (ring, pos) in lock(&self.shared.pending).drain(..) {
                if !self.cursors.iter().any(|c| Arc::ptr_eq(&c.ring, &ring)) {
                    self.cursors.push(Cursor { ring, pos });
                }
            }
        }
        if self.rings.inner.epoch.load(Ordering::Acquire) != self.epoch {
            return Err(Lagged {
                last_id: self.last_id,
                cause: Cut::Interrupted,
            });
        }
        let high_water = MessageId(self.rings.inner.high_water.load(Ordering::Acquire));
        let floor = self.last_id.unwrap_or(MessageId(0));
        let lagged = Lagged {
            last_id: self.last_id,
            cause: Cut::Behind,
        };
        let start = out.len();
        if let [cursor] = &mut self.cursors[..] {
            // One ring (the usual case): its order is the id order.
            let st = lock(&cursor.ring.state);
            let from = cursor.offset(&st).ok_or(lagged)?;
            let mut bytes = 0;
            for msg in st.buf.range(from..) {
                if msg.id > high_water || (bytes >= BATCH_BYTES && out.len() > start) {
                    break;
                }
                cursor.pos += 1;
                if msg.id > floor {
                    bytes += msg.body.len();
                    out.push(msg.clone());
                }
            }
        } else {
            // Several rings: take each one's candidates (up to the byte
            // bound), merge by id, keep the smallest up to the bound, and
            // advance each cursor past exactly what was kept of its ring
            // (a prefix of it, since each ring is in id order).
            let mut taken: Vec<(Arc<Message>, usize)> = Vec::new();
            for (i, cursor) in self.cursors.iter_mut().enumerate() {
                let st = lock(&cursor.ring.state);
                let from = cursor.offset(&st).ok_or(lagged)?;
                let mut bytes = 0;
                let mut took = false;
                for msg in st.buf.range(from..) {
                    if msg.id > high_water || (bytes >= BATCH_BYTES && took) {
                        break;
                    }
                    if msg.id <= floor {
                        // Already sent (history seam, replay): skip for good.
                        if !took {
                            cursor.pos += 1;
                        }
                        continue;
                    }
                    bytes += msg.body.len();
                    took = true;
                    taken.push((msg.clone(), i));
                }
            }
            taken.sort_unstable_by_key(|(m, _)| m.id);
            let mut bytes = 0;
            for (msg, i) in taken {
                if bytes >= BATCH_BYTES && out.len() > start {
                    break;
                }
                bytes += msg.body.len();
                self.cursors[i].pos += 1;
                out.push(msg);
            }
        }
        if out.len() > start {
            self.last_id = out.last().map(|m| m.id);
        }
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut rings: Vec<Arc<Ring>> = self.cursors.drain(..).map(|c| c.ring).collect();
        rings.extend(lock(&self.shared.pending).drain(..).map(|(r, _)| r));
        if self.has_patterns {
            lock(&self.rings.inner.patterns)
                .retain(|(_, w)| !w.ptr_eq(&Arc::downgrade(&self.shared)));
        }
        self.rings.unsubscribe(&self.shared, rings.into_iter());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::now_ms;

    fn msg(id: u64, topic: &str) -> Arc<Message> {
        Arc::new(Message::new(
            MessageId(id),
            TopicName::new(topic).unwrap(),
            now_ms(),
            id.to_string().into(),
        ))
    }

    fn t(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    fn ids(v: &[Arc<Message>]) -> Vec<u64> {
        v.iter().map(|m| m.id.0).collect()
    }

    #[tokio::test]
    async fn a_subscriber_gets_batches_in_order_and_only_new_messages() {
        let rings = Rings::new(8);
        rings.deliver(&[msg(1, "a")]); // before subscribing: not seen
        let mut sub = rings.subscribe(&[t("a")], &[]).unwrap();
        rings.deliver(&[msg(2, "a"), msg(3, "b"), msg(4, "a")]);
        sub.changed().await;
        let mut out = Vec::new();
        sub.next_batch(&mut out).unwrap();
        assert_eq!(ids(&out), [2, 4]);
        assert_eq!(rings.subscribers(&t("a")), 1);
        drop(sub);
        assert_eq!(rings.subscribers(&t("a")), 0);
        assert!(rings.live_topics().is_empty(), "idle ring removed");
    }

    #[test]
    fn multi_topic_and_patterns_merge_by_id_including_new_topics() {
        let rings = Rings::new(8);
        let mut sub = rings
            .subscribe(&[t("x")], &[Pattern::new("farm.*").unwrap()])
            .unwrap();
        rings.deliver(&[
            msg(5, "farm.cow"),
            msg(6, "x"),
            msg(7, "farm.pig"),
            msg(8, "zoo"),
        ]);
        let mut out = Vec::new();
        sub.next_batch(&mut out).unwrap();
        assert_eq!(ids(&out), [5, 6, 7]);
    }

    #[test]
    fn a_reader_that_falls_off_the_ring_lags_with_its_last_id() {
        let rings = Rings::new(4);
        let mut slow = rings.subscribe(&[t("a")], &[]).unwrap();
        let mut fast = rings.subscribe(&[t("a")], &[]).unwrap();
        let mut out = Vec::new();
        rings.deliver(&[msg(1, "a")]);
        slow.next_batch(&mut out).unwrap();
        let mut got = Vec::new();
        for id in 2..=20 {
            rings.deliver(&[msg(id, "a")]);
            fast.next_batch(&mut got).unwrap();
        }
        assert_eq!(got.len(), 20);
        assert_eq!(
            slow.next_batch(&mut out),
            Err(Lagged {
                last_id: Some(MessageId(1)),
                cause: Cut::Behind,
            })
        );
    }

    #[test]
    fn the_history_seam_skips_what_was_already_sent_and_replays_are_ignored() {
        let rings = Rings::new(8);
        let mut sub = rings.subscribe(&[t("a")], &[]).unwrap();
        rings.deliver(&[msg(1, "a"), msg(2, "a")]);
        sub.skip_through(MessageId(1));
        rings.deliver(&[msg(2, "a"), msg(3, "a")]); // broker replay overlap
        let mut out = Vec::new();
        sub.next_batch(&mut out).unwrap();
        assert_eq!(ids(&out), [2, 3]);
    }

    fn big(id: u64, topic: &str) -> Arc<Message> {
        Arc::new(Message::new(
            MessageId(id),
            TopicName::new(topic).unwrap(),
            now_ms(),
            "x".repeat(BATCH_BYTES / 4).into(),
        ))
    }

    #[test]
    fn a_batch_stops_at_its_byte_bound_and_the_rest_waits_in_order() {
        let rings = Rings::new(64);
        let mut one = rings.subscribe(&[t("a")], &[]).unwrap();
        let mut two = rings.subscribe(&[t("a"), t("b")], &[]).unwrap();
        let batch: Vec<_> = (1..=20)
            .map(|id| big(id, if id % 3 == 0 { "b" } else { "a" }))
            .collect();
        rings.deliver(&batch);
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let mut out = Vec::new();
            two.next_batch(&mut out).unwrap();
            if out.is_empty() {
                break;
            }
            sizes.push(out.len());
            got.extend(ids(&out));
        }
        assert_eq!(got, (1..=20).collect::<Vec<_>>(), "all, once, in id order");
        assert!(
            sizes.iter().all(|&n| n <= 4),
            "batches of 64 KiB: {sizes:?}"
        );
        let mut out = Vec::new();
        one.next_batch(&mut out).unwrap();
        assert_eq!(ids(&out), [1, 2, 4, 5]);
    }

    #[test]
    fn eviction_makes_a_reader_that_had_not_read_it_lag() {
        let rings = Rings::new(64);
        let mut sub = rings.subscribe(&[t("a")], &[]).unwrap();
        rings.deliver(&[msg(1, "a"), msg(2, "a")]);
        let mut out = Vec::new();
        sub.next_batch(&mut out).unwrap();
        rings.deliver(&[msg(3, "a")]);
        rings.evict(&msg(3, "a"));
        assert_eq!(
            sub.next_batch(&mut out),
            Err(Lagged {
                last_id: Some(MessageId(2)),
                cause: Cut::Behind,
            })
        );
    }

    #[test]
    fn a_pattern_attaches_existing_rings_and_the_pattern_cap_refuses_more() {
        let rings = Rings::with_limits(16, 100, 2, Budget::new(usize::MAX));
        let _named = rings.subscribe(&[t("farm.cow")], &[]).unwrap();
        rings.deliver(&[msg(1, "farm.cow")]); // before: not seen
        let p = |s: &str| Pattern::new(s).unwrap();
        let mut sub = rings.subscribe(&[], &[p("farm.*")]).unwrap();
        rings.deliver(&[msg(2, "farm.cow"), msg(3, "farm.pig")]);
        let mut out = Vec::new();
        sub.next_batch(&mut out).unwrap();
        assert_eq!(ids(&out), [2, 3]);
        assert_eq!(
            rings.subscribe(&[], &[p("a.*"), p("b.*")]).err(),
            Some(Refused::TooManyPatterns(2))
        );
        drop(sub);
        assert!(rings.subscribe(&[], &[p("a.*"), p("b.*")]).is_ok());
    }
}
