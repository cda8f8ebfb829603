//! Timers: a heap of deadlines, and the [`Sleep`] future that fills it.
//!
//! A sleeping future does not sleep. It writes down "wake me at 12:00:03"
//! (its deadline and its waker) and returns `Pending`. The executor keeps
//! those notes in a min-heap ordered by deadline, so the earliest one is
//! always on top. When it has nothing to run it parks the thread until that
//! earliest deadline (`Condvar::wait_timeout`), then wakes every note whose
//! time has come, in deadline order. A thousand sleeping tasks cost a
//! thousand small heap entries, not a thousand threads.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The heap of pending deadlines of one executor.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    /// Insertion counter: ties on the deadline wake in insertion order.
    next_seq: u64,
}

struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
}

// `BinaryHeap` is a max-heap; we order entries backwards so that the
// *earliest* (deadline, seq) is the greatest and sits on top.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl Timers {
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry {
            deadline,
            seq,
            waker,
        });
    }

    /// The earliest deadline, which is how long the executor may park.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.deadline)
    }

    // ANCHOR: expired
    /// Removes every entry due at `now` and returns their wakers, earliest
    /// first. The caller wakes them after releasing its borrow of the heap.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<Waker> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|entry| entry.deadline <= now) {
            if let Some(entry) = self.heap.pop() {
                due.push(entry.waker);
            }
        }
        due
    }
    // ANCHOR_END: expired

    /// Forgets every entry (executor shutdown).
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}

/// The future returned by [`sleep`](crate::sleep).
///
/// The clock starts at the first poll (as with Python's `asyncio.sleep`, and
/// unlike tokio's, which starts when the future is created). The duration is
/// divided by the executor's speed, so `sleep(3s)` under
/// `Runtime::with_speed(100.0)` takes 30 ms of wall time.
#[derive(Debug)]
pub struct Sleep {
    duration: Duration,
    deadline: Option<Instant>,
    /// The waker we left in the heap, so a spurious poll with the same waker
    /// does not add a second entry. (A *different* waker adds one; the old
    /// entry then fires into a task that is no longer waiting, which is
    /// harmless: a spurious wake only costs a poll.)
    registered: Option<Waker>,
}

impl Sleep {
    pub(crate) fn new(duration: Duration) -> Sleep {
        Sleep {
            duration,
            deadline: None,
            registered: None,
        }
    }
}

// ANCHOR: sleep_poll
impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => {
                let deadline = now + crate::current(|rt| rt.wall_time(self.duration));
                self.deadline = Some(deadline);
                deadline
            }
        };
        if now >= deadline {
            return Poll::Ready(());
        }
        let fresh = match &self.registered {
            Some(waker) => !waker.will_wake(cx.waker()),
            None => true,
        };
        if fresh {
            crate::current(|rt| rt.timers.borrow_mut().insert(deadline, cx.waker().clone()));
            self.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}
// ANCHOR_END: sleep_poll
