//! The broker: how committed messages reach the subscribers connected to
//! this process, wherever they were published.
//!
//! Locally subscribers are served from per-topic rings ([`Rings`], in
//! `topic.rs`). The broker's only job is to feed [`Rings::deliver`] with
//! every committed message **in id order, one batch at a time**:
//!
//! - [`local::LocalBroker`] (default, and with `--data-dir`): the store calls
//!   [`Broker::committed`] from inside its commit order; the local broker
//!   passes the batch straight to the fan-out.
//! - [`redis::RedisBroker`] (cluster mode): [`Broker::committed`] is a
//!   no-op; a task receives every node's messages from Redis pub/sub, in
//!   the order Redis committed them (one Lua script per publish assigns the
//!   id, appends to the topic's stream and publishes, atomically), and
//!   calls `Rings::deliver`. After a reconnect it catches up from the
//!   streams first (`redis.rs` explains the order).
//!
//! `Rings::deliver` ignores ids it has already delivered, so a broker that
//! re-reads after a reconnect may overlap safely.

pub mod local;
pub mod redis;

use std::sync::Arc;

use crate::message::Message;

pub use crate::topic::Rings;

/// Hands committed messages to local subscribers (and, in cluster mode, to
/// the other nodes). Object-safe; shared as `Arc<dyn Broker>`.
pub trait Broker: Send + Sync + 'static {
    /// Called by the store once per committed batch, in id order, never
    /// concurrently with itself. Must not block: push and return.
    fn committed(&self, batch: &[Arc<Message>]);

    /// `Err(reason)` when the broker cannot reach its peers (for `/healthz`).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
