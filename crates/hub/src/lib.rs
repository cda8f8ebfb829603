//! The pub/sub hub of coop: the talk's streaming service (`GET /` streams,
//! `POST /?msg=` publishes), grown into a hub with topics, patterns, ids,
//! history, resume, four transports, slow-reader policy, auth and limits.
//!
//! # Layout
//!
//! - `message.rs`: ids, topic names, the shared immutable `Message`.
//! - `store/`: the [`store::Store`] trait (ids, history, retention) and the
//!   in-memory default; SQLite durability plugs in here.
//! - `broker/`: the [`broker::Broker`] trait (committed messages to every
//!   node's subscribers) and the in-process broker.
//! - `cluster/`: cluster mode, everything that talks to Redis: shards (by
//!   URL or Sentinel, following failovers), the scripts, the cluster store
//!   and broker (feeds merged into one id order), gap recording after a
//!   failover, URL redaction.
//! - `pattern.rs`: topic patterns (`farm.*`, `farm.**`): rules, limits,
//!   matching in time linear in the name, and whether claims cover a
//!   request (pattern against pattern) for `auth.rs`.
//! - `topic.rs`: live delivery in this process: per-topic rings of shared
//!   messages, subscriber cursors, pattern subscriptions, lag detection.
//! - `transport/`: raw, SSE, NDJSON and WebSocket encodings, and the
//!   WebSocket framing of the direct path.
//! - `subscriber.rs`: one subscriber's life (history, batches, heartbeats,
//!   lag, shutdown), shared by every transport.
//! - `budget.rs`: one byte budget for every message held in memory
//!   (history and rings), and eviction of the oldest at the limit.
//! - `history.rs`: a resuming subscriber's history, read a page at a
//!   time in id order across its topics.
//! - `hub.rs`: `Hub` (config, publish, open a subscription with history).
//! - `direct.rs`: streaming and WebSocket subscribers that own their
//!   socket (the fast path `coop serve` offers each new connection first).
//! - `origin.rs`: `Host` and `Origin` checks (DNS rebinding, cross-site
//!   publishes and WebSockets).
//! - `server.rs`: the HTTP routes; `auth.rs` (JWT), `limit.rs` (publish rate
//!   per client: IPv4 address or IPv6 /64, trusted proxies),
//!   `error.rs` (status codes).
//!
//! A publish: handler -> `Store::append` (id, history) -> `Broker::committed`
//! -> `Rings::deliver` (rings) -> each subscriber task wakes, takes all new
//! messages since its cursor, and writes them in one go.

pub mod auth;
pub mod broker;
pub mod budget;
pub mod clock;
pub mod cluster;
pub mod direct;
pub mod error;
pub mod history;
pub mod hub;
pub mod limit;
pub mod message;
pub mod origin;
pub mod pattern;
pub mod server;
pub mod store;
pub mod subscriber;
pub mod topic;
pub mod transport;

pub use direct::Takeover;

/// Locks a std mutex, ignoring poisoning: every lock in the hub guards
/// data that a panic cannot leave half-updated (single assignments, whole
/// entries pushed or popped), so after a panic elsewhere it keeps serving.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub use error::HubError;
pub use hub::{Backend, Config, Hub, OpenError, Storage};
pub use message::{Message, MessageId, TopicName};
pub use server::router;
