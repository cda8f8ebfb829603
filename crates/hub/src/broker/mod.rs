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
//! - [`ClusterBroker`](crate::cluster::broker::ClusterBroker) (cluster
//!   mode, `cluster/broker.rs`): [`Broker::committed`] is a no-op; tasks
//!   receive every node's messages from each Redis shard's pub/sub, merge
//!   them into one id order, and call `Rings::deliver`. When a feed
//!   breaks, it interrupts the subscriptions and is not
//!   [`ready`](Broker::ready) until every feed is back.
//!
//! `Rings::deliver` ignores ids it has already delivered, so a broker that
//! re-reads may overlap safely.

pub mod local;

use std::sync::Arc;

use crate::message::Message;

pub use crate::topic::Rings;

/// Hands committed messages to local subscribers (and, in cluster mode, to
/// the other nodes). Object-safe; shared as `Arc<dyn Broker>`.
pub trait Broker: Send + Sync + 'static {
    /// Called by the store once per committed batch, in id order, never
    /// concurrently with itself. Must not block: push and return.
    fn committed(&self, batch: &[Arc<Message>]);

    /// `Err(reason)` when the broker cannot promise live delivery (its
    /// feed from the other nodes is down): subscriptions are refused with
    /// the reason, and `/readyz` shows it.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}
