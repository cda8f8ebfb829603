//! The broker: how committed messages reach the subscribers connected to
//! this process, wherever they were published.
//!
//! Locally subscribers are served from per-topic rings ([`Fanout`], in
//! `topic.rs`). The broker's only job is to feed [`Fanout::deliver`] with
//! every committed message **in id order, one batch at a time**:
//!
//! - [`local::LocalBroker`] (default, and with `--data-dir`): the store calls
//!   [`Broker::committed`] from inside its commit order; the local broker
//!   passes the batch straight to the fan-out.
//! - A Redis broker (`redis.rs`, cluster mode) would make `committed` a no-op
//!   (or forward to Redis) and instead run a task that receives every
//!   node's messages from Redis, in the order Redis committed them, and calls
//!   `Fanout::deliver`. Suggested shape, so ids stay global and ordered: one
//!   Lua script per publish does `INCR coop:seq` (the id), `XADD
//!   coop:t:{topic}` (history, stream id `{seq}-0`) and `PUBLISH coop:msgs`
//!   (fan-out) atomically; Redis runs scripts one at a time, so the pub/sub
//!   order equals the id order on every node, and `?since=ID` is `XRANGE
//!   (ID-0 +` on any node. After a Redis reconnect the node must re-read
//!   each live topic's stream from the last id it delivered (and deliver
//!   only ids above it) before resuming pub/sub, so subscribers miss nothing.
//!
//! `Fanout::deliver` ignores ids it has already delivered, so a broker that
//! re-reads after a reconnect may overlap safely.

pub mod local;
pub mod redis;

use std::sync::Arc;

use crate::message::Message;

pub use crate::topic::Fanout;

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
