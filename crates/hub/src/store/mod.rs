//! The store: where messages get their ids and live as history.
//!
//! The hub never keeps history itself; it asks a [`Store`]. Three
//! implementations stand behind this one trait, chosen by configuration:
//! [`memory::MemoryStore`] (the default, no flags), SQLite (`--data-dir`,
//! `sqlite/`) and Redis (`--redis`, cluster mode: `cluster/store.rs`).
//!
//! # The contract, in the order a publish sees it
//!
//! 1. [`Store::append`] assigns the next [`MessageId`] (increasing hub-wide:
//!    across all topics of this hub, or of the whole cluster) and stores the
//!    message. Implementations may group concurrent appends into one commit
//!    (SQLite group commit, a Redis pipeline): the trait is async for that.
//! 2. Once the message is durable (for the memory store: once it is in the
//!    history), and **while the store still serialises commits** (under its
//!    lock, or from its single writer task), the store hands the committed
//!    batch to [`Broker::committed`](crate::broker::Broker::committed).
//!    Calls to `committed` must therefore come in id order, one at a time:
//!    that is what lets every subscriber see messages in id order, resume
//!    from one id with no gap and no duplicate, and merge several topics.
//! 3. Only then does `append` resolve, and the hub answer the publisher
//!    (`ok`). An answered publish is in history; a failed append answers 503
//!    and must not have been handed to the broker.
//!
//! # Reading
//!
//! [`Store::read`] returns a topic's retained messages with id greater than
//! `after`, ascending, and `dropped_through`: the largest id this topic has
//! lost to retention (count or age). A subscriber resuming after id `N` with
//! `N < dropped_through` has missed messages, and is told so (the gap
//! notice). This is sharper than "the oldest held id": ids are hub-wide, so
//! a topic's oldest held id can be far above `N` without anything of this
//! topic having been lost.
//!
//! # Retention
//!
//! [`Retention`] caps each topic's history by count (applied on append) and
//! by age (applied by [`Store::prune`], which the hub calls every second or
//! so). Topics whose history becomes empty are forgotten.

pub mod memory;
pub mod sqlite;

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::message::{Message, MessageId, TopicName};
use std::sync::Arc;

/// How much history each topic keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most messages kept per topic (`--history`, default 1000). 0 keeps
    /// none: messages are still delivered live, and `?since=` then always
    /// reports a gap if anything was missed.
    pub max_count: usize,
    /// Oldest message kept (`--history-ttl`); `None` keeps by count only.
    pub max_age: Option<Duration>,
    /// The clock ages are measured on (and message times read from).
    pub clock: crate::clock::Clock,
}

impl Retention {
    /// With an age limit: the time (Unix microseconds on this retention's
    /// clock) before which messages are too old to keep.
    pub fn age_cutoff_us(&self) -> Option<u64> {
        let max_age = self.max_age?;
        Some(
            self.clock
                .now_us()
                .saturating_sub(max_age.as_micros() as u64),
        )
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 1000,
            max_age: None,
            clock: crate::clock::Clock::system(),
        }
    }
}

/// A topic's retained history after some id.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Messages with id greater than the `after` asked for, ascending.
    pub messages: Vec<Arc<Message>>,
    /// The largest id of this topic removed by retention, if any was.
    pub dropped_through: Option<MessageId>,
}

/// What `/api/topics` reports about one topic's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicStats {
    /// Id of the newest message, if the topic has ever had one retained.
    pub last_id: Option<MessageId>,
    /// Id of the oldest message still held.
    pub oldest_id: Option<MessageId>,
    /// Messages held.
    pub len: usize,
}

/// Errors of a store. The hub answers `503` with this text on publish and
/// ends the subscription with it on read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot take writes or serve reads right now (disk full,
    /// Redis unreachable, ...). Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refuses a new topic (too many topics held).
    #[error("too many topics (at most {0})")]
    TooManyTopics(usize),
    /// The store is shutting down or was closed.
    #[error("store closed")]
    Closed,
}

// ANCHOR: store_trait
/// Assigns ids, keeps history, enforces retention. See the module docs for
/// the ordering contract every implementation must keep.
///
/// Object-safe (`Arc<dyn Store>`): methods return boxed futures.
pub trait Store: Send + Sync + 'static {
    /// Assigns an id to a new message on `topic`, stores it, hands it to the
    /// broker in id order, and resolves once it is durable. `body` is UTF-8.
    fn append(
        &self,
        topic: TopicName,
        body: Bytes,
    ) -> BoxFuture<'_, Result<Arc<Message>, StoreError>>;

    /// At most `limit` retained messages of `topic` with id `> after` (from
    /// the oldest retained one when `after` is `None`), ascending, with
    /// `dropped_through`. Subscribers read history in pages of this kind,
    /// so that what one of them holds does not grow with the history.
    fn read_page(
        &self,
        topic: &TopicName,
        after: Option<MessageId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, StoreError>>;

    /// Every retained message of `topic` after `after` (a page without a
    /// limit: for tests and tools, never for a client's request).
    fn read(
        &self,
        topic: &TopicName,
        after: Option<MessageId>,
    ) -> BoxFuture<'_, Result<History, StoreError>> {
        self.read_page(topic, after, usize::MAX)
    }

    /// Drops `msg`, and anything older of its topic, from the history held
    /// in memory: the memory budget is full and `msg` is the oldest message
    /// charged to it (`budget.rs`). Records `dropped_through` as retention
    /// does, so resumers hear of the gap. Stores whose history is not in
    /// this process's memory (SQLite, Redis) hold nothing to evict.
    fn evict(&self, msg: &Message) {
        let _ = msg;
    }

    /// Stats of one topic; `None` when the store holds nothing for it.
    fn stats(&self, topic: &TopicName) -> BoxFuture<'_, Result<Option<TopicStats>, StoreError>>;

    /// Every topic the store holds, with stats, sorted by name.
    fn topics(&self) -> BoxFuture<'_, Result<Vec<(TopicName, TopicStats)>, StoreError>>;

    /// Applies age retention now; returns how many messages were dropped.
    /// Called periodically by the hub; cheap when nothing expired.
    fn prune(&self) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// The last id assigned hub-wide (for `/api/topics`); `None` if none yet.
    fn last_id(&self) -> Option<MessageId>;

    /// Flushes and stops taking appends (graceful shutdown). Appends after
    /// this fail with [`StoreError::Closed`]. Default: nothing to flush.
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// `Err(reason)` when the backend is unhealthy (for `/healthz`).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
// ANCHOR_END: store_trait
