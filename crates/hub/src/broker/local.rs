//! The in-process broker: committed messages go straight to this process's
//! subscribers. Used by the memory store and by SQLite durability.

use std::sync::Arc;

use super::{Broker, Rings};
use crate::message::Message;

/// Delivers each committed batch to the local fan-out, synchronously (the
/// fan-out only pushes `Arc`s into rings and wakes subscriber tasks).
#[derive(Clone)]
pub struct LocalBroker {
    rings: Rings,
}

impl LocalBroker {
    pub fn new(rings: Rings) -> LocalBroker {
        LocalBroker { rings }
    }
}

impl Broker for LocalBroker {
    fn committed(&self, batch: &[Arc<Message>]) {
        self.rings.deliver(batch);
    }
}
