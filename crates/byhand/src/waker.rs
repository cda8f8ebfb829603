//! Wakers: how a future that returned `Pending` says "poll me again".
//!
//! A `Waker` is a handle with one job: `wake()`. std lets us build one
//! without any unsafe code by implementing [`std::task::Wake`] for a type
//! behind an `Arc`; `Waker::from(arc)` then does the rest. We have two kinds:
//!
//! - a task's waker is the task itself (`Arc<Task>`): waking it puts the task
//!   back on its run queue (see `task.rs`);
//! - the waker of the future passed to `block_on`, which is not a task: it
//!   raises a flag on the run queue that the executor checks every round.
//!
//! Both may be called from any thread (a timer, another task, a thread the
//! future handed its waker to), which is why `Wake` requires `Send + Sync`.

use std::sync::Arc;
use std::task::Wake;

use crate::task::{RunQueue, Task};

// ANCHOR: task_waker
impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.schedule();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}
// ANCHOR_END: task_waker

/// The waker of the `block_on` future.
pub(crate) struct MainWaker {
    pub(crate) queue: Arc<RunQueue>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.queue.wake_main();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.wake_main();
    }
}
