//! One byte budget for every message the hub holds in memory (`--max-memory`).
//!
//! History (the memory store) and live delivery (each topic's ring) share
//! the same `Arc<Message>`s, so the budget counts *messages*, not
//! containers: the first container to hold a message charges it
//! ([`Budget::charge`]), each wire encoding built for it later is added to
//! the same charge, and the charge is released when the last `Arc` drops
//! (whoever held it: history, a ring, a subscriber's batch being written).
//! A message held by history and by a ring is counted once.
//!
//! # At the limit
//!
//! Charged messages are queued oldest first. When a publish finds the hub
//! over budget, the hub evicts the oldest messages (the queue's front) from
//! history *and* from the rings, until it is under budget again:
//!
//! - a subscriber resuming from before an evicted message is told so by the
//!   usual gap notice (the store records `dropped_through`, as count
//!   retention does);
//! - a live subscriber that had not read an evicted message yet has fallen
//!   behind: it gets the usual lagged notice with its last id and is
//!   disconnected, as when it falls off its ring.
//!
//! When nothing is left to evict and the hub is still over budget (the bytes
//! are held by batches being written to slow sockets, which release them as
//! they finish or are cut off), the publish is refused with `503` and a
//! reason; nothing that was answered is lost.
//!
//! Memory of the eviction queue itself: one `Weak` (8 bytes) per charged
//! message, and the queue is compacted (dead entries removed) whenever it
//! holds more than twice the live messages plus [`QUEUE_SLACK`]; the
//! compaction is amortised over at least that many charges.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::message::Message;

/// Bytes charged for a message besides its body and encodings: the
/// `Message` itself inside its `Arc`, a slot in a history deque and in a
/// ring, the eviction queue's `Weak`, and allocator rounding.
pub const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Message>() + 16 + 3 * 8 + 32;

/// Dead queue entries tolerated before a compaction, on top of twice the
/// live messages (so that a compaction is amortised over many charges).
const QUEUE_SLACK: usize = 1024;

/// The budget: a limit, what is charged now, and the eviction queue.
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Messages charged and not yet dropped.
    live: AtomicUsize,
    /// Charged messages, oldest first (a message's charge comes from the
    /// store's commit order or the fan-out's delivery order, so ids ascend
    /// within each topic). Entries whose message dropped are skipped.
    queue: Mutex<VecDeque<Weak<Message>>>,
}

/// What one message holds of a budget; released on drop (with the message).
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: AtomicUsize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(self.bytes.load(Ordering::Relaxed), Ordering::AcqRel);
        self.budget.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Charge {
    /// Adds `bytes` (an encoding built after the charge was taken).
    pub(crate) fn add(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.budget.used.fetch_add(bytes, Ordering::AcqRel);
    }
}

impl Budget {
    /// A budget of `limit` bytes (at least one message's overhead).
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit: limit.max(MESSAGE_OVERHEAD),
            used: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Messages charged now.
    pub fn messages(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Is more charged than the limit?
    pub fn over(&self) -> bool {
        self.used() > self.limit
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Weak<Message>>> {
        // The queue holds only `Weak`s; a panic while it was locked leaves
        // it valid.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Charges `msg` to this budget unless something charged it already.
    /// Cheap when it was (one atomic load).
    pub fn charge(self: &Arc<Self>, msg: &Arc<Message>) {
        if msg.charge.get().is_some() {
            return;
        }
        let bytes =
            MESSAGE_OVERHEAD + msg.body.len() + msg.topic.as_str().len() + msg.encoded_len();
        let charge = Charge {
            budget: self.clone(),
            bytes: AtomicUsize::new(bytes),
        };
        if msg.charge.set(charge).is_err() {
            // Charged concurrently by another container; the loser's
            // charge was never counted, and dropping it must not uncount.
            return;
        }
        self.used.fetch_add(bytes, Ordering::AcqRel);
        let live = self.live.fetch_add(1, Ordering::AcqRel) + 1;
        let mut queue = self.queue();
        queue.push_back(Arc::downgrade(msg));
        if queue.len() > 2 * live + QUEUE_SLACK {
            queue.retain(|w| w.strong_count() > 0);
        }
    }

    /// The oldest charged message still alive, taken off the queue.
    pub(crate) fn pop_oldest(&self) -> Option<Arc<Message>> {
        let mut queue = self.queue();
        while let Some(weak) = queue.pop_front() {
            if let Some(msg) = weak.upgrade() {
                return Some(msg);
            }
        }
        None
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .field("messages", &self.messages())
            .finish()
    }
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Charge")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{now_ms, MessageId, TopicName};
    use crate::transport::Encoding;

    fn msg(id: u64, body: &str) -> Arc<Message> {
        Arc::new(Message::new(
            MessageId(id),
            TopicName::new("t").unwrap(),
            now_ms(),
            body.to_owned().into(),
        ))
    }

    #[test]
    fn a_message_is_charged_once_and_released_when_its_last_arc_drops() {
        let budget = Budget::new(1 << 20);
        let m = msg(1, "hello");
        budget.charge(&m);
        budget.charge(&m); // a second container: no double count
        let one = MESSAGE_OVERHEAD + 5 + 1;
        assert_eq!(budget.used(), one);
        m.encoded(Encoding::Raw); // "hello\r\n"
        assert_eq!(budget.used(), one + 7);
        let shared = m.clone();
        drop(m);
        assert_eq!(budget.messages(), 1, "still held by another Arc");
        drop(shared);
        assert_eq!((budget.used(), budget.messages()), (0, 0));
    }

    #[test]
    fn the_queue_hands_out_the_oldest_live_message_and_stays_compact() {
        let budget = Budget::new(1 << 30);
        let keep = msg(1, "kept");
        budget.charge(&keep);
        for id in 2..10_000 {
            let m = msg(id, "gone");
            budget.charge(&m);
        }
        assert!(
            budget.queue().len() <= 2 + QUEUE_SLACK + 1,
            "dead entries are compacted away"
        );
        assert_eq!(budget.pop_oldest().map(|m| m.id), Some(MessageId(1)));
        assert!(budget.pop_oldest().is_none());
    }
}
